"""Reports typed with the API's own report models (`app.schemas.reports.Report`)."""

from typing import Any

from app.schemas.reports import REPORT_ADAPTER, Report

__all__ = ["Report", "parse_report"]


def parse_report(body: dict[str, Any]) -> Report:
    """A report body as the service sent it, parsed into its kind's typed model.

    A tolerant reader: keys a newer service adds are kept (in each model's `model_extra`) rather than
    refused, so a client keeps working against a service one version ahead of it.
    """
    return REPORT_ADAPTER.validate_python(body, extra="allow")
