"""Submission rules of the defense kind: a model the defense can train or wrap, budgets inside the input
range, transforms that fit the input, a training set that fits; cost in forward-backward sample passes."""

import math

from app.errors import InvalidInput
from app.model_formats import facts_of
from app.orm import ModelRecord
from app.schemas.defense import (
    AdversarialTrainingParams,
    DefenseJobSpec,
    DefenseParams,
    DefenseSpec,
    DistillationParams,
    PreprocessingParams,
    RandomizedSmoothingParams,
    evaluation_attacks,
)
from app.schemas.defense_transforms import GaussianNoiseParams, MedianParams
from app.schemas.evasion import AttackParamsBase
from app.schemas.repair import BackdoorRepairParams
from app.services.compatibility import TRAINING_SET_CODES, check_dataset_fits
from app.services.context import ServiceContext
from app.services.dataset_arrays import DatasetFacts
from app.services.datasets import dataset_facts
from app.services.kinds.evasion import check_artifact_size, check_attacks, evasion_cost
from app.services.kinds.repair import check_repair, repair_cost


def _check_model(model: ModelRecord, params: DefenseParams) -> None:
    """A white-box model with weights where the defense needs them, not already defended."""
    defense = params.defense
    init = getattr(defense, "init", None)
    if facts_of(model).remote:
        code = "model_not_trainable" if type(defense).trains else "needs_white_box"
        what = f"init '{init}' retrains its graph" if init == "random" else "a defense needs its gradients"
        raise InvalidInput(
            f"model {model.id} is a remote endpoint: {what}, which an endpoint does not give; upload it as "
            "ONNX or safetensors",
            code=code,
        )
    if not model.white_box:
        raise InvalidInput(
            f"model {model.id} is usable black-box only: a defense trains its graph and evaluates it with "
            "gradient attacks",
            code="needs_white_box",
        )
    if model.preprocessing:
        raise InvalidInput(
            f"model {model.id} is already a defended model (preprocessing in front of its graph); harden its "
            f"base model {model.derived_from or ''} instead",
            code="already_defended",
        )
    if model.blob_sha256 is None:
        _check_weightless(model, defense)


def _check_weightless(model: ModelRecord, defense: DefenseSpec) -> None:
    """An architecture without weights: only a defense trained from fresh weights (init random, a trained
    teacher) runs; its undefended side is then a baseline the job trains with the same recipe."""
    what = None
    if isinstance(defense, BackdoorRepairParams | PreprocessingParams):
        what = f"{defense.name} needs a trained model and this one has no weights; train it first"
    elif defense.init == "pretrained":
        what = "init 'pretrained' starts from its weights; use init 'random' to train it from scratch"
    elif isinstance(defense, DistillationParams) and defense.teacher == "upload":
        what = "teacher 'upload' distils from its weights; use teacher 'train'"
    if what is not None:
        raise InvalidInput(
            f"model {model.id} is an architecture without weights: {what} (or upload weights)",
            code="model_untrained",
        )


