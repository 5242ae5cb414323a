"""The headline of a report of any kind: its figures, each with a sample count and a 95% interval, what
passed and what failed (the report's checks), and one sentence a security engineer can act on.

Pure Python (no numpy, no torch). The HTML pages (the verdict box), the demo's text, the CLI's result
table and its `--fail-under` thresholds all read a report through `headline` and `metric`, so they say
the same things.
"""

import math
from typing import Any

from pydantic import BaseModel, ConfigDict

from app.schemas.reports.figures import Figure, number, wilson
from app.schemas.reports.verdicts import KINDS

__all__ = ["METRICS", "CheckOutcome", "Figure", "Headline", "headline", "metric", "wilson"]

Report = dict[str, Any]
# The figures `metric` answers for, by name (a CI gate's `--fail-under NAME=VALUE`).
METRICS = ("robust_accuracy", "clean_accuracy", "fidelity", "attack_success_rate", "certified_accuracy")
# For these a higher value is worse for the model owner: `metric` returns the highest.
HIGHER_IS_WORSE = frozenset({"fidelity", "attack_success_rate", "accuracy_drop"})


class CheckOutcome(BaseModel):
    """A sanity check of the report: its name, whether it passed, what a failure suggests."""

    model_config = ConfigDict(frozen=True)

    name: str
    passed: bool
    detail: str = ""


class Headline(BaseModel):
    """The figures, the checks and the verdict of one report; `model` is the model's name and id."""

    model_config = ConfigDict(frozen=True)

    kind: str
    model: str | None
    verdict: str
    figures: list[Figure]
    passed: list[CheckOutcome]
    failed: list[CheckOutcome]

    def lines(self) -> list[str]:
        """The headline as plain text lines, saying what the page's verdict box says."""
        lines = [f"verdict: {self.verdict}", *(f"  {figure.text()}" for figure in self.figures)]
        if self.passed:
            lines.append(f"  passed: {', '.join(check.name for check in self.passed)}")
        lines += [f"  FAILED: {c.name}" + (f" ({c.detail})" if c.detail else "") for c in self.failed]
        return lines


def checks(report: Report) -> tuple[list[CheckOutcome], list[CheckOutcome]]:
    """The report's checks, split into passed and failed."""
    outcomes = [
        CheckOutcome(
            name=str(c.get("name", "?")), passed=bool(c.get("passed")), detail=str(c.get("detail") or "")
        )
        for c in report.get("checks") or []
        if isinstance(c, dict)
    ]
    return [c for c in outcomes if c.passed], [c for c in outcomes if not c.passed]


def model_text(report: Report) -> str | None:
    """The model under test by its name and id."""
    name, model_id = report.get("model_name"), report.get("model_id")
    if name and model_id:
        return f"{name} ({model_id})"
    return str(name or model_id) if name or model_id else None


def headline(report: Report) -> Headline:
    """The headline of a report of any kind (a kind this module does not know gets only its checks)."""
    kind = str(report.get("kind", ""))
    builder = KINDS.get(kind)
    figures, verdict = (
        builder(report) if builder else ([], f"No headline figures for a {kind or 'report'} report")
    )
    passed, failed = checks(report)
    if failed:
        names = ", ".join(c.name for c in failed[:3]) + (", ..." if len(failed) > 3 else "")
        verdict += f"; but {len(failed)} sanity check(s) failed ({names}): find out why before trusting it"
    return Headline(
        kind=kind,
        model=model_text(report),
        verdict=verdict + ".",
        figures=figures,
        passed=passed,
        failed=failed,
    )


def _at(figure_eps: float | None, eps: float | None) -> bool:
    """Whether a figure is at the requested eps (any eps when none is requested)."""
    return eps is None or (figure_eps is not None and math.isclose(figure_eps, eps, rel_tol=1e-6))


def metric(report: Report, name: str, eps: float | None = None) -> float | None:
    """The report's figure `name` for a CI gate: the worst of its headline figures of that metric (the
    lowest accuracy, the highest fidelity or success rate), at `eps` (the radius, for certified accuracy)
    when given; None when the report has no such figure. Evasion success rates come from every attack."""
    values = [f.value for f in headline(report).figures if f.metric == name and _at(f.eps, eps)]
    if name == "attack_success_rate" and report.get("kind") == "evasion":
        rows = [row for attack in report.get("attacks") or [] for row in attack.get("results") or []]
        values += [
            float(row["attack_success_rate"])
            for row in rows
            if number(row.get("attack_success_rate")) is not None and _at(number(row.get("eps")), eps)
        ]
    if not values:
        return None
    return max(values) if name in HIGHER_IS_WORSE else min(values)
