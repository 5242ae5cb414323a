"""Server commands: `gauntlet serve --no-demo` stops what it started; `gauntlet keys` says what to do."""

import os
import signal
import subprocess
import sys
import time

import httpx
import pytest

from tests.client.live import alive, descendants, free_port, gauntlet
from tests.services import REPO_ROOT
from tests.session_processes import release, spawn


def _plain_env(tmp_path) -> dict[str, str]:
    """The environment without any GAUNTLET_ setting, in a folder of its own."""
    return {k: v for k, v in os.environ.items() if not k.startswith("GAUNTLET_")} | {"HOME": str(tmp_path)}


def test_keys_outside_the_data_directory_say_what_to_do_and_create_nothing(tmp_path):
    done = gauntlet("keys", "create", "--tenant", "acme", env=_plain_env(tmp_path), cwd=tmp_path)
    assert done.returncode == 4 and done.stdout == ""
    assert "no Gauntlet database" in done.stderr and "GAUNTLET_DATA_DIR" in done.stderr
    assert "Traceback" not in done.stderr
    assert not (tmp_path / ".gauntlet" / "gauntlet.db").exists()


@pytest.mark.slow
def test_keys_create_list_and_revoke_on_the_embedded_database(tmp_path):
    env = _plain_env(tmp_path) | {"GAUNTLET_DATA_DIR": str(tmp_path / "data")}
    (tmp_path / "data").mkdir()
    assert gauntlet("db", "upgrade", env=env).returncode == 0
    key = gauntlet("keys", "create", "--tenant", "acme", env=env).stdout.strip()
    assert key.startswith("gnt_")
    listed = gauntlet("keys", "list", env=env).stdout
    assert "acme" in listed and key[:10] in listed and key not in listed and "revoked" not in listed
    revoked = gauntlet("keys", "revoke", key, env=env)
    assert revoked.returncode == 0 and revoked.stdout.startswith("revoked key_")
    assert "within 5 s (GAUNTLET_API_KEY_CACHE_S)" in revoked.stdout  # the default cache bound
    assert "revoked" in gauntlet("keys", "list", "--tenant", "acme", env=env).stdout.splitlines()[0]


def _wait_for_key(log, process, timeout: float = 120.0) -> str:
    """The API key `gauntlet serve` prints on a line of its own, once the worker is ready too."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, log.read_text()[-3000:]
        text = log.read_text(errors="replace")
        keys = [line for line in text.splitlines() if line.startswith("gnt_") and " " not in line]
        if keys and " ready." in text:
            return keys[0]
        time.sleep(0.3)
    raise AssertionError(f"serve printed no key in time:\n{log.read_text()[-3000:]}")


@pytest.mark.service
@pytest.mark.slow
@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "sigkill"])
def test_stopping_serve_stops_the_api_and_the_worker_it_started(service_env, tmp_path, stop_signal):
    port = free_port()
    log = tmp_path / "serve.log"
    with open(log, "wb") as out:
        process = spawn(
            [sys.executable, "-m", "gauntlet_cli", "serve", "--no-demo", "--port", str(port)],
            env=service_env,
            cwd=REPO_ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        key = _wait_for_key(log, process)
        answer = httpx.get(f"http://127.0.0.1:{port}/v1/jobs", headers={"Authorization": f"Bearer {key}"})
        assert answer.status_code == 200 and answer.json()["items"] == []  # --no-demo: no demo job ran
        children = descendants(process.pid)
        assert len(children) >= 3, children  # the API, the worker and its pool process
        os.kill(process.pid, stop_signal)  # the serve process alone, as `kill PID` or a crash would
        process.wait(timeout=60)
        deadline = time.monotonic() + 60
        while any(alive(pid) for pid in children) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert [pid for pid in children if alive(pid)] == []
        if stop_signal == signal.SIGTERM:
            assert process.returncode == 0 and "stopping the API and the worker" in log.read_text()
    finally:
        release(process)
