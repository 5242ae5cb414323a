"""The short result table printed after a job: the report's headline figures, verdict and checks."""

from typing import Any

from app.schemas.reports.headline import headline


def result_table(report: dict[str, Any]) -> list[str]:
    """The headline as the HTML page's verdict box says it: verdict, figures with intervals, checks."""
    head = headline(report)
    title = f"{report.get('kind')} job {report.get('job_id')}" + (
        f", model {head.model}" if head.model else ""
    )
    return [title, *head.lines()]
