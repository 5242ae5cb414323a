"""The Dockerfile and docker-compose.yml agree with the code (no Docker engine runs here)."""

from pathlib import Path

import yaml

from app.cli import build_parser
from app.queue import ALL_QUEUES
from app.settings import Settings

ROOT = Path(__file__).resolve().parents[2]


def _compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_compose_runs_api_gpu_and_cpu_workers_postgres_and_redis():
    services = _compose()["services"]
    assert {"api", "worker-gpu", "worker-cpu", "postgres", "redis", "migrate"} <= set(services)
    assert services["api"]["command"][0] == "api"
    assert services["migrate"]["command"] == ["db", "upgrade"]
    queues = set()
    for name in ("worker-gpu", "worker-cpu"):
        command = services[name]["command"]
        assert command[0] == "worker"
        queues |= set(command[command.index("--queues") + 1].split(","))
    assert queues == set(ALL_QUEUES)
    assert services["worker-gpu"]["deploy"]["resources"]["reservations"]["devices"][0]["capabilities"] == [
        "gpu"
    ]


def test_compose_commands_parse_with_the_real_cli():
    parser = build_parser()
    for name, service in _compose()["services"].items():
        if "build" in service:
            args = parser.parse_args(service["command"])
            assert callable(args.handler), name


def test_compose_environment_names_are_real_settings():
    known = {f"GAUNTLET_{name.upper()}" for name in Settings.model_fields}
    for name, service in _compose()["services"].items():
        for variable in service.get("environment", {}):
            if variable.startswith("GAUNTLET_"):
                assert variable in known, f"{name}: {variable} is not a setting"
    environment = _compose()["services"]["api"]["environment"]
    assert environment["GAUNTLET_DATABASE_URL"].startswith("postgresql+psycopg://")
    assert environment["GAUNTLET_BROKER_URL"].startswith("redis://redis:6379")
    postgres = _compose()["services"]["postgres"]["environment"]
    assert (
        f"{postgres['POSTGRES_USER']}:{postgres['POSTGRES_PASSWORD']}@postgres:5432/{postgres['POSTGRES_DB']}"
        in (environment["GAUNTLET_DATABASE_URL"])
    )


def test_dockerfile_installs_cpu_torch_then_the_package_and_runs_gauntlet():
    lines = [line.strip() for line in (ROOT / "Dockerfile").read_text().splitlines()]
    text = "\n".join(lines)
    assert "torch==2.13.0" in text and "whl/cpu" in text
    assert text.index("torch==2.13.0") < text.index("pip install .")
    for folder in ("app", "worker", "migrations"):
        assert f"COPY {folder} ./{folder}" in lines
    assert 'ENTRYPOINT ["gauntlet"]' in lines
    assert any(line.startswith("USER ") and "root" not in line for line in lines)
    for variable in (line.split("=")[0].split()[-1] for line in lines if "GAUNTLET_" in line and "=" in line):
        assert variable.removeprefix("GAUNTLET_").lower() in Settings.model_fields, variable
