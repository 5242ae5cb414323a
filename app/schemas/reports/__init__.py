"""Typed reports of the public contract: one model per job kind, and `Report`, their union by `kind`.

`GET /v1/jobs/{id}/report` answers one of them (its OpenAPI response schema); clients parse with
`TypeAdapter(Report).validate_python(body)` or the kind's model.
"""

from typing import Annotated

from pydantic import Field, TypeAdapter

from app.schemas.reports.defense import DefenseReport
from app.schemas.reports.envelope import Check, ReportEnvelope
from app.schemas.reports.evasion import EvasionReport
from app.schemas.reports.extraction import ExtractionReport
from app.schemas.reports.poisoning import PoisoningReport

Report = Annotated[
    EvasionReport | ExtractionReport | PoisoningReport | DefenseReport, Field(discriminator="kind")
]
REPORT_ADAPTER: TypeAdapter[EvasionReport | ExtractionReport | PoisoningReport | DefenseReport] = TypeAdapter(
    Report
)

__all__ = [
    "REPORT_ADAPTER",
    "Check",
    "DefenseReport",
    "EvasionReport",
    "ExtractionReport",
    "PoisoningReport",
    "Report",
    "ReportEnvelope",
]
