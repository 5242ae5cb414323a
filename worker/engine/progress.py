"""Progress accounting shared by every kind: work units in, a monotone fraction out."""

from collections.abc import Callable

ProgressCallback = Callable[[float, str], None]


class ProgressTracker:
    """Turns work units into a monotone fraction for the caller's callback."""

    def __init__(self, total: float, callback: ProgressCallback | None) -> None:
        """Start at zero of total units."""
        self.total, self.done, self.callback = max(total, 1.0), 0.0, callback
        self.stage = "starting"

    def advance(self, units: float, stage: str) -> None:
        """Record finished units and report; exceptions from the callback propagate (cancellation)."""
        self.done = min(self.total, self.done + units)
        self.stage = stage
        if self.callback is not None:
            self.callback(self.done / self.total, stage)
