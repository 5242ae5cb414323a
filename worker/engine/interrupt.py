"""Cooperative cancellation that reaches inside a batch: a model wrapper that checks in as it runs.

Attacks spend their time in model forward passes, so a model wrapped in `Interruptible` calls the
check (at most every `interval` seconds) from inside any attack loop, however long one batch takes.
The check raises to stop the run (the worker's progress reporter raises JobCancelled).
"""

import time
from collections.abc import Callable

from torch import Tensor, nn

from worker.engine.progress import ProgressTracker

CHECK_INTERVAL_S = 1.0


class Throttled:
    """Calls `check` when at least `interval` seconds have passed since its last call."""

    def __init__(self, check: Callable[[], None], interval: float = CHECK_INTERVAL_S) -> None:
        """Start the clock now."""
        self.check, self.interval, self._last = check, interval, time.monotonic()

    def __call__(self) -> None:
        """Run the check if it is due; its exception propagates."""
        now = time.monotonic()
        if now - self._last >= self.interval:
            self._last = now
            self.check()


class Interruptible(nn.Module):
    """The wrapped model, unchanged, except that each forward pass first runs a throttled check."""

    def __init__(self, inner: nn.Module, check: Callable[[], None]) -> None:
        """Wrap `inner`; `check` raises to interrupt."""
        super().__init__()
        self.inner = inner
        self._check = Throttled(check)

    def forward(self, x: Tensor) -> Tensor:
        """Check in, then run the wrapped model."""
        self._check()
        return self.inner(x)


def progress_check(tracker: ProgressTracker) -> Callable[[], None]:
    """A check that reports the tracker's current progress again (its callback raises on cancel)."""
    return lambda: tracker.advance(0.0, tracker.stage)
