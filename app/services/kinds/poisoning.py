"""Submission rules of the poisoning kind: a trainable (or, for an audit, readable) model, a training set
and a pattern that fit it, rates, classes, triggers and eps that make sense; cost in sample-epochs."""

import math

from app.errors import InvalidInput
from app.model_formats import facts_of
from app.orm import ModelRecord
from app.schemas.poisoning import (
    PoisoningAttackBase,
    PoisoningJobSpec,
    PoisoningParams,
    TriggerParams,
)
from app.services.compatibility import TRAINING_SET_CODES, check_dataset_fits
from app.services.context import ServiceContext
from app.services.dataset_arrays import DatasetFacts
from app.services.datasets import dataset_facts

FLOAT32_BYTES = 4
MIN_CLEAN_SHARE = PoisoningAttackBase.min_clean_share


def _check_model(model: ModelRecord, params: PoisoningParams) -> None:
    """Attacks train the architecture (not a remote endpoint); an audit reads the model's own activations."""
    if facts_of(model).remote:
        if params.audit:
            raise InvalidInput(
                f"model {model.id} is a remote endpoint: an audit reads the model's activations at a feature "
                "layer, which an endpoint does not expose; upload the model as ONNX or safetensors",
                code="audit_needs_activations",
            )
        raise InvalidInput(
            f"model {model.id} is a remote endpoint: a poisoning job trains the model's architecture, which "
            "an endpoint does not give; upload it as ONNX or create a catalog architecture",
            code="model_not_trainable",
        )
    if model.blob_sha256 is None and (params.audit or params.training.init == "pretrained"):
        what = (
            "an audit reads a trained model" if params.audit else "init 'pretrained' starts from its weights"
        )
        raise InvalidInput(
            f"model {model.id} is an architecture without weights: {what}; use init 'random' or upload "
            "weights",
            code="model_untrained",
        )
    if facts_of(model).white_box_by_intake and model.white_box is False and not params.audit:
        raise InvalidInput(
            f"model {model.id}'s graph cannot be rebuilt for training (the intake found it usable "
            "black-box only)",
            code="model_not_trainable",
        )


def _check_trigger(trigger: TriggerParams, model: ModelRecord, label: str) -> None:
    """The patch fits inside the image and its value inside the input range."""
    _, height, width = model.input_shape
    if trigger.size > height or trigger.size > width:
        raise InvalidInput(
            f"{label}: a trigger of {trigger.size}x{trigger.size} pixels is larger than the "
            f"{height}x{width} image",
            code="trigger_invalid",
        )
    row, col, size = trigger.row, trigger.col, trigger.size
    if row is not None and col is not None and (row + size > height or col + size > width):
        raise InvalidInput(
            f"{label}: a {size}x{size} trigger at row {row}, col {col} lies outside the "
            f"{height}x{width} image",
            code="trigger_invalid",
        )
    low, high = model.input_range
    if trigger.value is not None and not low <= trigger.value <= high:
        raise InvalidInput(
            f"{label}: trigger value {trigger.value} lies outside the input range [{low}, {high}]",
            code="trigger_invalid",
        )


def _check_attack(
    model: ModelRecord, attack: PoisoningAttackBase, n_train: int, n_eval: int, label: str
) -> None:
    """Classes, images, triggers, eps and rates of one attack."""
    for field in ("target_class", "source_class", "intended_class"):
        value = getattr(attack, field, None)
        if value is not None and value >= model.num_classes:
            raise InvalidInput(
                f"{label}: {field} {value} is not one of the model's {model.num_classes} classes",
                code="invalid_target",
            )
    shape = model.input_shape
    if type(attack).needs_images and not (len(shape) == 3 and shape[1] >= 2 and shape[2] >= 2):
        raise InvalidInput(
            f"{label}: {attack.name} stamps a patch on images [channels, height, width]; the model takes "  # type: ignore[attr-defined]
            f"{list(shape)}",
            code="needs_images",
        )
    trigger = getattr(attack, "trigger", None)
    if trigger is not None:
        _check_trigger(trigger, model, f"{label}.trigger")
    eps = getattr(attack, "eps", None)
    width = model.input_range[1] - model.input_range[0]
    if eps is not None and eps > width:
        raise InvalidInput(
            f"{label}: eps {eps} exceeds the input range width {width}", code="eps_out_of_range"
        )
    for rate in attack.rate:
        base = n_train
        n = round(rate * base)
        if type(attack).rate_of == "target_class":
            if rate > 1 - MIN_CLEAN_SHARE:
                raise InvalidInput(
                    f"{label}: rate {rate} leaves fewer than {MIN_CLEAN_SHARE:.0%} of the target class clean",
                    code="rate_invalid",
                )
            continue
        if n < 1:
            raise InvalidInput(
                f"{label}: rate {rate} poisons no sample of the {n_train} training samples",
                code="rate_invalid",
            )
        if base - n < math.ceil(MIN_CLEAN_SHARE * base):
            raise InvalidInput(
                f"{label}: rate {rate} leaves fewer than {MIN_CLEAN_SHARE:.0%} of the training set clean",
                code="rate_invalid",
            )
    targets = getattr(attack, "targets", None)
    if targets is not None and targets > n_eval:
        raise InvalidInput(
            f"{label}: {targets} targets but the held-out set has {n_eval} samples", code="invalid_target"
        )


