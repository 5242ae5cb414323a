"""Checks that a job's model, dataset and parameters fit together, before anything is queued."""

import math
from urllib.parse import urlparse

from app.errors import Conflict, InvalidInput
from app.orm import ModelRecord
from app.schemas.attacks import IMAGE_ATTACKS, WHITE_BOX_ATTACKS, AttackParamsBase
from app.schemas.jobs import JobSpec
from app.services.dataset_arrays import DatasetFacts


def check_model_ready(model: ModelRecord) -> None:
    """The model must have passed validation."""
    if model.status == "validating":
        raise Conflict(
            f"model {model.id} is still being validated; poll it until status is 'ready'",
            code="model_not_ready",
        )
    if model.status != "ready":
        raise InvalidInput(f"model {model.id} is invalid: {model.invalid_reason}", code="model_invalid")


def check_dataset_fits(model: ModelRecord, facts: DatasetFacts) -> None:
    """Sample shape, labels and value range of the dataset must suit the model."""
    if list(facts.sample_shape) != list(model.input_shape):
        raise InvalidInput(
            f"dataset samples have shape {list(facts.sample_shape)} but the model expects "
            f"{list(model.input_shape)}",
            code="shape_mismatch",
        )
    if facts.num_classes > model.num_classes:
        raise InvalidInput(
            f"dataset labels go up to {facts.num_classes - 1} but the model has {model.num_classes} classes",
            code="class_mismatch",
        )
    low, high = model.input_range
    if facts.dtype != "uint8" and (facts.x_min < low - 1e-6 or facts.x_max > high + 1e-6):
        raise InvalidInput(
            f"dataset values lie in [{facts.x_min:.4g}, {facts.x_max:.4g}], outside the model's input range "
            f"[{low}, {high}]; rescale them or declare input_range at upload",
            code="dataset_out_of_range",
        )


def _is_image(shape: list[int]) -> bool:
    """Whether an input shape is [channels, height, width] with height and width of at least 2."""
    return len(shape) == 3 and shape[1] >= 2 and shape[2] >= 2


def check_attack_params(model: ModelRecord, spec: JobSpec) -> None:
    """Eps within the input range, targets within the classes, gradients where attacks need them."""
    low, high = model.input_range
    width = high - low
    dimension = math.prod(model.input_shape)
    for index, attack in enumerate(spec.params.attacks):
        where = f"params.attacks[{index}] ({attack.name})"
        if isinstance(attack, AttackParamsBase):
            limit = width if attack.norm == "linf" else width * math.sqrt(dimension)
            too_big = [eps for eps in attack.eps if eps > limit]
            if too_big:
                raise InvalidInput(
                    f"{where}: eps {too_big} exceeds the largest meaningful {attack.norm} budget {limit:.4g} "
                    f"for inputs in [{low}, {high}] of shape {list(model.input_shape)}",
                    code="eps_out_of_range",
                )
        if attack.target_class is not None and attack.target_class >= model.num_classes:
            raise InvalidInput(
                f"{where}: target_class {attack.target_class} is not one of the model's "
                f"{model.num_classes} classes",
                code="invalid_target",
            )
        needs_images = attack.name in IMAGE_ATTACKS or getattr(attack, "use_square", False)
        if needs_images and not _is_image(model.input_shape):
            raise InvalidInput(
                f"{where}: {attack.name} works on images [channels, height, width] with height "
                f"and width of at least 2; the model takes {list(model.input_shape)}",
                code="needs_images",
            )
        if attack.name in WHITE_BOX_ATTACKS and not model.white_box:
            raise InvalidInput(
                f"{where}: {attack.name} needs gradients, but model {model.id} is usable black-box only",
                code="needs_white_box",
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
