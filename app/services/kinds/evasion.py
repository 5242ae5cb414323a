"""Submission rules of the evasion kind: eps, targets, gradients and images per attack; cost; artifacts."""

import math
from collections.abc import Sequence

from app.errors import InvalidInput
from app.model_formats import facts_of
from app.orm import ModelRecord
from app.schemas.evasion import AttackParamsBase, AutoAttackParams, EvasionAttackSpec, EvasionJobSpec
from app.services.context import ServiceContext
from app.services.dataset_arrays import DatasetFacts

FLOAT32_BYTES = 4


def is_image(shape: Sequence[int]) -> bool:
    """Whether an input shape is [channels, height, width] with height and width of at least 2."""
    return len(shape) == 3 and shape[1] >= 2 and shape[2] >= 2


def check_attacks(
    model: ModelRecord, attacks: Sequence[EvasionAttackSpec], where: str = "params.attacks"
) -> None:
    """Eps within the input range, targets within the classes, gradients and images where needed."""
    low, high = model.input_range
    width = high - low
    dimension = math.prod(model.input_shape)
    for index, attack in enumerate(attacks):
        label = f"{where}[{index}] ({attack.name})"
        if isinstance(attack, AttackParamsBase):
            limit = width if attack.norm == "linf" else width * math.sqrt(dimension)
            too_big = [eps for eps in attack.eps if eps > limit]
            if too_big:
                raise InvalidInput(
                    f"{label}: eps {too_big} exceeds the largest meaningful {attack.norm} budget {limit:.4g} "
                    f"for inputs in [{low}, {high}] of shape {list(model.input_shape)}",
                    code="eps_out_of_range",
                )
        target_class = getattr(attack, "target_class", None)
        if target_class is not None and target_class >= model.num_classes:
            raise InvalidInput(
                f"{label}: target_class {target_class} is not one of the model's {model.num_classes} classes",
                code="invalid_target",
            )
        if attack.uses_images() and not is_image(model.input_shape):
            raise InvalidInput(
                f"{label}: {attack.name} works on images [channels, height, width] with height "
                f"and width of at least 2; the model takes {list(model.input_shape)}",
                code="needs_images",
            )
        if type(attack).white_box and not model.white_box:
            raise InvalidInput(
                f"{label}: {attack.name} needs gradients, but model {model.id} is usable black-box only",
                code="needs_white_box",
            )


def evasion_cost(attacks: Sequence[EvasionAttackSpec], n_samples: int) -> float:
    """Estimated sample passes of a list of attacks over n samples (each spec's own cost)."""
    return sum(attack.cost(n_samples) for attack in attacks)


def check_subsets(attacks: Sequence[EvasionAttackSpec], n_samples: int) -> None:
    """A fast AutoAttack's fast_vs_standard subset must fit in the samples evaluated."""
    for index, attack in enumerate(attacks):
        subset = getattr(attack, "fast_vs_standard", None)
        if isinstance(attack, AutoAttackParams) and subset is not None and subset > n_samples:
            raise InvalidInput(
                f"params.attacks[{index}] (autoattack): fast_vs_standard {subset} is larger than the "
                f"{n_samples} samples evaluated (max_samples or the dataset's size)",
                code="subset_too_large",
            )


def check_artifact_size(
    model: ModelRecord, attacks: Sequence[EvasionAttackSpec], n_samples: int, limit: int
) -> None:
    """Refuse a job whose adversarial-example artifact would exceed the per-artifact limit."""
    sample_bytes = math.prod(model.input_shape) * FLOAT32_BYTES
    for index, attack in enumerate(attacks):
        n_eps = len(getattr(attack, "eps", []))
        estimate = n_eps * n_samples * sample_bytes
        if estimate > limit:
            raise InvalidInput(
                f"params.attacks[{index}] ({attack.name}): its adversarial examples would take about "
                f"{estimate / 2**20:.1f} MiB ({n_samples} samples x {n_eps} eps x {sample_bytes} bytes), "
                f"over the artifact limit of {limit / 2**20:.1f} MiB; lower max_samples or the number of eps",
                code="artifact_too_large",
            )


def check(ctx: ServiceContext, model: ModelRecord, spec: EvasionJobSpec, held_out: DatasetFacts) -> None:
    """Attacks fit the model, and the artifacts fit the limit."""
    if model.blob_sha256 is None and not facts_of(model).remote:
        raise InvalidInput(f"model {model.id} has no trained weights to attack", code="model_untrained")
    check_attacks(model, spec.params.attacks)
    n = min(spec.params.max_samples, held_out.n_samples)
    check_subsets(spec.params.attacks, n)
    check_artifact_size(model, spec.params.attacks, n, ctx.settings.max_artifact_bytes)


def estimate_cost(
    ctx: ServiceContext, model: ModelRecord, spec: EvasionJobSpec, held_out: DatasetFacts
) -> float:
    """Samples x eps x steps x restarts (or queries) of every attack."""
    n = min(spec.params.max_samples, held_out.n_samples)
    return evasion_cost(spec.params.attacks, n)