def _check_pattern(ctx: ServiceContext, model: ModelRecord, params: PoisoningParams) -> None:
    """An uploaded blended pattern: x[0] of a dataset shaped like one input, inside the input range."""
    if params.pattern_dataset_id is None:
        return
    facts = dataset_facts(ctx, params.pattern_dataset_id)
    if list(facts.sample_shape) != list(model.input_shape) or facts.n_samples < 1:
        raise InvalidInput(
            f"params.pattern_dataset_id: the pattern has shape {list(facts.sample_shape)}; the model takes "
            f"{list(model.input_shape)}",
            code="pattern_invalid",
        )
    low, high = model.input_range
    if facts.dtype != "uint8" and (facts.x_min < low - 1e-6 or facts.x_max > high + 1e-6):
        raise InvalidInput(
            f"params.pattern_dataset_id: pattern values lie outside the input range [{low}, {high}]",
            code="pattern_invalid",
        )


def _check_scan(model: ModelRecord, params: PoisoningParams, held_out: DatasetFacts) -> None:
    """A scan needs 3 classes, image inputs, a clean set of at least 2 samples, and gradients for white-box
    scanners (the held-out set's fit to the model is checked for every job)."""
    if model.num_classes < 3:
        raise InvalidInput(
            f"model {model.id} has {model.num_classes} classes: a backdoor scan compares the reversed "
            "triggers of the classes by their median, which needs at least 3",
            code="too_few_classes",
        )
    if len(model.input_shape) != 3:
        raise InvalidInput(
            f"a backdoor scan reverses a mask over image pixels; the model takes {list(model.input_shape)}",
            code="needs_images",
        )
    if held_out.n_samples < 2:
        raise InvalidInput(
            "a backdoor scan needs at least 2 clean held-out samples", code="dataset_too_small"
        )
    white_box = [s.name for s in params.scan if type(s).white_box]
    if white_box and (facts_of(model).remote or model.white_box is False):
        raise InvalidInput(
            f"model {model.id} can only be queried: {', '.join(white_box)} needs the model's gradients; use "
            "the black-box scanner b3d or upload the model as ONNX or safetensors",
            code="needs_white_box",
        )
    if white_box and model.blob_sha256 is None and not facts_of(model).remote:
        raise InvalidInput(
            f"model {model.id} is an architecture without weights: there is nothing to scan",
            code="model_untrained",
        )


def check(ctx: ServiceContext, model: ModelRecord, spec: PoisoningJobSpec, held_out: DatasetFacts) -> None:
    """The model can be trained (or read, for an audit); the training set, pattern and attacks fit it."""
    params = spec.params
    if params.scan_mode or params.train_dataset_id is None:
        _check_scan(model, params, held_out)
        return
    _check_model(model, params)
    facts = dataset_facts(ctx, params.train_dataset_id)
    check_dataset_fits(model, facts, what="params.train_dataset_id", codes=TRAINING_SET_CODES)
    _check_pattern(ctx, model, params)
    n_eval = held_out.n_samples
    for index, attack in enumerate(params.attacks):
        _check_attack(model, attack, facts.n_samples, n_eval, f"params.attacks[{index}] ({attack.name})")
    poisoned_set = facts.n_samples * math.prod(model.input_shape) * FLOAT32_BYTES
    if params.attacks and poisoned_set > ctx.settings.max_artifact_bytes:
        raise InvalidInput(
            f"a poisoned training set would take about {poisoned_set / 2**20:.1f} MiB, over the artifact "
            f"limit of {ctx.settings.max_artifact_bytes / 2**20:.1f} MiB",
            code="artifact_too_large",
        )


def _trials(attack: PoisoningAttackBase) -> int:
    """Victims trained per rate: one, or one per target."""
    return int(getattr(attack, "targets", 1)) if type(attack).per_target else 1


def _crafting(attack: PoisoningAttackBase, n_train: int) -> float:
    """Forward-backward passes of crafting per rate (PGD, feature collision, gradient matching)."""
    steps = getattr(attack, "steps", 0)
    factor = 3 * getattr(attack, "restarts", 1) if attack.name == "gradient_matching" else 1  # type: ignore[attr-defined]
    return sum(rate * n_train * steps * factor for rate in attack.rate) * _trials(attack)


def poisoning_cost(params: PoisoningParams, n_train: int, n_eval: int) -> float:
    """Sample-epochs of every training (baseline, surrogate, victims, retrainings), crafting, detection."""
    if params.audit:
        return float(n_train * len(params.detection) * 20)
    epochs = params.training.epochs
    detectors = len(params.detection)
    trainings = 1 + int(
        any(type(a).needs_surrogate or getattr(a, "mode", "") == "nearest" for a in params.attacks)
    )
    crafting = 0.0
    for attack in params.attacks:
        per_rate = _trials(attack) * (1 + (detectors if params.retrain_after_removal else 0))
        trainings += per_rate * len(attack.rate)
        crafting += _crafting(attack, n_train)
    strip = 20 * (n_train + n_eval) if any(d.name == "strip" for d in params.detection) else 0
    return float(
        trainings * epochs * n_train
        + crafting
        + strip * sum(_trials(a) * len(a.rate) for a in params.attacks)
    )


def estimate_cost(
    ctx: ServiceContext, model: ModelRecord, spec: PoisoningJobSpec, held_out: DatasetFacts
) -> float:
    """Training sample-epochs plus crafting passes (see poisoning_cost); a scan's stamped passes."""
    if spec.params.train_dataset_id is None:
        passes = sum(
            s.steps * s.batch_size * model.num_classes * (1 + 2 * getattr(s, "samples", 1))
            for s in spec.params.scan
        )
        return float(passes) / 20
    n_train = dataset_facts(ctx, spec.params.train_dataset_id).n_samples
    n_eval = held_out.n_samples
    return poisoning_cost(spec.params, n_train, n_eval)
