"""The HTML shell every kind's report shares: the envelope, the kind's sections, the checks.

The page is rendered from the JSON report alone, self-contained (no scripts, no external assets).
"""

from typing import Any

from worker.engine.reports.parts import esc, key_values, section, table
from worker.engine.reports.sections import SECTIONS

_STYLE = """
body{font-family:system-ui,sans-serif;margin:2em auto;max-width:60em;color:#222;padding:0 1em}
table{border-collapse:collapse;margin:.5em 0 1.5em}
th,td{border:1px solid #ccc;padding:.25em .6em;text-align:left;font-variant-numeric:tabular-nums}
th{background:#f3f3f3}.pass{color:#17692b;font-weight:bold}.fail{color:#b00020;font-weight:bold}
figure{margin:1em 0}figure.img{display:inline-block;margin:.5em 1em .5em 0;text-align:center}
svg text{font-size:11px;font-family:system-ui,sans-serif}
"""


def _threat_model(value: Any) -> str | None:
    """The threat model as one line of text."""
    if isinstance(value, dict):
        return "; ".join(f"{key}: {item}" for key, item in value.items())
    return None if value is None else str(value)


def _summary(report: dict[str, Any]) -> str:
    """The envelope: identity, date, threat model, derived models, seed, device and versions."""
    versions = report.get("versions")
    derived = report.get("derived_model_ids") or None
    pairs = [
        ("job", report.get("job_id")),
        ("generated", report.get("generated_at")),
        ("kind", report.get("kind")),
        ("model", report.get("model_id")),
        ("dataset", report.get("dataset_id")),
        ("threat model", _threat_model(report.get("threat_model"))),
        ("derived models", ", ".join(derived) if derived else None),
        ("seed", report.get("seed")),
        ("device", report.get("device")),
        (
            "versions",
            ", ".join(f"{k} {v}" for k, v in versions.items()) if isinstance(versions, dict) else None,
        ),
    ]
    return section("Summary", key_values(pairs))


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
    """Render any kind's report as one self-contained HTML page."""
    kind = str(report.get("kind", "evasion"))
    title = f"Gauntlet {kind} report"
    if report.get("model_id") is not None:
        title += f" - model {report['model_id']}"
    renderer = SECTIONS.get(kind)
    body = (
        f"<h1>{esc(title)}</h1>" + _summary(report) + (renderer(report) if renderer else "") + _checks(report)
    )
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        f"<title>{esc(title)}</title><style>{_STYLE}</style></head><body>{body}</body></html>\n"
    )
