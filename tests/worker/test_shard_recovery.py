"""The reconciler's shard step on the real Postgres: lost shards run again (finished ones are kept), a
shard lost too often fails its job, cancelled split jobs end, lost messages and a lost merge are re-sent
once, and sending stays under the tenant's cap."""

import threading
from datetime import timedelta

import pytest
from sqlalchemy import select

from app.orm import Job, JobShard, ModelRecord, Tenant, new_id, utcnow
from tests.worker.private_database import private_database, session_factory_of
from worker.runtime import WorkerRuntime
from worker.services.reconciler import reconcile_once
from worker.services.shards.recovery import recover_shards
from worker.services.shards.state import RUN_SHARD_TASK, claim_shard

pytestmark = pytest.mark.service
LONG_AGO = timedelta(hours=1)


class RecordingCelery:
    """Records the shard messages that would be sent."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, str]] = []
        self.lock = threading.Lock()

    def send_task(self, name: str, args: list[str], queue: str, **options: object) -> None:
        assert name == RUN_SHARD_TASK
        with self.lock:
            self.sent.append((args[0], queue))


class RecordingQueue:
    """A job queue that records instead of sending."""

    def __init__(self) -> None:
        self.celery = RecordingCelery()
        self.jobs: list[str] = []

    def send_job(self, job_id: str, kind: str = "evasion") -> None:
        self.jobs.append(job_id)

    def send_model_validation(self, model_id: str) -> None:
        """Validations are not this module's business."""

    def shards(self) -> list[str]:
        """The shard ids sent so far, in order."""
        return [shard_id for shard_id, _ in self.celery.sent]


@pytest.fixture(scope="module")
def settings(settings):
    """The shared settings on a private database (live workers of other modules reconcile the shared one)."""
    with private_database(settings, tenant_max_running_shards=2) as private:
        yield private


@pytest.fixture(scope="module")
def factory(settings):
    with session_factory_of(settings) as factory:
        yield factory


@pytest.fixture()
def rt(settings, factory):
    return WorkerRuntime(settings=settings, session_factory=factory, queue=RecordingQueue())


@pytest.fixture()
def tenant(factory) -> str:
    """A fresh tenant per test, so the cap counts only this test's shards."""
    with factory() as session:
        tenant = Tenant(name=new_id("shards"))
        session.add(tenant)
        session.flush()
        model = ModelRecord(
            tenant_id=tenant.id, name="m", format="onnx", input_shape=[1, 8, 8], num_classes=10,
            input_range=[0.0, 1.0], status="ready",
        )  # fmt: skip
        session.add(model)
        session.commit()
        return tenant.id


def _split_job(factory, tenant: str, states: list[str], **job_values) -> tuple[str, list[str]]:
    """A running evasion job split into shards in the given states; finished ones finished long ago."""
    long_ago = utcnow() - LONG_AGO
    with factory() as session:
        model_id = session.scalar(select(ModelRecord.id).where(ModelRecord.tenant_id == tenant))
        values = {"status": "running", "attempts": 1, "heartbeat_at": utcnow(), **job_values}
        job = Job(tenant_id=tenant, kind="evasion", model_id=model_id, dataset_id="builtin:digits", params={})
        for key, value in values.items():
            setattr(job, key, value)
        session.add(job)
        session.flush()
        shards = []
        for index, state in enumerate(states):
            started = state != "queued"
            shard = JobShard(
                job_id=job.id, tenant_id=tenant, index=index, plan={"start": index, "stop": index + 1},
                state=state, attempts=1 if started else 0, started_at=long_ago if started else None,
                heartbeat_at=long_ago if started else None,
                finished_at=long_ago if state in ("succeeded", "failed", "cancelled") else None,
                enqueued_at=long_ago,
            )  # fmt: skip
            session.add(shard)
            shards.append(shard)
        session.commit()
        return job.id, [shard.id for shard in shards]


def _shard(factory, shard_id: str) -> JobShard:
    with factory() as session:
        return session.get(JobShard, shard_id)


def _job(factory, job_id: str) -> Job:
    with factory() as session:
        return session.get(Job, job_id)


def test_a_shard_whose_worker_died_runs_again_and_finished_shards_are_kept(rt, factory, tenant):
    job_id, (done, lost) = _split_job(factory, tenant, ["succeeded", "running"])
    recovered = recover_shards(rt)
    assert lost in recovered and done not in recovered
    shard = _shard(factory, lost)
    assert (shard.state, shard.attempts, shard.worker_id) == ("queued", 1, None)
    assert rt.queue.shards() == [lost]  # sent again at once, on the kind's queue
    assert rt.queue.celery.sent[0][1] == rt.settings.queue_for("evasion")
    assert _shard(factory, done).state == "succeeded" and _job(factory, job_id).status == "running"
    recover_shards(rt)  # just sent: not again within requeue_after_s
    assert rt.queue.shards() == [lost]


