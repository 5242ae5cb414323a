"""A submission commits its job once, stamped as sent; with the broker down it still answers 202 and leaves
the job unstamped, so the reconciler's next pass sends it (real Postgres, a real Redis and a dead port)."""

import pytest
from fastapi.testclient import TestClient

from app.main import create_app
from app.orm import Job
from tests.app.helpers import evasion_spec, ready_model

pytestmark = pytest.mark.service
FGSM = [{"name": "fgsm", "eps": [0.1]}]


@pytest.fixture(scope="module")
def tenant(make_key, start_worker) -> dict:
    start_worker()
    return make_key("enqueue-tenant")


@pytest.fixture(scope="module")
def model(api, tenant, digits_onnx) -> dict:
    return ready_model(api, tenant, digits_onnx)


def _stamp(api: TestClient, job_id: str) -> object:
    """The job row's enqueued_at."""
    with api.app.state.session_factory() as session:
        job = session.get(Job, job_id)
        assert job is not None
        return job.enqueued_at


def test_a_sent_job_is_stamped_and_a_job_the_broker_refused_is_left_for_the_reconciler(
    api, settings, tenant, model
):
    sent = api.post("/v1/jobs", headers=tenant, json=evasion_spec(model["id"], FGSM, max_samples=5))
    assert sent.status_code == 202, sent.text
    assert _stamp(api, sent.json()["id"]) is not None

    dead_broker = settings.model_copy(update={"broker_url": "redis://127.0.0.1:1/0"})
    with TestClient(create_app(dead_broker), raise_server_exceptions=False) as down:
        refused = down.post("/v1/jobs", headers=tenant, json=evasion_spec(model["id"], FGSM, max_samples=5))
    assert refused.status_code == 202, refused.text
    assert refused.json()["status"] == "queued"
    assert _stamp(api, refused.json()["id"]) is None
