"""The HTML shell every kind's report shares: the verdict, the envelope, the kind's sections, the checks.

The page is rendered from the JSON report alone, self-contained (no scripts, no external assets), and
starts with the verdict: the headline figures with their sample counts and 95% intervals, what passed
and what failed, and one sentence to act on (app.schemas.reports.headline, which the CLI and the demo
read too, so they say the same things).
"""

from typing import Any

from app.schemas.reports.headline import Headline, headline
from worker.engine.reports.parts import esc, human, key_values, section, table
from worker.engine.reports.sections import SECTIONS

_STYLE = """
body{font-family:system-ui,sans-serif;margin:2em auto;max-width:62em;color:#222;padding:0 1em}
table{border-collapse:collapse;margin:.5em 0 1.5em}
th,td{border:1px solid #ccc;padding:.25em .6em;text-align:left;font-variant-numeric:tabular-nums}
th{background:#f3f3f3}table.kv th{font-weight:normal;width:14em}
.pass{color:#17692b;font-weight:bold}.fail{color:#b00020;font-weight:bold}
.verdict{border:2px solid #17692b;border-radius:6px;padding:.2em 1em;margin:1em 0 2em}
.verdict.failed{border-color:#b00020}.verdict .sentence{font-size:1.1em}
figure{margin:1em 0}figure.img{display:inline-block;margin:.5em 1em .5em 0;text-align:center}
svg text{font-size:11px;font-family:system-ui,sans-serif}
"""


def _threat_model(value: Any) -> str | None:
    """The threat model as one line of text."""
    if isinstance(value, dict):
        return "; ".join(f"{key}: {human(item)}" for key, item in value.items())
    return None if value is None else str(value)


def _summary(report: dict[str, Any], model: str | None) -> str:
    """The envelope: identity, date, threat model, derived models, seed, device and versions."""
    versions = report.get("versions")
    return section(
        "Summary",
        key_values(
            [
                ("model", model),
                ("dataset", report.get("dataset_id")),
                ("job", report.get("job_id")),
                ("generated", report.get("generated_at")),
                ("kind", report.get("kind")),
                ("threat model", _threat_model(report.get("threat_model"))),
                ("derived models", report.get("derived_model_ids") or None),
                ("seed", report.get("seed")),
                ("device", report.get("device")),
                ("versions", human(versions) if isinstance(versions, dict) else None),
            ]
        ),
    )


def verdict_box(head: Headline) -> str:
    """The verdict at the top of the page: the sentence, the figures, what passed and what failed."""
    rows = [
        [esc(f.label), esc(f.value_text()), esc(f.bounds_text()), esc(f.count_text())] for f in head.figures
    ]
    figures = table(["figure", "value", "95% interval", "measured on"], rows) if rows else ""
    passed = (
        f'<p><span class="pass">Passed ({len(head.passed)}):</span> '
        f"{esc(', '.join(c.name for c in head.passed))}</p>"
        if head.passed
        else ""
    )
    failed = "".join(
        f'<li><span class="fail">FAILED</span> {esc(c.name)}'
        + (f": {esc(c.detail)}" if c.detail else "")
        + "</li>"
        for c in head.failed
    )
    status = " failed" if head.failed else ""
    return (
        f'<section class="verdict{status}" aria-label="verdict"><h2>Verdict</h2>'
        f'<p class="sentence"><strong>{esc(head.verdict)}</strong></p>{figures}{passed}'
        + (f"<ul>{failed}</ul>" if failed else "")
        + "</section>"
    )


def _checks(report: dict[str, Any]) -> str:
    """Sanity checks with pass or fail and what a failure suggests."""
    rows = [
        [
            esc(check.get("name", "")),
            '<span class="pass">pass</span>' if check.get("passed") else '<span class="fail">FAIL</span>',
            esc(check.get("detail", "")),
        ]
        for check in report.get("checks", [])
    ]
    return section("Sanity checks", table(["check", "result", "detail"], rows) if rows else "")


def render_report_html(report: dict[str, Any]) -> str:
    """Render any kind's report as one self-contained HTML page that starts with its verdict."""
    head = headline(report)
    kind = str(report.get("kind") or "unknown")
    title = f"Gauntlet {kind} report" + (f": {head.model}" if head.model else "")
    renderer = SECTIONS.get(kind)
    body = (
        f"<h1>{esc(title)}</h1>"
        + verdict_box(head)
        + _summary(report, head.model)
        + (renderer(report) if renderer else "")
        + _checks(report)
    )
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        f"<title>{esc(title)}</title><style>{_STYLE}</style></head><body>{body}</body></html>\n"
    )
