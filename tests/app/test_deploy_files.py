"""The Dockerfile and docker-compose.yml agree with the code (no Docker engine runs here)."""

from pathlib import Path

import yaml

from app.queue import ALL_QUEUES
from app.settings import Settings
from gauntlet_cli.main import build_parser

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


def _stages() -> dict[str, list[str]]:
    """The Dockerfile's lines per build stage (FROM ... AS name)."""
    stages: dict[str, list[str]] = {}
    current = None
    for raw in (ROOT / "Dockerfile").read_text().splitlines():
        line = raw.strip()
        if line.startswith("FROM "):
            current = line.split(" AS ")[-1].strip()
            stages[current] = []
        elif current is not None and line and not line.startswith("#"):
            stages[current].append(line)
    return stages


def test_dockerfile_has_an_api_target_without_torch_and_a_worker_target_with_it():
    stages = _stages()
    assert {"base", "api", "worker"} <= set(stages)
    base, api, worker = ("\n".join(stages[name]) for name in ("base", "api", "worker"))
    for folder in ("app", "worker", "migrations", "gauntlet_cli", "gauntlet_client"):
        assert f"COPY {folder} ./{folder}" in stages["base"]
    assert "torch" not in api and "pip install ." in api
    assert api.index("pip install .") < api.index("USER gauntlet")
    assert 'CMD ["api", "--host", "0.0.0.0", "--port", "8000"]' in stages["api"]
    assert "torch==2.13.0" in worker and "whl/cpu" in worker
    assert worker.index("torch==2.13.0") < worker.index('pip install ".[worker]"')
    assert 'CMD ["worker"]' in stages["worker"]
    for name in ("api", "worker"):
        assert 'ENTRYPOINT ["gauntlet"]' in stages[name]
        assert any(line.startswith("USER ") and "root" not in line for line in stages[name])
    for variable in (line.split("=")[0].split()[-1] for line in base.splitlines() if "GAUNTLET_" in line):
        assert variable.removeprefix("GAUNTLET_").lower() in Settings.model_fields, variable


def test_compose_builds_the_api_from_the_api_target_and_workers_from_the_worker_target():
    services = _compose()["services"]
    for name in ("api", "migrate"):
        assert services[name]["build"]["target"] == "api"
    for name in ("worker-gpu", "worker-cpu"):
        assert services[name]["build"]["target"] == "worker"
    assert "cu128" in services["worker-gpu"]["build"]["args"]["TORCH_INDEX"]


def test_the_packages_base_dependencies_serve_the_api_without_torch():
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    base = " ".join(project["dependencies"])
    for engine_package in ("torch", "onnx", "onnxruntime", "scikit-learn", "safetensors"):
        assert engine_package not in base.split('"') and f"{engine_package}>" not in base
        assert any(dep.startswith(engine_package) for dep in project["optional-dependencies"]["worker"])
