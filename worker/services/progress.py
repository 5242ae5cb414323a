"""Progress reporting at a bounded rate, cooperative cancellation, and a heartbeat thread."""

import threading
import time
from types import TracebackType

from sqlalchemy.orm import Session, sessionmaker

from worker.services.job_state import Claim, JobCancelled, beat, record_progress


class ProgressReporter:
    """The engine's progress callback: writes at most every `interval` seconds and raises on cancel."""

    def __init__(self, session_factory: sessionmaker[Session], claim: Claim, interval: float) -> None:
        self.session_factory = session_factory
        self.claim = claim
        self.interval = interval
        self._last_write = 0.0

    def __call__(self, fraction: float, stage: str) -> None:
        """Record progress (clamped to 0..1) and stop the job if cancellation was requested."""
        now = time.monotonic()
        if now - self._last_write < self.interval and fraction < 1.0:
            return
        self._last_write = now
        with self.session_factory() as session:
            cancel = record_progress(session, self.claim, min(max(fraction, 0.0), 1.0), stage)
        if cancel:
            raise JobCancelled(self.claim.job_id)


class Heartbeat:
    """A background thread that refreshes the job's heartbeat while the attempt runs."""

    def __init__(self, session_factory: sessionmaker[Session], claim: Claim, interval: float) -> None:
        self.session_factory = session_factory
        self.claim = claim
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"heartbeat-{claim.job_id}", daemon=True)

    def _run(self) -> None:
        """Beat until stopped; a failed beat is retried at the next interval."""
        while not self._stop.wait(self.interval):
            try:
                with self.session_factory() as session:
                    beat(session, self.claim)
            except Exception:  # noqa: S112 - a missed beat is harmless; the next one retries
                continue

    def __enter__(self) -> "Heartbeat":
        self._thread.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
