"""Submission rules of a backdoor repair (a defense job, defense.name backdoor_repair): a trained white-box
model with at least 3 image classes, a clean set that fits it, a planted trigger that fits; its cost."""

from app.errors import InvalidInput
from app.model_formats import facts_of
from app.orm import ModelRecord
from app.schemas.defense import DefenseParams
from app.schemas.repair import BackdoorRepairParams, PatchTriggerSpec
from app.services.compatibility import TRAINING_SET_CODES, check_dataset_fits
from app.services.context import ServiceContext
from app.services.datasets import dataset_facts
from app.services.kinds.poisoning import _check_trigger

# Neural Cleanse's clean inputs per step (its default batch) and the engine defaults the cost reads.
SCAN_BATCH = 16
DEFAULT_EPOCHS, DEFAULT_ITERATIONS, ANP_BATCH = 10, 300, 64


def _check_model(model: ModelRecord) -> None:
    """Weights to repair, a graph to train, classes to compare, images to stamp triggers on."""
    if facts_of(model).remote:
        raise InvalidInput(
            f"model {model.id} is a remote endpoint: a repair changes the model's weights, which an endpoint "
            "does not give; upload it as ONNX or safetensors",
            code="model_not_trainable",
        )
    if not model.white_box:
        raise InvalidInput(
            f"model {model.id} is usable black-box only: a repair trains its graph",
            code="needs_white_box",
        )
    if model.preprocessing:
        raise InvalidInput(
            f"model {model.id} is a defended model (preprocessing in front of its graph); repair its base "
            f"model {model.derived_from or ''} instead",
            code="already_defended",
        )
    if model.blob_sha256 is None:
        raise InvalidInput(
            f"model {model.id} is an architecture without weights: there is no backdoor to repair "
            "(upload its trained weights)",
            code="model_untrained",
        )
    if model.num_classes < 3:
        raise InvalidInput(
            f"model {model.id} has {model.num_classes} classes: the repair's Neural Cleanse scan compares "
            "the reversed triggers of the classes by their median, which needs at least 3",
            code="too_few_classes",
        )
    if len(model.input_shape) != 3:
        raise InvalidInput(
            "a backdoor repair reverses triggers over image pixels; the model takes "
            f"{list(model.input_shape)}",
            code="needs_images",
        )


def check_repair(ctx: ServiceContext, model: ModelRecord, params: DefenseParams) -> None:
    """The model can be repaired, the clean set (another tenant's is a 404) and the trigger fit it."""
    repair = params.defense
    assert isinstance(repair, BackdoorRepairParams)
    _check_model(model)
    if params.train_dataset_id is not None:
        facts = dataset_facts(ctx, params.train_dataset_id)
        check_dataset_fits(model, facts, what="params.train_dataset_id", codes=TRAINING_SET_CODES)
        if facts.n_samples < 2:
            raise InvalidInput(
                "a backdoor repair needs at least 2 clean samples in params.train_dataset_id",
                code="dataset_too_small",
            )
    if isinstance(repair.trigger, PatchTriggerSpec):
        _check_trigger(repair.trigger, model, "params.defense.trigger")
    if repair.target_class is not None and repair.target_class >= model.num_classes:
        raise InvalidInput(
            f"params.defense.target_class {repair.target_class} is not a class of the model "
            f"({model.num_classes} classes)",
            code="invalid_target",
        )


def repair_cost(repair: BackdoorRepairParams, num_classes: int, n_train: int, n_eval: int) -> float:
    """Sample passes: two Neural Cleanse scans, the method's training or mask learning, the measurements."""
    scans = 2 * repair.scan_steps * num_classes * SCAN_BATCH * 2
    method: float
    if repair.method == "anp":
        method = (repair.iterations or DEFAULT_ITERATIONS) * (repair.batch_size or ANP_BATCH) * 4
    else:
        method = (repair.epochs or DEFAULT_EPOCHS) * n_train * 1.2
        if repair.method == "fine_pruning":
            method += 64 * n_train  # trial cuts, one clean pass each
    measurements = 2 * n_eval * (num_classes + 2)
    return float(scans + method + measurements)
