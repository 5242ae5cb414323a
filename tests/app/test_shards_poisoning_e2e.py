"""A poisoning job split into one shard per victim over two live workers (real Postgres and Redis) gives
the report of the same job in one piece."""

import pytest

from tests.app.helpers import derived_of, measured, run, wait_for

pytestmark = pytest.mark.service

# Three victims: one label flip at three rates, two epochs of a small MLP, no detection.
ARCH = {"name": "digits-mlp", "architecture": "mlp", "input_shape": [1, 8, 8], "num_classes": 10}
FLIP = {"name": "label_flip", "mode": "random", "rate": [0.05, 0.1, 0.2]}


@pytest.fixture(scope="module")
def tenant(make_key, start_worker) -> dict:
    start_worker()
    start_worker()
    return make_key("shards-poisoning")


def _job(api, headers: dict, model_id: str, max_shards: int) -> tuple[dict, dict]:
    spec = {
        "kind": "poisoning",
        "model_id": model_id,
        "dataset_id": "builtin:digits-test",
        "seed": 4,
        "sharding": {"max_shards": max_shards, "victims_per_shard": 1},
        "params": {
            "train_dataset_id": "builtin:digits-train",
            "training": {"init": "random", "epochs": 2},
            "attacks": [FLIP],
        },
    }
    job = run(api, headers, spec, timeout=400)
    assert job["status"] == "succeeded", job
    return job, api.get(f"/v1/jobs/{job['id']}/report", headers=headers).json()


@pytest.mark.slow
def test_a_split_poisoning_job_gives_the_report_of_one_piece(api, tenant):
    response = api.post("/v1/models", headers=tenant, json=ARCH)
    assert response.status_code in (200, 201, 202), response.text
    model = wait_for(api, f"/v1/models/{response.json()['id']}", tenant, {"ready", "invalid"}, timeout=60)
    whole, whole_report = _job(api, tenant, model["id"], max_shards=1)
    assert whole["shards"] == []
    split, split_report = _job(api, tenant, model["id"], max_shards=3)
    assert [shard["index"] for shard in split["shards"]] == [0, 1, 2]  # one shard per victim
    assert all(shard["state"] == "succeeded" and shard["attempts"] == 1 for shard in split["shards"]), split[
        "shards"
    ]
    assert len({shard["worker"] for shard in split["shards"]}) >= 2
    assert measured(split_report) == measured(whole_report)
    rows = whole_report["attacks"][0]["results"]
    assert [row["rate"] for row in rows] == FLIP["rate"] and rows[-1]["n_poisoned"] > rows[0]["n_poisoned"]
    # The largest-rate victim is registered once, from the shard that trained it.
    assert len(derived_of(api, tenant, split["id"])) == len(derived_of(api, tenant, whole["id"])) == 1
