"""Pool processes' threads and devices (the share of the cores, the GPU each sees, a live worker) and
the API in several processes."""

import argparse
import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from app.settings import Settings
from gauntlet_cli.server import _pool
from tests.client.live import free_port, wait_ready
from tests.services import REPO_ROOT, WorkerProcess
from tests.session_processes import kill_group, release, spawn
from worker.runtime import parse_gpus, pool_process_env, torch_threads_for, usable_cores


def test_each_pool_process_gets_its_share_of_the_cores() -> None:
    """cores // processes, at least one; the operator's setting wins."""
    assert torch_threads_for(16, 4) == 4
    assert torch_threads_for(16, 3) == 5
    assert torch_threads_for(2, 1) == 2
    assert torch_threads_for(2, 2) == 1
    assert torch_threads_for(2, 8) == 1
    assert torch_threads_for(16, 4, override=2) == 2


def test_one_gpu_per_pool_process() -> None:
    """Child i sees GPU i of the list (modulo its length); without GPUs nothing is set."""
    gpus = parse_gpus(" 0, 1,3 ")
    assert gpus == ["0", "1", "3"]
    assert [pool_process_env(index, gpus) for index in range(4)] == [
        {"CUDA_VISIBLE_DEVICES": "0"},
        {"CUDA_VISIBLE_DEVICES": "1"},
        {"CUDA_VISIBLE_DEVICES": "3"},
        {"CUDA_VISIBLE_DEVICES": "0"},
    ]
    assert pool_process_env(0, parse_gpus(None)) == {}
    assert pool_process_env(2, parse_gpus("")) == {}


def _worker_args(**given: object) -> argparse.Namespace:
    """The `gauntlet worker` options, defaults unless given."""
    return argparse.Namespace(**({"gpus": None, "concurrency": None, "pool": "prefork"} | given))


def test_worker_gpus_option_sets_one_prefork_process_per_gpu() -> None:
    """--gpus 0,1,2: three prefork processes; a conflicting concurrency or pool is refused."""
    assert _pool(_worker_args()) == (1, "prefork", None)
    assert _pool(_worker_args(concurrency=3, pool="solo")) == (3, "solo", None)
    assert _pool(_worker_args(gpus="0,1,2")) == (3, "prefork", "0,1,2")
    assert _pool(_worker_args(gpus="0,1", concurrency=2)) == (2, "prefork", "0,1")
    for wrong in ({"concurrency": 4}, {"pool": "solo"}):
        with pytest.raises(SystemExit, match="one prefork pool process per GPU"):
            _pool(_worker_args(gpus="0,1", **wrong))


def test_gpu_list_setting_is_checked() -> None:
    """A GPU list that is not comma-separated indices or UUIDs is refused when settings are read."""
    assert Settings(worker_gpus="0,1").worker_gpus == "0,1"
    with pytest.raises(ValueError):
        Settings(worker_gpus="0;1")


CONFIGURE = """
import json, torch
from app.settings import Settings
from worker.runtime import configure_pool_process
setup = configure_pool_process(1, 2, Settings(worker_gpus="4,7", torch_threads={threads}))
print(json.dumps({{"setup": setup.__dict__, "threads": torch.get_num_threads(),
                  "interop": torch.get_num_interop_threads()}}))
"""


@pytest.mark.slow
@pytest.mark.parametrize("threads", [None, 3])
def test_configuring_a_process_sets_torch_and_its_device(threads: int | None) -> None:
    """In a fresh process: torch's intra-op threads, one inter-op thread, the device of its index."""
    env = {key: value for key, value in os.environ.items() if not key.startswith(("GAUNTLET_", "CUDA_"))}
    env["PYTHONPATH"] = str(REPO_ROOT)
    out = subprocess.run(
        [sys.executable, "-c", CONFIGURE.format(threads=threads)],
        env=env,
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    ).stdout
    seen = json.loads(out.strip().splitlines()[-1])
    expected = threads or max(1, usable_cores() // 2)
    assert seen["threads"] == seen["setup"]["threads"] == expected
    assert seen["interop"] == seen["setup"]["interop_threads"] == 1
    assert seen["setup"]["cuda_visible_devices"] == "7"


POOL_LINE = re.compile(
    rb"pool process (\d+) of (\d+): torch threads (\d+), interop threads (\d+), "
    rb"OMP_WAIT_POLICY=(\w+), CUDA_VISIBLE_DEVICES=(\S+)"
)


@pytest.mark.slow
def test_a_started_worker_pool_processes_report_their_threads(tmp_path: Path) -> None:
    """A live `gauntlet worker --gpus 2,5`: each of its two pool processes logs its share, device, policy."""
    from app.migrate import upgrade
    from tests.conftest import FAST_RELIABILITY

    env = {
        key: value for key, value in os.environ.items() if not key.startswith(("GAUNTLET_", "OMP_", "CUDA_"))
    }
    env |= {**FAST_RELIABILITY, "GAUNTLET_DATA_DIR": str(tmp_path / "data")}
    upgrade(Settings(data_dir=tmp_path / "data").resolved_database_url)
    worker = WorkerProcess(env, tmp_path / "worker.log", ("--gpus", "2,5"))
    try:
        worker.wait_ready()
        deadline = time.monotonic() + 30
        while len(POOL_LINE.findall(worker.log_path.read_bytes())) < 2 and time.monotonic() < deadline:
            time.sleep(0.2)
    finally:
        worker.stop()
    lines = {int(m[0]): m[1:] for m in POOL_LINE.findall(worker.log_path.read_bytes())}
    share = str(max(1, usable_cores() // 2)).encode()
    assert lines == {0: (b"2", share, b"1", b"PASSIVE", b"2"), 1: (b"2", share, b"1", b"PASSIVE", b"5")}


@pytest.mark.slow
def test_the_api_serves_from_several_processes(tmp_path: Path) -> None:
    """`gauntlet api --workers 2`: two server processes answer on the one port."""
    from app.migrate import upgrade

    env = {key: value for key, value in os.environ.items() if not key.startswith("GAUNTLET_")}
    env["GAUNTLET_DATA_DIR"] = str(tmp_path / "data")
    upgrade(Settings(data_dir=tmp_path / "data").resolved_database_url)
    log, port = tmp_path / "api.log", free_port()
    url = f"http://127.0.0.1:{port}"
    with open(log, "wb") as out:
        process = spawn(
            [sys.executable, "-m", "gauntlet_cli", "api", "--port", str(port), "--workers", "2"],
            env=env,
            cwd=REPO_ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_ready(url, process, log)
        deadline = time.monotonic() + 60
        started: set[bytes] = set()
        while len(started) < 2 and time.monotonic() < deadline:
            started = set(re.findall(rb"Started server process \[(\d+)\]", log.read_bytes()))
            time.sleep(0.2)
        answers = [httpx.get(f"{url}/healthz", timeout=10).status_code for _ in range(20)]
    finally:
        kill_group(process, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=20)
        release(process)
    assert len(started) == 2
    assert answers == [200] * 20
