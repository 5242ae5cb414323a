"""How a wait shows a job's progress: a bar with stage and ETA on a terminal, plain lines otherwise."""

import sys
import time
from typing import TextIO

from app.schemas.jobs import JobView

BAR_WIDTH = 24
# Plain output prints a line when the status or stage changes, or progress moved this much.
LINE_STEP = 0.1
# No ETA before this much progress and time: the first batches say little about the rest.
MIN_PROGRESS = 0.01
MIN_ELAPSED = 1.0


def format_eta(seconds: float | None) -> str:
    """An ETA as h:mm:ss, or `--:--` when unknown."""
    if seconds is None:
        return "--:--"
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes:02d}:{secs:02d}"


class ProgressDisplay:
    """Shows successive job states on a stream (stderr by default)."""

    def __init__(self, stream: TextIO | None = None, *, bar: bool | None = None) -> None:
        self.stream = stream or sys.stderr
        self.bar = self.stream.isatty() if bar is None else bar
        self._started: float | None = None
        self._last_line: tuple[str, str | None, float] | None = None
        self._drawn = False

    def eta(self, progress: float, now: float | None = None) -> float | None:
        """Seconds left, extrapolated from the time since the job was first seen running."""
        now = time.monotonic() if now is None else now
        if self._started is None or progress < MIN_PROGRESS or progress >= 1.0:
            return None
        elapsed = now - self._started
        return elapsed * (1.0 - progress) / progress if elapsed >= MIN_ELAPSED else None

    def update(self, view: JobView) -> None:
        """Show one state."""
        if view.status == "running" and self._started is None:
            self._started = time.monotonic() - 1e-9
        if self.bar:
            self._draw(view)
        else:
            self._line(view)

    def _draw(self, view: JobView) -> None:
        """Redraw the bar in place."""
        filled = int(round(view.progress * BAR_WIDTH))
        bar = "#" * filled + "-" * (BAR_WIDTH - filled)
        text = (
            f"\r{view.id} [{bar}] {view.progress:6.1%} {view.status:<9} "
            f"ETA {format_eta(self.eta(view.progress))}  {(view.stage or '')[:40]:<40}"
        )
        self.stream.write(text)
        self.stream.flush()
        self._drawn = True

    def _line(self, view: JobView) -> None:
        """Print a plain line when the status or stage changed, or progress moved by LINE_STEP."""
        last = self._last_line
        if last is not None and (view.status, view.stage) == last[:2] and view.progress - last[2] < LINE_STEP:
            return
        self._last_line = (view.status, view.stage, view.progress)
        eta = self.eta(view.progress)
        eta_text = f"  ETA {format_eta(eta)}" if eta is not None else ""
        stage = f"  {view.stage}" if view.stage else ""
        self.stream.write(f"{view.id} {view.status:<9} {view.progress:6.1%}{stage}{eta_text}\n")
        self.stream.flush()

    def close(self) -> None:
        """End the bar's line."""
        if self._drawn:
            self.stream.write("\n")
            self.stream.flush()
            self._drawn = False
