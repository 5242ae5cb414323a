"""The reconciler on the real Postgres: cancelled jobs never return to the queue, running validations are
never re-sent, interrupted ones end after max_attempts, and unreferenced blobs are collected."""

import threading
from datetime import timedelta

import pytest
from sqlalchemy import select

from app.orm import Blob, Job, ModelRecord, Tenant, WorkerHeartbeat, new_id, utcnow
from app.storage import collect_unreferenced_blobs, put_blob
from tests.worker.private_database import private_database, session_factory_of
from worker.runtime import WorkerRuntime
from worker.services.reconciler import reconcile_once

pytestmark = pytest.mark.service


class RecordingQueue:
    """Records what would be sent instead of sending it."""

    def __init__(self) -> None:
        self.jobs: list[str] = []
        self.validations: list[str] = []
        self.lock = threading.Lock()

    def send_job(self, job_id: str, kind: str = "evasion") -> None:
        with self.lock:
            self.jobs.append(job_id)

    def send_model_validation(self, model_id: str) -> None:
        with self.lock:
            self.validations.append(model_id)


@pytest.fixture(scope="module")
def settings(settings):
    """The shared settings on a private database: the live workers of other modules reconcile the shared
    one every second and would claim this module's stale rows before the reconcilers under test."""
    with private_database(settings) as private:
        yield private


@pytest.fixture(scope="module")
def factory(settings):
    with session_factory_of(settings) as factory:
        yield factory


@pytest.fixture()
def rt(settings, factory):
    return WorkerRuntime(settings=settings, session_factory=factory, queue=RecordingQueue())


@pytest.fixture(scope="module")
def tenant(factory) -> str:
    with factory() as session:
        tenant = Tenant(name=new_id("reconciler"))
        session.add(tenant)
        session.commit()
        return tenant.id


def _model(factory, tenant: str, **values) -> str:
    with factory() as session:
        model = ModelRecord(
            tenant_id=tenant, name="m", format="onnx", input_shape=[1, 8, 8], num_classes=10,
            input_range=[0.0, 1.0], **values,
        )  # fmt: skip
        session.add(model)
        session.commit()
        return model.id


def _job(factory, tenant: str, model_id: str, **values) -> str:
    with factory() as session:
        job = Job(
            tenant_id=tenant,
            kind="evasion",
            model_id=model_id,
            dataset_id="builtin:digits",
            params={},
            **values,
        )
        session.add(job)
        session.commit()
        return job.id


def _get(factory, table, row_id: str):
    with factory() as session:
        return session.get(table, row_id)


def test_a_cancelled_job_whose_worker_died_ends_cancelled_and_is_never_queued_again(rt, factory, tenant):
    model = _model(factory, tenant, status="ready")
    long_ago = utcnow() - timedelta(hours=1)
    running = _job(
        factory, tenant, model, status="running", attempts=1, heartbeat_at=long_ago, cancel_requested=True
    )
    queued = _job(factory, tenant, model, status="queued", cancel_requested=True, enqueued_at=long_ago)
    cancelled: set[str] = set()
    for _ in range(2):
        cancelled |= set(reconcile_once(rt).cancelled)
    assert {running, queued} <= cancelled
    for job_id in (running, queued):
        job = _get(factory, Job, job_id)
        assert job.status == "cancelled" and job.finished_at is not None, job.status
    assert running not in rt.queue.jobs and queued not in rt.queue.jobs


def test_a_stale_queued_job_is_sent_once_even_by_concurrent_reconcilers(rt, factory, tenant, settings):
    model = _model(factory, tenant, status="ready")
    job_id = _job(factory, tenant, model, status="queued", enqueued_at=utcnow() - timedelta(hours=1))
    others = [WorkerRuntime(settings=settings, session_factory=factory, queue=rt.queue) for _ in range(4)]
    threads = [threading.Thread(target=reconcile_once, args=(other,)) for other in others]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert rt.queue.jobs.count(job_id) == 1


def test_a_validation_that_beats_is_never_resent_and_a_lost_one_is(rt, factory, tenant):
    long_ago = utcnow() - timedelta(hours=1)
    beating = _model(
        factory, tenant, enqueued_at=long_ago, validation_attempts=1, validation_heartbeat_at=utcnow()
    )
    lost = _model(factory, tenant, enqueued_at=long_ago)
    reconcile_once(rt)
    assert beating not in rt.queue.validations and rt.queue.validations.count(lost) == 1
    reconcile_once(rt)  # just stamped: not again within requeue_after_s
    assert rt.queue.validations.count(lost) == 1


def test_a_validation_interrupted_max_attempts_times_ends_invalid(rt, factory, tenant, settings):
    long_ago = utcnow() - timedelta(hours=1)
    model_id = _model(
        factory, tenant, enqueued_at=long_ago, validation_attempts=settings.max_attempts,
        validation_heartbeat_at=long_ago,
    )  # fmt: skip
    result = reconcile_once(rt)
    model = _get(factory, ModelRecord, model_id)
    assert (model.status, model.invalid_code) == ("invalid", "validation_interrupted")
    assert model_id not in rt.queue.validations and model_id not in result.resent_models


def test_the_reconciler_records_the_workers_heartbeat(rt, factory):
    from worker.services.job_state import worker_identity

    reconcile_once(rt, "cpu,gpu")
    beat = _get(factory, WorkerHeartbeat, worker_identity())
    assert beat is not None and beat.queues == "cpu,gpu" and beat.last_seen_at.tzinfo is not None


def test_only_blobs_nothing_references_are_collected_after_the_grace_period(factory, tenant):
    with factory() as session:
        kept = put_blob(session, b"model bytes " + new_id("k").encode(), max_bytes=1 << 20)
        orphan = put_blob(session, b"orphan bytes " + new_id("o").encode(), max_bytes=1 << 20)
        session.commit()
    _model(factory, tenant, status="ready", blob_sha256=kept)
    with factory() as session:
        assert orphan not in collect_unreferenced_blobs(session, grace_s=3600)  # used moments ago
        old = utcnow() - timedelta(hours=2)
        session.execute(
            Blob.__table__.update().where(Blob.sha256.in_([kept, orphan])).values(last_used_at=old)
        )
        session.commit()
        collected = collect_unreferenced_blobs(session, grace_s=3600, limit=10_000)
    assert orphan in collected and kept not in collected
    with factory() as session:
        remaining = set(session.scalars(select(Blob.sha256)))
    assert kept in remaining and orphan not in remaining