def test_a_shard_lost_max_attempts_times_fails_its_job_with_worker_lost(rt, factory, tenant, settings):
    job_id, (lost, waiting) = _split_job(factory, tenant, ["running", "queued"])
    with factory() as session:
        session.get(JobShard, lost).attempts = settings.max_attempts
        session.commit()
    recover_shards(rt)
    shard, job = _shard(factory, lost), _job(factory, job_id)
    assert (shard.state, shard.error_code) == ("failed", "worker_lost")
    assert (job.status, job.error_code) == ("failed", "worker_lost")
    assert waiting not in rt.queue.shards()  # shards of a failed job are never sent


def test_a_cancelled_split_job_ends_once_no_shard_runs_and_its_queued_shards_never_run(rt, factory, tenant):
    job_id, (lost, waiting, done) = _split_job(
        factory, tenant, ["running", "queued", "succeeded"], cancel_requested=True
    )
    result = reconcile_once(rt)
    assert _job(factory, job_id).status == "cancelled"
    assert [_shard(factory, s).state for s in (lost, waiting, done)] == [
        "cancelled",
        "cancelled",
        "succeeded",
    ]
    assert rt.queue.shards() == [] and lost in result.shards


def test_a_lost_shard_message_is_sent_once_even_by_concurrent_reconcilers(rt, factory, tenant, settings):
    _, (lost,) = _split_job(factory, tenant, ["queued"])
    others = [WorkerRuntime(settings=settings, session_factory=factory, queue=rt.queue) for _ in range(4)]
    threads = [threading.Thread(target=recover_shards, args=(other,)) for other in others]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert rt.queue.shards() == [lost]


def test_sending_stays_under_the_tenants_cap(rt, factory, tenant, settings):
    assert settings.tenant_max_running_shards == 2
    _, (running, first, second, third) = _split_job(
        factory, tenant, ["running", "queued", "queued", "queued"]
    )
    with factory() as session:
        session.get(JobShard, running).heartbeat_at = utcnow()  # alive
        session.commit()
    recover_shards(rt)
    assert rt.queue.shards() == [first]  # one running + one sent = the cap of 2
    with factory() as session:
        assert claim_shard(session, first, settings.tenant_max_running_shards) is not None
    with factory() as session:  # the cap is full: the claim is refused and the shard waits unsent
        assert claim_shard(session, second, settings.tenant_max_running_shards) is None
    shard = _shard(factory, second)
    assert (shard.state, shard.enqueued_at) == ("queued", None)
    assert _shard(factory, third).state == "queued"


def test_another_tenants_shards_are_sent_while_one_tenant_is_at_its_cap(rt, factory, tenant):
    _split_job(factory, tenant, ["running", "running", "queued"])
    with factory() as session:
        session.execute(
            JobShard.__table__.update().where(JobShard.tenant_id == tenant).values(heartbeat_at=utcnow())
        )
        session.commit()
    with factory() as session:
        other = Tenant(name=new_id("other"))
        session.add(other)
        session.flush()
        session.add(
            ModelRecord(
                tenant_id=other.id,
                name="m",
                format="onnx",
                input_shape=[1, 8, 8],
                num_classes=10,
                input_range=[0.0, 1.0],
                status="ready",
            )  # fmt: skip
        )
        session.commit()
        other_id = other.id
    _, (theirs,) = _split_job(factory, other_id, ["queued"])
    recover_shards(rt)
    assert rt.queue.shards() == [theirs]


def test_a_lost_merge_is_sent_again_and_a_fresh_one_is_left_alone(rt, factory, tenant):
    waiting, (first, _) = _split_job(factory, tenant, ["succeeded", "succeeded"], stage="split into 2 shards")
    merging, (theirs, _) = _split_job(factory, tenant, ["succeeded", "succeeded"], stage="merging")
    stale = utcnow() - LONG_AGO
    died, (dead, _) = _split_job(
        factory, tenant, ["succeeded", "succeeded"], stage="merging", heartbeat_at=stale
    )
    just_done, (last, _) = _split_job(
        factory, tenant, ["succeeded", "succeeded"], stage="split into 2 shards"
    )
    with factory() as session:
        session.get(JobShard, last).finished_at = utcnow()  # its worker is taking the merge right now
        session.commit()
    recover_shards(rt)
    sent = rt.queue.shards()
    assert sent.count(first) == 1 and sent.count(dead) == 1
    assert theirs not in sent and last not in sent
    assert _job(factory, waiting).stage == "merge pending" and _job(factory, merging).stage == "merging"
    assert _job(factory, just_done).stage == "split into 2 shards"
    recover_shards(rt)  # the re-sent merge is pending with a fresh heartbeat: not sent twice
    assert rt.queue.shards().count(first) == 1
