"""Faults of a split job on live workers (real Postgres and Redis): a worker SIGKILLed mid-job costs its
shard only, a Redis flush mid-job loses nothing, and the tenant's cap on running shards holds without
starving another tenant. Every run gives the report of the same job in one piece.

The module has its own Postgres database and Redis database (GAUNTLET_TEST_SHARDS_REDIS_URL, by default
database 12 of the test Redis), so its workers are the only ones taking its shards and its flush touches
no other test's messages.
"""

import os
import socket
import time
from datetime import datetime
from pathlib import Path

import pytest
import redis
from fastapi.testclient import TestClient

from tests.app.helpers import TERMINAL, evasion_spec, ready_model
from tests.conftest import ServiceEnvironment, require_services
from tests.services import REDIS_URL, WorkerProcess

pytestmark = [pytest.mark.service, pytest.mark.slow]
SHARDS_REDIS_URL = os.environ.get("GAUNTLET_TEST_SHARDS_REDIS_URL", REDIS_URL.rsplit("/", 1)[0] + "/12")
ATTACKS = [
    {"name": "fgsm", "eps": [0.1]},
    {"name": "pgd", "norm": "linf", "eps": [0.05, 0.1], "steps": 150},
]
# The cap test needs shards that take a while, not the reference's figures: a third of the steps.
CAPPED_ATTACKS = [{**attack, "steps": 50} if attack["name"] == "pgd" else attack for attack in ATTACKS]
SAMPLES = 297  # five batches of 64: five shards of one batch each
SPLIT = {"samples_per_shard": 64}


class Fleet:
    """The module's live workers: start them with their own settings, SIGKILL or stop them."""

    def __init__(self, env: dict[str, str], log_dir: Path) -> None:
        self.env, self.log_dir, self.workers = env, log_dir, []

    def start(self, count: int, **overrides: str) -> list[WorkerProcess]:
        """Start `count` workers with these GAUNTLET_* overrides."""
        started = [
            WorkerProcess({**self.env, **overrides}, self.log_dir / f"worker-{len(self.workers) + i}.log")
            for i in range(count)
        ]
        for worker in started:
            worker.wait_ready()
        self.workers += started
        return started

    def stop_all(self) -> None:
        """Stop every worker still running."""
        for worker in self.workers:
            worker.stop()
        self.workers = []


def _identities(worker: WorkerProcess) -> set[str]:
    """The host:pid of the worker's pool processes, as shards record the worker that runs them."""
    parent, pids = worker.process.pid, set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == parent:
            pids.add(int(stat.parent.name))
    return {f"{socket.gethostname()}:{pid}" for pid in pids | {parent}}


@pytest.fixture(scope="module")
def environment(tmp_path_factory) -> ServiceEnvironment:
    """The module's own database and Redis database."""
    require_services()
    environment = ServiceEnvironment(tmp_path_factory.mktemp("shard-faults"), SHARDS_REDIS_URL)
    yield environment
    environment.close()


@pytest.fixture(scope="module")
def client(environment):
    from app.main import create_app

    with TestClient(create_app(environment.settings()), raise_server_exceptions=False) as client:
        yield client


@pytest.fixture(scope="module")
def fleet(environment, tmp_path_factory):
    fleet = Fleet(environment.env, tmp_path_factory.mktemp("shard-fault-workers"))
    yield fleet
    fleet.stop_all()


@pytest.fixture(scope="module")
def key(client):
    from app.auth import create_key
    from app.db import session_scope

    def make(tenant: str) -> dict[str, str]:
        with session_scope(client.app.state.session_factory) as session:
            return {"Authorization": f"Bearer {create_key(session, tenant)}"}

    return make


@pytest.fixture(scope="module")
def tenant(key) -> dict[str, str]:
    return key("shard-faults")


@pytest.fixture(scope="module")
def model(client, tenant, fleet, digits_onnx) -> dict:
    if not fleet.workers:
        fleet.start(1)
    return ready_model(client, tenant, digits_onnx)


@pytest.fixture(scope="module")
def reference(client, tenant, model, fleet) -> dict:
    """The figures of the job in one piece."""
    if not fleet.workers:
        fleet.start(1)
    spec = evasion_spec(model["id"], ATTACKS, max_samples=SAMPLES, sharding={"max_shards": 1})
    job = _finish(client, tenant, _submit(client, tenant, spec))
    assert job["shards"] == []
    return _figures(client, tenant, job)


def _submit(client, headers: dict, spec: dict) -> str:
    answer = client.post("/v1/jobs", headers=headers, json=spec)
    assert answer.status_code == 202, answer.text
    return answer.json()["id"]


def _finish(client, headers: dict, job_id: str) -> dict:
    """Wait for the job to succeed; once its shards are all in, the merge holds its stage (never re-sent)."""
    stages: set[str] = set()
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        view = client.get(f"/v1/jobs/{job_id}", headers=headers).json()
        if view["status"] in TERMINAL:
            break
        if view["shards"] and all(s["state"] == "succeeded" for s in view["shards"]):
            stages.add(view["stage"])
        time.sleep(0.1)
    assert view["status"] == "succeeded", view
    assert all(stage == "merging" or stage.startswith("split into") for stage in stages), stages
    return view


