"""/metrics carries the service's own figures, read from the database (Postgres here)."""

from datetime import timedelta

import pytest
from prometheus_client.parser import text_string_to_metric_families

from app.orm import Job, ModelRecord, Tenant, WorkerHeartbeat, new_id, utcnow

pytestmark = pytest.mark.service
KIND, FORMAT = "metricskind", "metricsfmt"  # labels no other test uses


@pytest.fixture(scope="module")
def figures(api) -> dict:
    """Rows with known durations and states, then one scrape parsed into {(name, labels): value}."""
    now = utcnow()
    with api.app.state.session_factory() as session:
        tenant = Tenant(name=new_id("metrics"))
        session.add(tenant)
        session.flush()
        model = ModelRecord(
            tenant_id=tenant.id, name="m", format=FORMAT, input_shape=[1], num_classes=2, input_range=[0, 1],
            status="invalid", invalid_code="resource_limit", validation_started_at=now - timedelta(seconds=7),
            validated_at=now,
        )  # fmt: skip
        session.add(model)
        session.flush()
        for status, seconds in (
            ("succeeded", 10),
            ("succeeded", 100),
            ("failed", 2),
            ("queued", None),
            ("queued", None),
        ):
            started = now - timedelta(seconds=seconds) if seconds else None
            session.add(
                Job(
                    tenant_id=tenant.id,
                    kind=KIND,
                    model_id=model.id,
                    dataset_id="builtin:digits",
                    params={},
                    status=status,
                    started_at=started,
                    finished_at=now if seconds else None,
                )  # fmt: skip
            )
        session.merge(WorkerHeartbeat(worker_id="metrics-test:1", queues="cpu", last_seen_at=now))
        session.commit()
    text = api.get("/metrics").text
    values = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            values[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return values


def test_jobs_by_kind_and_status_and_the_queue_depth(figures):
    assert figures[("gauntlet_jobs", (("kind", KIND), ("status", "succeeded")))] == 2
    assert figures[("gauntlet_jobs", (("kind", KIND), ("status", "queued")))] == 2
    assert figures[("gauntlet_queue_depth", (("kind", KIND),))] == 2


def test_job_durations_are_a_histogram_over_finished_jobs(figures):
    def bucket(le: str) -> float:
        return figures[("gauntlet_job_duration_seconds_bucket", (("kind", KIND), ("le", le)))]

    assert (bucket("1.0"), bucket("5.0"), bucket("15.0"), bucket("60.0"), bucket("300.0")) == (0, 1, 2, 2, 3)
    assert figures[("gauntlet_job_duration_seconds_count", (("kind", KIND),))] == 3
    assert figures[("gauntlet_job_duration_seconds_sum", (("kind", KIND),))] == pytest.approx(112, abs=0.5)


def test_validation_outcomes_durations_and_worker_heartbeats(figures):
    assert figures[("gauntlet_model_validations", (("code", "resource_limit"), ("status", "invalid")))] >= 1
    assert figures[("gauntlet_validation_duration_seconds_bucket", (("format", FORMAT), ("le", "5.0")))] == 0
    assert figures[("gauntlet_validation_duration_seconds_bucket", (("format", FORMAT), ("le", "10.0")))] == 1
    seen = figures[
        ("gauntlet_worker_last_seen_timestamp_seconds", (("queues", "cpu"), ("worker", "metrics-test:1")))
    ]
    assert seen == pytest.approx(utcnow().timestamp(), abs=120)
    assert figures[("gauntlet_workers_alive", ())] >= 1
