"""Headline figures: a share with its sample count and 95% interval, and the interval arithmetic.

Pure Python (no numpy, no torch), shared by the API, the CLI, the worker's pages and the demo.
"""

import math
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

Unit = Literal["share", "points", "score", "count"]
Z_95 = 1.959963984540054  # two-sided 95% quantile of the standard normal distribution
WIDE = 0.2  # an interval wider than this earns the advice to evaluate more samples


def wilson(successes: int, n: int, z: float = Z_95) -> tuple[float, float]:
    """The Wilson score interval of the proportion successes / n (Wilson, JASA 1927)."""
    if n <= 0 or not 0 <= successes <= n:
        raise ValueError(f"wilson needs n > 0 and 0 <= successes <= n, got {successes} of {n}")
    p, z2 = successes / n, z * z
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = z / (1 + z2 / n) * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n))
    return max(0.0, centre - half), min(1.0, centre + half)


def difference_interval(
    before: float, after: float, n: int, n_after: int | None = None
) -> tuple[float, float]:
    """95% interval of before - after, shares over n and n_after (default n) samples: Newcombe's hybrid
    score interval (Statistics in Medicine 1998, method 10), from the two Wilson intervals."""
    m = n if n_after is None else n_after
    (l1, u1), (l2, u2) = wilson(round(before * n), n), wilson(round(after * m), m)
    diff = before - after
    return diff - math.hypot(before - l1, u2 - after), diff + math.hypot(u1 - before, after - l2)


def share(value: float) -> str:
    """A share as a percentage for people."""
    return f"{100 * value:.1f}%"


def number(value: Any) -> float | None:
    """A finite number from a report, or None."""
    ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    return float(value) if ok else None


def count(value: Any) -> int | None:
    """A positive sample count from a report, or None."""
    return int(value) if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


class Figure(BaseModel):
    """One headline figure: what it measures, its value, the samples behind it and its 95% interval.

    `metric` is the machine name (robust_accuracy, clean_accuracy, fidelity, attack_success_rate,
    certified_accuracy, accuracy_drop, detection_f1, ...), `label` says what it is for people, `unit`
    how to read `value` (a share, a difference in percentage points, a score, a count), `n` how many
    `n_of` it was measured on, and `low`/`high` its 95% interval where one is defined.
    """

    model_config = ConfigDict(frozen=True)

    metric: str
    label: str
    value: float
    unit: Unit = "share"
    n: int | None = None
    n_of: str = "samples"
    low: float | None = None
    high: float | None = None
    norm: str | None = None
    eps: float | None = None

    def value_text(self) -> str:
        """The value alone, for people."""
        if self.unit == "share":
            return share(self.value)
        if self.unit == "points":
            return f"{100 * self.value:+.1f} points"
        return f"{self.value:.2f}" if self.unit == "score" else f"{self.value:.0f}"

    def bounds_text(self) -> str:
        """The 95% interval alone ("86.3–98.3%"), or "n/a" where none is defined."""
        if self.low is None or self.high is None:
            return "n/a"
        if self.unit == "points":
            return f"{100 * self.low:+.1f} to {100 * self.high:+.1f} points"
        return f"{100 * self.low:.1f}–{100 * self.high:.1f}%"

    def count_text(self) -> str:
        """What the figure was measured on ("60 samples")."""
        return f"{self.n} {self.n_of}" if self.n is not None else "sample count not reported"

    def interval_text(self) -> str:
        """The 95% interval and the sample count, or what is missing."""
        if self.low is None or self.high is None:
            return f"n = {self.count_text()}" if self.n is not None else self.count_text()
        return f"95% CI {self.bounds_text()}, n = {self.count_text()}"

    def text(self) -> str:
        """One line: label, value, interval and samples."""
        return f"{self.label}: {self.value_text()} ({self.interval_text()})"

    def wide(self) -> bool:
        """Whether the interval is too wide to act on without more samples."""
        return self.low is not None and self.high is not None and self.high - self.low > WIDE


def proportion(metric: str, label: str, value: float, n: int | None, **extra: Any) -> Figure:
    """A share measured on n samples, with its Wilson interval when n is known."""
    low, high = wilson(round(value * n), n) if n else (None, None)
    return Figure(metric=metric, label=label, value=value, n=n, low=low, high=high, **extra)


def in_words(figure: Figure) -> str:
    """A figure's value with its interval, inside a sentence."""
    return f"{figure.value_text()} ({figure.interval_text()})"


def more_samples(figure: Figure) -> str:
    """Advice to evaluate more samples when the figure's interval is wide, else nothing."""
    if not figure.wide():
        return ""
    return f"; its interval is wide: evaluate more than {figure.n} {figure.n_of} to narrow it"