def _check_budgets(model: ModelRecord, params: DefenseParams) -> None:
    """eps and sigma inside the input range; transforms that fit the input."""
    low, high = model.input_range
    width = high - low
    defense = params.defense
    if isinstance(defense, AdversarialTrainingParams):
        limit = width if defense.norm == "linf" else width * math.sqrt(math.prod(model.input_shape))
        if defense.eps > limit:
            raise InvalidInput(
                f"params.defense.eps {defense.eps} exceeds the largest meaningful {defense.norm} budget "
                f"{limit:.4g} for inputs in [{low}, {high}]",
                code="eps_out_of_range",
            )
    if isinstance(defense, RandomizedSmoothingParams) and defense.sigma > width:
        raise InvalidInput(
            f"params.defense.sigma {defense.sigma} exceeds the input range width {width}",
            code="sigma_out_of_range",
        )
    if isinstance(defense, PreprocessingParams):
        shape = list(model.input_shape)
        for index, transform in enumerate(defense.transforms):
            label = f"params.defense.transforms[{index}] ({transform.name})"
            if type(transform).needs_image and len(shape) != 3:
                raise InvalidInput(
                    f"{label} works on images [channels, height, width]; the model takes {shape}",
                    code="needs_images",
                )
            channels = type(transform).channels
            if channels is not None and shape[0] not in channels:
                raise InvalidInput(
                    f"{label} needs {' or '.join(map(str, channels))} channels; the model's images have "
                    f"{shape[0]}",
                    code="transform_mismatch",
                )
            if isinstance(transform, MedianParams) and transform.size // 2 >= min(shape[1:]):
                raise InvalidInput(
                    f"{label}: a {transform.size}x{transform.size} window does not fit {shape[1:]} images",
                    code="transform_mismatch",
                )
            if isinstance(transform, GaussianNoiseParams) and transform.sigma > width:
                raise InvalidInput(
                    f"{label}: sigma {transform.sigma} exceeds the input range width {width}",
                    code="sigma_out_of_range",
                )


def _check_training_set(ctx: ServiceContext, model: ModelRecord, params: DefenseParams) -> int:
    """The training set (another tenant's is a 404) fits the model; returns its size."""
    if params.train_dataset_id is None:
        return 0
    facts = dataset_facts(ctx, params.train_dataset_id)
    check_dataset_fits(model, facts, what="params.train_dataset_id", codes=TRAINING_SET_CODES)
    return facts.n_samples


def _attacks(model: ModelRecord, params: DefenseParams) -> list[AttackParamsBase]:
    """The evaluation's attacks, or the default AutoAttack at the defense's budget (the schema's rule)."""
    assert not isinstance(params.defense, BackdoorRepairParams)  # evaluated by its own measurements
    return evaluation_attacks(params.defense, params.evaluation, model.input_range)


def check(ctx: ServiceContext, model: ModelRecord, spec: DefenseJobSpec, held_out: DatasetFacts) -> None:
    """The model can be hardened, budgets and transforms fit it, the training set fits, the attacks fit."""
    params = spec.params
    if isinstance(params.defense, BackdoorRepairParams):
        check_repair(ctx, model, params)
        return
    _check_model(model, params)
    _check_budgets(model, params)
    _check_training_set(ctx, model, params)
    attacks = _attacks(model, params)
    check_attacks(model, attacks, where="params.evaluation.attacks")
    n = min(params.evaluation.max_samples, held_out.n_samples)
    check_artifact_size(model, attacks, n, ctx.settings.max_artifact_bytes)


def defense_cost(model: ModelRecord, params: DefenseParams, n_train: int, n_eval: int) -> float:
    """Training passes, evaluation passes (undefended, naive and adaptive runs, EOT), certification draws:
    the defense spec's own cost facts."""
    defense = params.defense
    assert not isinstance(defense, BackdoorRepairParams)  # costed by repair_cost
    evaluation = evasion_cost(_attacks(model, params), n_eval)
    return float(
        defense.training_passes(n_train, params.evaluation.monitor_samples)
        + evaluation * (defense.evaluation_runs - 1 + defense.adaptive_draws())
        + defense.certification_passes(n_eval)
    )


def estimate_cost(
    ctx: ServiceContext, model: ModelRecord, spec: DefenseJobSpec, held_out: DatasetFacts
) -> float:
    """Sample passes of training, evaluation and certification (see defense_cost)."""
    params = spec.params
    n_train = dataset_facts(ctx, params.train_dataset_id).n_samples if params.train_dataset_id else 0
    if isinstance(params.defense, BackdoorRepairParams):
        return repair_cost(params.defense, model.num_classes, n_train, held_out.n_samples)
    n_eval = min(params.evaluation.max_samples, held_out.n_samples)
    return defense_cost(model, params, n_train, n_eval)
