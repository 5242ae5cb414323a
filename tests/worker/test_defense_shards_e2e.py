"""A defense job split into shards over two live workers (real Postgres and Redis): the defense is trained
once, by the worker that splits the job (shard 0), every other shard evaluates a slice of the restored
defense, and the report, derived model and artifacts are those of the same job in one piece."""

import pytest

from tests.app.helpers import artifacts_of, derived_of, download, measured, ready_model, run

pytestmark = [pytest.mark.service, pytest.mark.slow]

AT = {"name": "adversarial_training", "method": "fast", "eps": 0.1, "epochs": 1, "init": "pretrained"}
PGD = {"name": "pgd", "norm": "linf", "eps": [0.1, 0.2], "steps": 5}
FGSM = {"name": "fgsm", "eps": [0.15], "targeted": True, "target_mode": "random"}
EVALUATION = {"attacks": [PGD, FGSM], "max_samples": 96, "batch_size": 16, "sanity_runs": False}


@pytest.fixture(scope="module")
def tenant(make_key, start_worker) -> dict:
    start_worker()
    start_worker()
    return make_key("shards-defense")


def _job(api, headers: dict, model_id: str, sharding: dict) -> tuple[dict, dict]:
    spec = {
        "kind": "defense",
        "model_id": model_id,
        "dataset_id": "builtin:digits-test",
        "seed": 5,
        "sharding": sharding,
        "params": {"train_dataset_id": "builtin:digits-train", "defense": AT, "evaluation": EVALUATION},
    }
    job = run(api, headers, spec, timeout=300)
    assert job["status"] == "succeeded", job
    return job, api.get(f"/v1/jobs/{job['id']}/report", headers=headers).json()


def _model_bytes(api, headers: dict, job: dict) -> bytes:
    (model,) = [a for a in artifacts_of(api, headers, job["id"]) if a["kind"] == "model_onnx"]
    return download(api, headers, model)


def test_a_split_defense_job_trains_once_and_gives_the_report_of_one_piece(api, tenant, digits_onnx):
    model = ready_model(api, tenant, digits_onnx)
    whole, whole_report = _job(api, tenant, model["id"], {"max_shards": 1})
    assert whole["shards"] == []
    split, split_report = _job(api, tenant, model["id"], {"samples_per_shard": 32})
    # Shard 0 is the training (by the worker that split the job), then three slices of 32 samples.
    assert [shard["index"] for shard in split["shards"]] == [0, 1, 2, 3]
    assert all(shard["state"] == "succeeded" and shard["attempts"] == 1 for shard in split["shards"])
    assert len({shard["worker"] for shard in split["shards"]}) >= 2
    assert split["progress"] == 1.0
    assert measured(split_report) == measured(whole_report)
    assert [row["epoch"] for row in split_report["training"]["curve"]] == [1]
    rows = split_report["evaluation"]["undefended"]["attacks"][0]["results"]
    assert any(row["n_succeeded"] for row in rows)

    (split_model,), (whole_model,) = (
        derived_of(api, tenant, split["id"]),
        derived_of(api, tenant, whole["id"]),
    )
    keep = ("name", "status", "derived_from", "preprocessing", "white_box", "intake", "size_bytes")
    assert {key: split_model.get(key) for key in keep} == {key: whole_model.get(key) for key in keep}
    assert _model_bytes(api, tenant, split) == _model_bytes(api, tenant, whole)

    def names(job: dict, model_id: str) -> list[str]:
        """The job's artifact names, its derived model's id left out."""
        return sorted(a["name"].replace(model_id, "") for a in artifacts_of(api, tenant, job["id"]))

    assert names(split, split_model["id"]) == names(whole, whole_model["id"])
