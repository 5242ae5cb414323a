"""Schema pieces every job kind shares: norms, eps, target modes, the job spec's common fields, training."""

from enum import StrEnum
from typing import Annotated, Literal

from pydantic import AnyHttpUrl, BaseModel, ConfigDict, Field

from app.schemas.sharding import ShardingParams

Norm = Literal["linf", "l2"]
# Learning-rate schedules of a training recipe (the engine's ScheduleName; a test keeps them equal).
Schedule = Literal["constant", "cosine", "step", "cyclic"]
Eps = Annotated[float, Field(gt=0, allow_inf_nan=False, description="Perturbation budget in the norm.")]
ResourceId = Annotated[str, Field(min_length=1, max_length=60)]


class TargetMode(StrEnum):
    """How targeted attacks pick a target class per sample."""

    least_likely = "least_likely"
    random = "random"
    fixed = "fixed"


class JobSpecBase(BaseModel):
    """Fields of every job spec: the model under test, the held-out dataset, the seed, a callback."""

    model_config = ConfigDict(extra="forbid")

    model_id: ResourceId
    dataset_id: ResourceId = Field(description="The held-out evaluation set.")
    seed: Annotated[int, Field(ge=0, le=2**31 - 1)] = 0
    callback_url: AnyHttpUrl | None = None
    sharding: ShardingParams | None = None


class TrainingParams(BaseModel):
    """A training recipe (the engine's TrainingRecipe): optimizer, schedule and budget."""

    model_config = ConfigDict(extra="forbid")

    epochs: Annotated[int, Field(ge=1, le=500)] = 20
    batch_size: Annotated[int, Field(ge=1, le=4096)] = 64
    optimizer: Literal["adam", "sgd"] = "adam"
    learning_rate: Annotated[float, Field(gt=0, le=10)] = 0.001
    momentum: Annotated[float, Field(ge=0, lt=1)] = 0.9
    nesterov: bool = False
    weight_decay: Annotated[float, Field(ge=0, le=1)] = 0.0
    schedule: Schedule = "constant"
    step_epochs: Annotated[int, Field(ge=1, le=500)] = 10
    gamma: Annotated[float, Field(gt=0, le=1)] = 0.1
