"""The job spec (a union discriminated by `kind`) and job views."""

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field

from app.schemas.defense import DEFENSE_EXAMPLE, DefenseJobSpec
from app.schemas.evasion import EVASION_EXAMPLE, EvasionJobSpec
from app.schemas.extraction import EXTRACTION_EXAMPLE, ExtractionJobSpec
from app.schemas.poisoning import POISONING_EXAMPLE, PoisoningJobSpec
from app.schemas.resources import NextCursor

JobStatus = Literal["queued", "running", "succeeded", "failed", "cancelled"]

# One spec class per kind; each kind's module adds its own here.
AnyJobSpec = EvasionJobSpec | ExtractionJobSpec | PoisoningJobSpec | DefenseJobSpec
JobSpec = Annotated[AnyJobSpec, Field(discriminator="kind")]
JobKind = Literal["evasion", "extraction", "poisoning", "defense"]
# One example per kind for the OpenAPI page.
JOB_EXAMPLES: dict[str, dict[str, Any]] = {
    "evasion": {"summary": "Evasion: PGD and FGSM on digits", "value": EVASION_EXAMPLE},
    "extraction": {
        "summary": "Extraction: knockoff and jacobian against defenses",
        "value": EXTRACTION_EXAMPLE,
    },
    "poisoning": {
        "summary": "Poisoning: flips, backdoors, clean-label and detection",
        "value": POISONING_EXAMPLE,
    },
    "defense": {
        "summary": "Defense: PGD adversarial training, evaluated with AutoAttack",
        "value": DEFENSE_EXAMPLE,
    },
}


class JobError(BaseModel):
    """Why a job failed: a stable code and a message for people."""

    code: str
    message: str


class ShardView(BaseModel):
    """One shard of a job split across workers."""

    index: int
    state: Literal["queued", "running", "succeeded", "failed", "cancelled"]
    worker: str | None = Field(description="The worker process (host:pid) that ran it last.")
    attempts: int
    started_at: datetime | None
    finished_at: datetime | None


class JobView(BaseModel):
    """A job as the API shows it."""

    id: str
    kind: str
    status: JobStatus
    progress: float
    stage: str | None
    error: JobError | None
    model_id: str
    dataset_id: str
    params: dict[str, Any]
    seed: int
    attempts: int
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    summary: dict[str, Any] | None
    shards: list[ShardView] = Field(
        default_factory=list, description="The shards of a job split across workers; empty for one piece."
    )


class JobPage(BaseModel):
    """One page of jobs; pass next_cursor back as `cursor` for the next page."""

    items: list[JobView]
    next_cursor: NextCursor