def _figures(client, headers: dict, job: dict) -> dict:
    """Everything the report measures, without wall-clock seconds."""
    report = client.get(f"/v1/jobs/{job['id']}/report", headers=headers).json()
    for attack in report["attacks"]:
        for row in attack["results"]:
            row.pop("seconds", None)
    return {key: report[key] for key in ("n_samples", "clean_accuracy", "attacks", "worst_case", "checks")}


def _watch(client, headers: dict, job_id: str, until, timeout: float = 120) -> dict:
    """Poll the job view until `until(view)`; the last view."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        view = client.get(f"/v1/jobs/{job_id}", headers=headers).json()
        if until(view) or view["status"] in TERMINAL:
            return view
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} never got there: {view}")


def test_a_worker_killed_mid_job_costs_its_shard_only(client, tenant, model, reference, fleet):
    fleet.stop_all()
    survivor, victim = fleet.start(2)
    ids = _identities(victim)
    job_id = _submit(client, tenant, evasion_spec(model["id"], ATTACKS, max_samples=SAMPLES, sharding=SPLIT))
    seen = _watch(
        client, tenant, job_id,
        lambda v: any(s["state"] == "running" and s["worker"] in ids for s in v["shards"]),
    )  # fmt: skip
    assert seen["status"] == "running", seen
    victim.kill()
    after = client.get(f"/v1/jobs/{job_id}", headers=tenant).json()
    lost = [s["index"] for s in after["shards"] if s["state"] == "running" and s["worker"] in ids]
    assert len(lost) == 1, after  # one pool process: one shard in flight on the killed worker

    final = _finish(client, tenant, job_id)
    assert [s["attempts"] for s in final["shards"]] == [
        2 if s["index"] in lost else 1 for s in final["shards"]
    ]
    assert {s["state"] for s in final["shards"]} == {"succeeded"}
    assert final["shards"][lost[0]]["worker"] in _identities(survivor)  # run again by the survivor
    assert _figures(client, tenant, final) == reference


def test_a_redis_flush_mid_job_loses_nothing(client, tenant, model, reference, fleet, environment):
    fleet.stop_all()
    fleet.start(2)
    broker = redis.Redis.from_url(environment.redis_url)
    job_id = _submit(client, tenant, evasion_spec(model["id"], ATTACKS, max_samples=SAMPLES, sharding=SPLIT))
    seen = _watch(client, tenant, job_id, lambda v: any(s["state"] == "running" for s in v["shards"]))
    assert seen["status"] == "running", seen
    waiting = broker.llen("gpu")
    broker.flushdb()
    assert waiting > 0  # shard messages were in the broker when it lost everything
    assert broker.llen("gpu") == 0

    final = _finish(client, tenant, job_id)
    assert {s["state"] for s in final["shards"]} == {"succeeded"}
    assert [s["attempts"] for s in final["shards"]] == [1] * len(final["shards"])  # re-sent, not re-run
    assert _figures(client, tenant, final) == reference


def test_the_tenant_cap_holds_and_another_tenant_is_not_starved(
    client, tenant, key, model, fleet, digits_onnx
):
    fleet.stop_all()
    fleet.start(2, GAUNTLET_TENANT_MAX_RUNNING_SHARDS="1")
    other = key("shard-faults-other")
    their_model = ready_model(client, other, digits_onnx)
    big_spec = evasion_spec(model["id"], CAPPED_ATTACKS, max_samples=SAMPLES, sharding=SPLIT)
    big = _submit(client, tenant, big_spec)
    _watch(client, tenant, big, lambda v: any(s["state"] == "running" for s in v["shards"]))
    small = evasion_spec(their_model["id"], CAPPED_ATTACKS, max_samples=128, sharding=SPLIT)
    theirs = _submit(client, other, small)

    most_running, big_running_when_theirs_ended = 0, None
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        view = client.get(f"/v1/jobs/{big}", headers=tenant).json()
        their_view = client.get(f"/v1/jobs/{theirs}", headers=other).json()
        most_running = max(most_running, sum(s["state"] == "running" for s in view["shards"]))
        if their_view["status"] in TERMINAL and big_running_when_theirs_ended is None:
            big_running_when_theirs_ended = view["status"] == "running"
        if view["status"] in TERMINAL and their_view["status"] in TERMINAL:
            break
        time.sleep(0.05)
    assert their_view["status"] == "succeeded" and len(their_view["shards"]) == 2, their_view
    assert big_running_when_theirs_ended  # the other tenant's job ran beside the big one, not after it
    assert most_running == 1
    final = _finish(client, tenant, big)
    intervals = sorted(
        (datetime.fromisoformat(s["started_at"]), datetime.fromisoformat(s["finished_at"]))
        for s in final["shards"]
    )
    assert all(end <= next_start for (_, end), (next_start, _) in zip(intervals, intervals[1:], strict=False))
    assert final["status"] == "succeeded" and len(final["shards"]) == 5
