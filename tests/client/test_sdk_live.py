"""The Python client against a live API process and worker (real Postgres and Redis)."""

import numpy as np
import pytest

from app.schemas.reports import EvasionReport
from gauntlet_client import Client, ModelInvalid, NotFound, Unauthorized
from worker.engine.datasets import load_builtin

pytestmark = [pytest.mark.service, pytest.mark.slow]
ATTACKS = [
    {"name": "fgsm", "norm": "linf", "eps": [0.05, 0.2]},
    {"name": "pgd", "norm": "linf", "eps": [0.2], "steps": 5},
]


@pytest.fixture(scope="module")
def live(live_service):
    return live_service[:2]


@pytest.fixture(scope="module")
def client(live):
    with Client(*live) as client:
        yield client


@pytest.fixture(scope="module")
def model(client, client_model_path):
    return client.models.upload(client_model_path, name="digits-sdk", input_shape=[1, 8, 8], num_classes=10)


def test_upload_submit_wait_report_and_download(client, model, tmp_path, capsys):
    assert model.status == "ready" and model.white_box is True
    held_out = load_builtin("digits-test")
    dataset = client.datasets.upload((held_out.x[:60], held_out.y[:60]), name="digits-60")
    assert dataset.n_samples == 60 and dataset.num_classes == 10

    spec = {
        "kind": "evasion",
        "model_id": model.id,
        "dataset_id": dataset.id,
        "params": {"attacks": ATTACKS, "max_samples": 60, "batch_size": 64},
    }
    job = client.jobs.submit(spec, idempotency_key="sdk-live-1")
    assert client.jobs.submit(spec, idempotency_key="sdk-live-1").id == job.id
    final = job.wait(progress=True, timeout=300)
    assert final.status == "succeeded", final.error
    assert f"{job.id} succeeded" in capsys.readouterr().err  # plain progress lines off a terminal

    report = job.report()
    assert isinstance(report, EvasionReport)
    assert report.n_samples == 60 and report.model_id == model.id and 0.8 < report.clean_accuracy <= 1.0
    worst = {row.eps: row.robust_accuracy for row in report.worst_case}
    assert worst[0.2] < report.clean_accuracy - 0.2

    files = {path.name: path for path in job.artifacts.download(tmp_path / "artifacts")}
    assert "report.html" in files and "<svg" in files["report.html"].read_text()
    adversarial = [name for name in files if name.endswith(".npz")]
    assert len(adversarial) == 2
    pgd = np.load(files[next(name for name in adversarial if "pgd" in name)], allow_pickle=False)
    assert pgd["x_adv"].shape[1] == 60  # one row per eps, every held-out sample
    delta = np.abs(pgd["x_adv"][0] - held_out.x[:60]).reshape(60, -1).max(axis=1)
    assert delta.max() <= 0.2 + 1e-5


def test_a_typed_spec_is_accepted_like_a_dict(client, model):
    from pydantic import TypeAdapter

    from app.schemas.jobs import JobSpec

    spec = TypeAdapter(JobSpec).validate_python(
        {
            "kind": "evasion",
            "model_id": model.id,
            "dataset_id": "builtin:digits-test",
            "params": {"attacks": [ATTACKS[0]], "max_samples": 20},
        }
    )
    job = client.jobs.submit(spec)
    assert job.wait(timeout=300, raise_on_failure=True).status == "succeeded"
    assert job.report().kind == "evasion"


def test_lists_iterate_over_every_page(client, model):
    for number in range(3):
        client.jobs.submit(
            {
                "kind": "evasion",
                "model_id": model.id,
                "dataset_id": "builtin:digits-test",
                "params": {"attacks": [ATTACKS[0]], "max_samples": 10 + number},
            }
        ).cancel()
    everything = [job.id for job in client.jobs.list(limit=100)]
    paged = [job.id for job in client.jobs.list(limit=1)]
    assert len(everything) >= 4 and paged == everything
    assert [job.id for job in client.jobs.list(status="cancelled", limit=2)] == [
        job.id for job in client.jobs.list(status="cancelled")
    ]
    models = [m.id for m in client.models.list(limit=1)]
    assert model.id in models and len(models) == len(set(models))


def test_errors_are_typed_with_the_services_code(client, live, client_model_path):
    with pytest.raises(NotFound) as missing:
        client.jobs.get("job_doesnotexist")
    assert missing.value.code == "not_found" and missing.value.status == 404
    with pytest.raises(Unauthorized) as refused, Client(live[0], "gnt_wrong") as stranger:
        list(stranger.models.list())
    assert refused.value.code == "unauthorized"

    with pytest.raises(ModelInvalid) as invalid:
        client.models.upload(
            client_model_path, name="wrong", input_shape=[1, 9, 9], num_classes=10, timeout=120
        )
    assert invalid.value.code not in ("invalid", "") and invalid.value.reason
    stored = client.models.get(invalid.value.model_id)
    assert (stored.status, stored.invalid_code, stored.invalid_reason) == (
        "invalid",
        invalid.value.code,
        invalid.value.reason,
    )
