"""A split defense job on the real Postgres, its shards run in this process: a shard whose worker died
runs again from the stored defense (nobody trains but the splitting worker) and the report equals that of
the same job in one piece; while the shards wait, the job's progress is shard 0's share."""

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
import torch
from sqlalchemy import select

from app.orm import Blob, Job, JobShard, ModelRecord, Tenant, new_id, utcnow
from app.services.jobs import job_view
from app.storage import put_blob
from tests.app.helpers import measured
from tests.worker.private_database import private_database, session_factory_of
from tests.worker.test_shard_recovery import RecordingQueue
from worker.runtime import WorkerRuntime
from worker.services.job_runner import merge_job, run_job
from worker.services.shards import defense as defense_shards
from worker.services.shards.recovery import recover_shards
from worker.services.shards.runner import run_shard
from worker.services.shards.state import claim_shard

pytestmark = [pytest.mark.service, pytest.mark.slow]

AT = {"name": "adversarial_training", "method": "fast", "eps": 0.1, "epochs": 1, "init": "pretrained"}
PGD = {"name": "pgd", "norm": "linf", "eps": [0.1], "steps": 3}
EVALUATION = {"attacks": [PGD], "max_samples": 48, "batch_size": 16, "sanity_runs": True}


@pytest.fixture(scope="module", autouse=True)
def single_thread() -> Iterator[None]:
    """One intra-op thread while this process runs the jobs: on a loaded machine torch's threads would
    fight over the cores (the workers set theirs; this process is the test's)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def settings(settings):
    """The shared settings on a private database (live workers of other modules reconcile the shared one)."""
    with private_database(settings) as private:
        yield private


@pytest.fixture(scope="module")
def factory(settings):
    with session_factory_of(settings) as factory:
        yield factory


@pytest.fixture()
def rt(settings, factory) -> WorkerRuntime:
    return WorkerRuntime(settings=settings, session_factory=factory, queue=RecordingQueue())


@pytest.fixture(scope="module")
def model(factory, settings, digits_onnx) -> tuple[str, str]:
    """A tenant and its ready digits model: (tenant id, model id)."""
    with factory() as session:
        tenant = Tenant(name=new_id("defense-shards"))
        session.add(tenant)
        session.flush()
        digest = put_blob(session, digits_onnx, max_bytes=settings.max_artifact_bytes)
        record = ModelRecord(
            tenant_id=tenant.id, name="digits", format="onnx", blob_sha256=digest, white_box=True,
            input_shape=[1, 8, 8], num_classes=10, input_range=[0.0, 1.0], status="ready",
            size_bytes=len(digits_onnx),
        )  # fmt: skip
        session.add(record)
        session.commit()
        return tenant.id, record.id


def _job(factory, model: tuple[str, str], sharding: dict[str, int]) -> str:
    """A queued defense job (no message: this test runs it)."""
    tenant_id, model_id = model
    params = {"train_dataset_id": "builtin:digits-train", "defense": AT, "evaluation": EVALUATION}
    with factory() as session:
        job = Job(
            tenant_id=tenant_id, kind="defense", model_id=model_id, dataset_id="builtin:digits-test",
            params=params, seed=3, sharding=sharding,
        )  # fmt: skip
        session.add(job)
        session.commit()
        return job.id


def _report(factory, job_id: str) -> Any:
    with factory() as session:
        job = session.get(Job, job_id)
        assert job is not None and job.status == "succeeded", (job.status, job.error_message)
        return measured(job.report)


def _shards(factory, job_id: str) -> list[JobShard]:
    with factory() as session:
        return list(
            session.scalars(select(JobShard).where(JobShard.job_id == job_id).order_by(JobShard.index))
        )


def test_a_lost_shard_runs_again_from_the_stored_defense_and_the_report_is_that_of_one_piece(
    rt, factory, model, settings, monkeypatch
):
    whole = _job(factory, model, {"max_shards": 1})
    run_job(rt, whole)
    assert _shards(factory, whole) == []

    split = _job(factory, model, {"samples_per_shard": 16})
    run_job(rt, split)  # trains, writes shard 0 (the stored defense) and three slices of 16 samples
    shards = _shards(factory, split)
    assert [(s.index, s.state) for s in shards] == [(0, "succeeded")] + [(i, "queued") for i in (1, 2, 3)]
    stored = shards[0].result_sha256
    assert all(s.plan["prepared_sha256"] == stored for s in shards[1:])
    with factory() as session:
        assert session.get(Blob, stored) is not None
        job = session.get(Job, split)
        assert 0 < job.progress <= 0.95 / 4 + 1e-9  # the training filled at most shard 0's share
        view = job_view(job)
    assert view.status == "running" and view.progress == pytest.approx(0.95 / 4)
    assert [shard.index for shard in view.shards] == [0, 1, 2, 3]

    def no_training(*args: object, **kwargs: object) -> None:
        raise AssertionError("a shard or the merge trained the defense again")

    monkeypatch.setattr(defense_shards, "prepare_defense", no_training)
    run_shard(rt, shards[1].id, merge_job)
    with factory() as session:  # shard 2's worker dies mid-shard: its heartbeat stops
        claim = claim_shard(session, shards[2].id, settings.tenant_max_running_shards)
        assert claim is not None
        row = session.get(JobShard, shards[2].id)
        row.heartbeat_at = utcnow() - timedelta(seconds=settings.stale_after_s + 60)
        session.commit()
    assert shards[2].id in recover_shards(rt)
    run_shard(rt, shards[2].id, merge_job)
    run_shard(rt, shards[3].id, merge_job)  # the last shard: this worker merges
    after = _shards(factory, split)
    assert [(s.state, s.attempts) for s in after] == [
        ("succeeded", 1),
        ("succeeded", 1),
        ("succeeded", 2),
        ("succeeded", 1),
    ]
    assert _report(factory, split) == _report(factory, whole)
