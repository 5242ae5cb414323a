"""Checks that a job's model, dataset and parameters fit together, before anything is queued."""

from dataclasses import dataclass
from urllib.parse import urlparse

from app.errors import Conflict, InvalidInput
from app.orm import ModelRecord
from app.services.dataset_arrays import DatasetFacts
from app.settings import Settings


def check_model_ready(model: ModelRecord) -> None:
    """The model must have passed validation."""
    if model.status == "validating":
        raise Conflict(
            f"model {model.id} is still being validated; poll it until status is 'ready'",
            code="model_not_ready",
        )
    if model.status != "ready":
        raise InvalidInput(f"model {model.id} is invalid: {model.invalid_reason}", code="model_invalid")


@dataclass(frozen=True)
class FitCodes:
    """The error codes of a dataset that does not fit a model: its shape, its labels, its value range."""

    shape: str
    classes: str
    value_range: str


HELD_OUT_CODES = FitCodes("shape_mismatch", "class_mismatch", "dataset_out_of_range")
TRAINING_SET_CODES = FitCodes("training_set_mismatch", "training_set_mismatch", "training_set_mismatch")
POOL_CODES = FitCodes("pool_shape_mismatch", "pool_shape_mismatch", "pool_out_of_range")  # labels unread


def check_dataset_fits(
    model: ModelRecord,
    facts: DatasetFacts,
    *,
    what: str = "dataset",
    codes: FitCodes = HELD_OUT_CODES,
    labels: bool = True,
) -> None:
    """Sample shape, labels (unless `labels` is False: a query pool) and value range must suit the model."""
    if list(facts.sample_shape) != list(model.input_shape):
        raise InvalidInput(
            f"{what} samples have shape {list(facts.sample_shape)} but the model expects "
            f"{list(model.input_shape)}",
            code=codes.shape,
        )
    if labels and facts.num_classes > model.num_classes:
        raise InvalidInput(
            f"{what} labels go up to {facts.num_classes - 1} but the model has {model.num_classes} classes",
            code=codes.classes,
        )
    low, high = model.input_range
    if facts.dtype != "uint8" and (facts.x_min < low - 1e-6 or facts.x_max > high + 1e-6):
        raise InvalidInput(
            f"{what} values lie in [{facts.x_min:.4g}, {facts.x_max:.4g}], outside the model's input range "
            f"[{low}, {high}]; rescale them or declare input_range at upload",
            code=codes.value_range,
        )


def check_job_cost(settings: Settings, tenant_name: str, kind: str, cost: float) -> None:
    """A job's estimated cost (sample forward-backward passes) must stay within the tenant's limit."""
    limit = settings.tenant_max_job_cost.get(tenant_name, settings.max_job_cost)
    if cost > limit:
        raise InvalidInput(
            f"this {kind} job would cost about {cost:.3g} sample passes (samples x eps x steps x restarts, "
            f"or queries, or epochs x samples), over this tenant's limit of {limit:.3g}; lower the budget",
            code="job_too_costly",
        )


def check_callback_url(url: str | None, allowlist: list[str]) -> None:
    """A callback may only go to a host on the operator's allowlist."""
    if url is None:
        return
    host = urlparse(url).hostname or ""
    if host not in allowlist:
        raise InvalidInput(
            f"callback host {host!r} is not on this service's allowlist", code="host_not_allowed"
        )
