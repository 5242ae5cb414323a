"""The envelope every kind's report shares (DESIGN.md section 10) and the building blocks of the reports.

A report is stored and served exactly as the worker wrote it; these models describe it. Sections whose
shape is fixed are closed (unknown keys are an error, so the contract cannot drift silently); rows that
a method extends with its own figures (an attack's step size, a detector's details) declare the fields
every row has and accept the method's own beside them.
"""

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

# The parameters of a method as it ran, defaults resolved (they differ per attack, strategy, detector and
# defense; the job spec's schema for that method names them).
MethodParams = dict[str, Any]
Share = float
InputRange = list[float]


class Closed(BaseModel):
    """A report section whose keys are fixed: an unknown key fails validation."""

    model_config = ConfigDict(extra="forbid")


class Open(BaseModel):
    """A report row a method extends with figures of its own, kept as extra fields."""

    model_config = ConfigDict(extra="allow")


class Check(Closed):
    """One sanity check of the report: what was checked, whether it passed, and what a failure suggests."""

    name: str
    passed: bool
    detail: str


class ReportEnvelope(Closed):
    """What every report starts with: identity, reproducibility, threat model, checks, derived models."""

    job_id: str
    model_id: str
    model_name: str | None = Field(
        default=None, description="The model's name when the job ran (reports written before it lack it)."
    )
    dataset_id: str
    seed: int
    versions: dict[str, str] = Field(
        description="Versions that make the report reproducible: gauntlet, python, torch, numpy, onnx, "
        "onnxruntime."
    )
    device: str = Field(description="The device the job ran on: cpu or cuda.")
    generated_at: str = Field(description="When the report was written, ISO 8601 in UTC.")
    threat_model: str | dict[str, str] = Field(
        description="Who the attacker (and defender) is and what they see and control."
    )
    checks: list[Check] = Field(description="Sanity checks; a failed one says what it suggests.")
    derived_model_ids: list[str] = Field(
        description="Models the job registered (surrogates, poisoned victims, hardened or defended models)."
    )


class WorstCaseRow(Closed):
    """Per-sample worst case at one (norm, eps): robust only if correct after every attack there."""

    norm: str
    eps: float
    robust_accuracy: Share
    n_attacks: int
