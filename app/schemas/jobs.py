"""Job specs (closed schemas per kind) and job views."""

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AnyHttpUrl, BaseModel, ConfigDict, Field

from app.schemas.attacks import AttackParams

JobKind = Literal["evasion"]
JobStatus = Literal["queued", "running", "succeeded", "failed", "cancelled"]

EVASION_EXAMPLE = {
    "kind": "evasion",
    "model_id": "mdl_0123456789abcdef01234567",
    "dataset_id": "builtin:digits",
    "seed": 0,
    "params": {
        "attacks": [
            {
                "name": "pgd",
                "norm": "linf",
                "eps": [0.05, 0.1, 0.2],
                "steps": 40,
                "step_size": 0.01,
                "random_start": True,
                "restarts": 1,
                "targeted": False,
            }
        ],
        "max_samples": 500,
        "batch_size": 256,
    },
}


class EvasionParams(BaseModel):
    """What an evasion job runs: a list of attacks over the first max_samples samples."""

    model_config = ConfigDict(extra="forbid")

    attacks: Annotated[list[AttackParams], Field(min_length=1, max_length=16)]
    max_samples: Annotated[int, Field(ge=1, le=100_000)] = 500
    batch_size: Annotated[int, Field(ge=1, le=8192)] = 256


class EvasionJobSpec(BaseModel):
    """An evasion job: attack a model on a dataset and report robust accuracy per eps."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [EVASION_EXAMPLE]})

    kind: Literal["evasion"]
    model_id: Annotated[str, Field(min_length=1, max_length=60)]
    dataset_id: Annotated[str, Field(min_length=1, max_length=60)]
    params: EvasionParams
    seed: Annotated[int, Field(ge=0, le=2**31 - 1)] = 0
    callback_url: AnyHttpUrl | None = None


# Becomes a union discriminated by `kind` as extraction, poisoning and defense land.
JobSpec = EvasionJobSpec


class JobError(BaseModel):
    """Why a job failed: a stable code and a message for people."""

    code: str
    message: str


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


class JobPage(BaseModel):
    """One page of jobs; pass next_cursor back as `cursor` for the next page."""

    items: list[JobView]
    next_cursor: str | None
