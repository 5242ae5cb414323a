"""`--fail-under` / `--fail-over METRIC[@AT]=VALUE`: gates on a report's headline figures.

A metric's value is the worst of the report's headline figures of that name
(`app.schemas.reports.headline.metric`: the lowest accuracy, the highest success rate or fidelity), so a
threshold holds only when every such figure meets it; `@AT` keeps the figures at one eps (the l2 radius
for certified accuracy, the poisoning rate for attack success):

- `clean_accuracy`: the model's accuracy on the held-out set (extraction: the victim's; poisoning: the
  clean baseline's; defense: the defended model's).
- `robust_accuracy` (evasion; defense: the defended model): the per-sample worst case over every attack,
  one figure per norm and eps; without `@EPS` the lowest, which is the largest eps's.
- `attack_success_rate` (evasion: every attack at every eps; poisoning: every attack and rate, the
  untargeted label flips' accuracy drop apart): use `--fail-over`.
- `accuracy_drop` (poisoning: untargeted label flips): use `--fail-over`.
- `fidelity` (extraction): the best surrogate's agreement with the victim at the largest budget, per
  defense; without a selector the highest (the undefended `none` row's unless a defense is worse):
  use `--fail-over`.
- `certified_accuracy` (defense with randomized smoothing): one figure per l2 radius.
"""

import math
from dataclasses import dataclass
from typing import Any

from app.schemas.reports.headline import HIGHER_IS_WORSE, METRICS, metric

NAMES = tuple(dict.fromkeys([*METRICS, *sorted(HIGHER_IS_WORSE)]))


@dataclass(frozen=True)
class Threshold:
    """`METRIC[@AT]=VALUE`, read as a floor (`--fail-under`) or a ceiling (`--fail-over`)."""

    metric: str
    at: float | None
    value: float
    floor: bool

    def __str__(self) -> str:
        at = f"@{self.at:g}" if self.at is not None else ""
        return f"{self.metric}{at} {'>=' if self.floor else '<='} {self.value:g}"


def parse_threshold(text: str, *, floor: bool) -> Threshold:
    """`METRIC[@AT]=VALUE` into a Threshold; ValueError names what is wrong."""
    name, sep, value = text.partition("=")
    metric_name, has_at, at = name.strip().partition("@")
    if not sep or metric_name not in NAMES:
        raise ValueError(f"{text!r}: expected METRIC[@EPS]=VALUE with METRIC one of {', '.join(NAMES)}")
    try:
        number, where = float(value), float(at) if has_at else None
    except ValueError:
        raise ValueError(f"{text!r}: {value!r} and the eps after @ must be numbers") from None
    if not math.isfinite(number) or (where is not None and not math.isfinite(where)):
        raise ValueError(f"{text!r}: numbers must be finite")
    return Threshold(metric_name, where, number, floor)


def evaluate(report: dict[str, Any], threshold: Threshold) -> tuple[bool, str]:
    """Whether a report meets a threshold, and a line saying so (a missing figure misses it)."""
    value = metric(report, threshold.metric, threshold.at)
    if value is None:
        return False, f"MISSED {threshold}: the {report.get('kind')} report has no such figure"
    passed = value >= threshold.value if threshold.floor else value <= threshold.value
    return passed, f"{'ok    ' if passed else 'MISSED'} {threshold}: {value:.4f}"
