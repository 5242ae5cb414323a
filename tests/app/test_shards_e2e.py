"""One job split into shards over two live workers (real Postgres and Redis) gives the one-piece report."""

import copy
import json
import time

import pytest

from tests.app.helpers import TERMINAL, evasion_spec, ready_model, wait_for

pytestmark = pytest.mark.service

ATTACKS = [
    {"name": "fgsm", "eps": [0.05, 0.1]},
    {"name": "pgd", "norm": "l2", "eps": [0.5, 1.0], "steps": 5, "targeted": True, "target_mode": "random"},
]


@pytest.fixture(scope="module")
def tenant(make_key, start_worker) -> dict:
    start_worker()
    start_worker()
    return make_key("shards")


def _figures(report: dict) -> dict:
    """Everything the report measures, without wall-clock seconds and the envelope's ids and times."""
    keep = {key: report[key] for key in ("n_samples", "clean_accuracy", "attacks", "worst_case", "checks")}
    keep = copy.deepcopy(keep)
    for attack in keep["attacks"]:
        for row in attack["results"]:
            row.pop("seconds", None)
    return keep


def _run(api, tenant: dict, spec: dict, timeout: float = 300) -> tuple[dict, dict]:
    job = api.post("/v1/jobs", headers=tenant, json=spec)
    assert job.status_code == 202, job.text
    final = wait_for(api, f"/v1/jobs/{job.json()['id']}", tenant, TERMINAL, timeout=timeout)
    assert final["status"] == "succeeded", final
    return final, api.get(f"/v1/jobs/{final['id']}/report", headers=tenant).json()


@pytest.mark.slow
def test_a_split_job_gives_the_report_of_one_piece(api, tenant, digits_onnx):
    model = ready_model(api, tenant, digits_onnx)
    whole, whole_report = _run(api, tenant, evasion_spec(model["id"], ATTACKS, max_samples=297))
    assert whole["shards"] == []
    split_spec = evasion_spec(model["id"], ATTACKS, max_samples=297, sharding={"samples_per_shard": 64})
    split, split_report = _run(api, tenant, split_spec)
    assert [shard["index"] for shard in split["shards"]] == [0, 1, 2, 3, 4]  # 297 samples, 64 per shard
    assert all(shard["state"] == "succeeded" and shard["attempts"] == 1 for shard in split["shards"])
    # Both of this module's workers took shards (workers other modules started may take some too).
    assert len({shard["worker"] for shard in split["shards"]}) >= 2
    assert split["progress"] == 1.0
    assert _figures(split_report) == _figures(whole_report)
    assert any(row["n_succeeded"] for attack in whole_report["attacks"] for row in attack["results"])

    def names(job):
        return sorted(
            a["name"] for a in api.get(f"/v1/jobs/{job['id']}/artifacts", headers=tenant).json()["items"]
        )

    assert names(split) == names(whole)


def test_shard_limits_are_checked(api, tenant, digits_onnx, settings):
    spec = evasion_spec("mdl_missing", ATTACKS)
    too_many = api.post("/v1/jobs", headers=tenant, json={**spec, "sharding": {"max_shards": 10_000}})
    assert too_many.status_code == 422
    zero = api.post("/v1/jobs", headers=tenant, json={**spec, "sharding": {"samples_per_shard": 0}})
    assert zero.status_code == 422
    model = ready_model(api, tenant, digits_onnx)
    over = {"max_shards": settings.max_shards_per_job + 1}
    answer = api.post(
        "/v1/jobs", headers=tenant, json={**evasion_spec(model["id"], ATTACKS), "sharding": over}
    )
    assert answer.status_code == 422 and answer.json()["error"]["code"] == "invalid_input"


@pytest.mark.slow
def test_cancel_stops_every_shard(api, tenant, digits_onnx):
    model = ready_model(api, tenant, digits_onnx)
    slow = [{"name": "cw", "norm": "l2", "eps": [1.0], "binary_search_steps": 50, "steps": 100_000}]
    spec = evasion_spec(model["id"], slow, max_samples=297, sharding={"samples_per_shard": 64})
    job = api.post("/v1/jobs", headers=tenant, json=spec).json()
    path = f"/v1/jobs/{job['id']}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        view = api.get(path, headers=tenant).json()
        if sum(shard["state"] == "running" for shard in view["shards"]) >= 2:
            break
        time.sleep(0.2)
    assert sum(shard["state"] == "running" for shard in view["shards"]) >= 2, view
    assert api.post(f"{path}/cancel", headers=tenant).status_code == 202
    final = wait_for(api, path, tenant, TERMINAL, timeout=30)
    assert final["status"] == "cancelled"
    assert {shard["state"] for shard in final["shards"]} == {"cancelled"}


@pytest.mark.slow
def test_events_report_every_shard_state_change(api, tenant, digits_onnx):
    model = ready_model(api, tenant, digits_onnx)
    spec = evasion_spec(model["id"], ATTACKS[:1], max_samples=297, sharding={"samples_per_shard": 64})
    job = api.post("/v1/jobs", headers=tenant, json=spec).json()
    events: list[tuple[str, dict]] = []
    with api.stream("GET", f"/v1/jobs/{job['id']}/events", headers=tenant) as stream:
        name = None
        for line in stream.iter_lines():
            if line.startswith("event: "):
                name = line.removeprefix("event: ")
            elif line.startswith("data: "):
                events.append((name, json.loads(line.removeprefix("data: "))))
    assert events[-1][0] == "state" and events[-1][1]["status"] == "succeeded"
    shard_events = [data for name, data in events if name == "shard"]
    last = {event["index"]: event for event in shard_events}
    assert sorted(last) == [0, 1, 2, 3, 4]
    assert all(event["state"] == "succeeded" and event["attempts"] == 1 for event in last.values())
    assert all(set(event) == {"index", "state", "worker", "attempts"} for event in shard_events)
    for index in last:  # one event per change: never the same state twice in a row
        states = [event["state"] for event in shard_events if event["index"] == index]
        assert all(a != b for a, b in zip(states, states[1:], strict=False)), states
