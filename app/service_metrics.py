"""The service's own figures for /metrics, read from the database at scrape time.

Jobs by kind and status, queue depth, job and validation durations (histograms over every finished
one), validation outcomes, webhook deliveries and worker heartbeats. The database is the source of
truth, so every API process reports the same figures and no worker needs an HTTP port.
"""

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry
from sqlalchemy import ColumnElement, case, func, select
from sqlalchemy.orm import InstrumentedAttribute, Session, sessionmaker

from app.orm import Job, ModelRecord, WebhookDelivery, WorkerHeartbeat, utcnow

# A column or mapped attribute usable in a query expression.
SQLColumn = ColumnElement[Any] | InstrumentedAttribute[Any]
JOB_BUCKETS = (1, 5, 15, 60, 300, 900, 3600, 4 * 3600, 12 * 3600)
VALIDATION_BUCKETS = (1, 2, 5, 10, 30, 60, 120, 300)


def _seconds(session: Session, end: SQLColumn, start: SQLColumn) -> ColumnElement[Any]:
    """`end - start` in seconds, on Postgres and SQLite."""
    if session.get_bind().dialect.name == "sqlite":
        return (func.julianday(end) - func.julianday(start)) * 86400.0
    return func.extract("epoch", end - start)


def _histogram(
    session: Session, name: str, doc: str, label: SQLColumn, end: SQLColumn, start: SQLColumn,
    buckets: tuple[float, ...], label_name: str = "kind",
) -> HistogramMetricFamily:  # fmt: skip
    """A histogram of durations, one series per label value, bucket counts computed in SQL."""
    seconds = _seconds(session, end, start)
    columns = [func.sum(case((seconds <= bound, 1), else_=0)) for bound in buckets]
    query = select(label, func.count(), func.coalesce(func.sum(seconds), 0.0), *columns).where(
        end.is_not(None), start.is_not(None)
    )
    family = HistogramMetricFamily(name, doc, labels=[label_name])
    for value, count, total, *counts in session.execute(query.group_by(label)):
        series = [(str(float(bound)), float(c or 0)) for bound, c in zip(buckets, counts, strict=True)]
        family.add_metric([str(value)], [*series, ("+Inf", float(count))], float(total))
    return family


class ServiceCollector(Collector):
    """Collects the service's figures from the database on each scrape."""

    def __init__(self, session_factory: sessionmaker[Session], stale_after_s: float) -> None:
        self.session_factory = session_factory
        self.stale_after_s = stale_after_s

    def collect(self) -> Iterator[Metric]:
        """The metric families, fresh from the database."""
        with self.session_factory() as session:
            yield from self._jobs(session)
            yield from self._validations(session)
            yield from self._workers(session)

    def _jobs(self, session: Session) -> Iterator[Metric]:
        jobs = GaugeMetricFamily("gauntlet_jobs", "Jobs by kind and status", labels=["kind", "status"])
        depth = GaugeMetricFamily("gauntlet_queue_depth", "Queued jobs waiting for a worker", labels=["kind"])
        for kind, status, count in session.execute(
            select(Job.kind, Job.status, func.count()).group_by(Job.kind, Job.status)
        ):
            jobs.add_metric([kind, status], count)
            if status == "queued":
                depth.add_metric([kind], count)
        yield jobs
        yield depth
        yield _histogram(
            session, "gauntlet_job_duration_seconds", "Run time of finished jobs (started to finished)",
            Job.kind, Job.finished_at, Job.started_at, JOB_BUCKETS,
        )  # fmt: skip
        deliveries = GaugeMetricFamily(
            "gauntlet_webhook_deliveries", "Webhook deliveries by status", labels=["status"]
        )
        for status, count in session.execute(
            select(WebhookDelivery.status, func.count()).group_by(WebhookDelivery.status)
        ):
            deliveries.add_metric([status], count)
        yield deliveries

    def _validations(self, session: Session) -> Iterator[Metric]:
        outcomes = GaugeMetricFamily(
            "gauntlet_model_validations",
            "Models by validation status and invalid code",
            labels=["status", "code"],
        )
        for status, code, count in session.execute(
            select(ModelRecord.status, ModelRecord.invalid_code, func.count()).group_by(
                ModelRecord.status, ModelRecord.invalid_code
            )
        ):
            outcomes.add_metric([status, code or ""], count)
        yield outcomes
        yield _histogram(
            session, "gauntlet_validation_duration_seconds", "Time of each model's last validation attempt",
            ModelRecord.format, ModelRecord.validated_at, ModelRecord.validation_started_at,
            VALIDATION_BUCKETS, "format",
        )  # fmt: skip

    def _workers(self, session: Session) -> Iterator[Metric]:
        seen = GaugeMetricFamily(
            "gauntlet_worker_last_seen_timestamp_seconds",
            "Last heartbeat of each worker",
            labels=["worker", "queues"],
        )
        alive = GaugeMetricFamily(
            "gauntlet_workers_alive", "Workers whose heartbeat is fresh (stale_after_s)"
        )
        cutoff = utcnow() - timedelta(seconds=self.stale_after_s)
        fresh = 0
        for row in session.scalars(select(WorkerHeartbeat)):
            seen.add_metric([row.worker_id, row.queues], row.last_seen_at.timestamp())
            fresh += row.last_seen_at >= cutoff
        alive.add_metric([], fresh)
        yield seen
        yield alive


def service_registry(session_factory: sessionmaker[Session], stale_after_s: float) -> CollectorRegistry:
    """A registry of this app's service figures (one per app, so several apps never collide)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ServiceCollector(session_factory, stale_after_s))
    return registry
