"""Submission rules of the extraction kind: a queryable victim, a pool that fits, budgets it can pay; cost."""

import math
from collections.abc import Sequence

from app.errors import InvalidInput
from app.model_formats import facts_of
from app.orm import ModelRecord
from app.schemas.extraction import SYNTHETIC_UNIFORM, ExtractionJobSpec, ExtractionParams
from app.services.compatibility import POOL_CODES, check_dataset_fits
from app.services.context import ServiceContext
from app.services.dataset_arrays import DatasetFacts
from app.services.datasets import dataset_facts

FLOAT32_BYTES = 4


def architecture_misfit(architecture: str, shape: Sequence[int]) -> str | None:
    """Why a catalog architecture cannot take inputs of this shape, or None (the catalog's own rules;
    tests/app/test_extraction_e2e.py keeps them equal to what the engine builds)."""
    if architecture == "mlp":
        return None
    if len(shape) != 3:
        return f"{architecture} takes images [channels, height, width], not {list(shape)}"
    if architecture in ("small-cnn", "bn-cnn") and (shape[1] % 4 or shape[2] % 4):
        return f"{architecture} needs height and width divisible by 4, not {list(shape)}"
    if architecture == "small-resnet" and (shape[1] < 2 or shape[2] < 2):
        return f"{architecture} needs height and width of at least 2, not {list(shape)}"
    return None


def _check_victim(model: ModelRecord, params: ExtractionParams) -> None:
    """The victim has a prediction interface (ONNX or remote), and the surrogate can be built."""
    facts = facts_of(model)
    queryable = facts.answers_queries and (facts.remote or model.blob_sha256 is not None)
    if not queryable:
        raise InvalidInput(
            f"model {model.id} has no prediction interface to query: extraction needs an uploaded ONNX "
            "model or a remote endpoint",
            code="victim_not_queryable",
        )
    architecture = params.surrogate.architecture
    if architecture == "victim" and not facts.own_graph:
        raise InvalidInput(
            "params.surrogate.architecture 'victim' re-initialises the victim's own ONNX graph; a remote "
            "endpoint has none: name a catalog architecture (mlp, small-cnn, bn-cnn, small-resnet)",
            code="surrogate_needs_onnx_victim",
        )
    if architecture != "victim":
        reason = architecture_misfit(architecture, model.input_shape)
        if reason is not None:
            raise InvalidInput(f"params.surrogate.architecture: {reason}", code="surrogate_shape_mismatch")
    top_k = params.victim_output.top_k
    if top_k is not None and top_k > model.num_classes:
        raise InvalidInput(
            f"params.victim_output.top_k {top_k} exceeds the model's {model.num_classes} classes",
            code="invalid_top_k",
        )


def _pool_facts(ctx: ServiceContext, model: ModelRecord, params: ExtractionParams) -> DatasetFacts:
    """Facts of the query pool (404 for another tenant's id); a synthetic pool has the largest budget."""
    if params.query_dataset_id == SYNTHETIC_UNIFORM:
        low, high = model.input_range
        n = params.budgets[-1]
        return DatasetFacts(n, tuple(model.input_shape), 1, "float32", float(low), float(high))
    if params.query_dataset_id.startswith("synthetic:"):
        raise InvalidInput(
            f"unknown synthetic pool {params.query_dataset_id!r}; available: {SYNTHETIC_UNIFORM}",
            code="dataset_not_found",
        )
    return dataset_facts(ctx, params.query_dataset_id)


def _check_pool(model: ModelRecord, params: ExtractionParams, facts: DatasetFacts) -> None:
    """The pool's samples fit the victim and there are enough of them for every attack's largest budget."""
    check_dataset_fits(
        model, facts, what="params.query_dataset_id (the pool)", codes=POOL_CODES, labels=False
    )
    largest = params.budgets[-1]
    for index, attack in enumerate(params.attacks):
        need = attack.pool_need(largest)
        if need > facts.n_samples:
            what = "queries pool samples without replacement" if type(attack).draws_from_pool else "seeds"
            raise InvalidInput(
                f"params.attacks[{index}] ({attack.name}) {what}: it needs {need} pool samples and the pool "
                f"has {facts.n_samples}; lower the budget or use a larger pool",
                code="budget_above_pool",
            )


def _check_steps(model: ModelRecord, params: ExtractionParams) -> None:
    """Jacobian steps and transfer eps within the input range."""
    low, high = model.input_range
    width = high - low
    for index, attack in enumerate(params.attacks):
        step = getattr(attack, "step", None)
        if step is not None and step > width:
            raise InvalidInput(
                f"params.attacks[{index}] (jacobian): lambda {step} exceeds the input range width {width}",
                code="eps_out_of_range",
            )
    transfer = params.transfer
    if transfer is not None:
        limit = width if transfer.norm == "linf" else width * math.sqrt(math.prod(model.input_shape))
        if max(transfer.eps) > limit:
            raise InvalidInput(
                f"params.transfer: eps {max(transfer.eps)} exceeds the largest meaningful {transfer.norm} "
                f"budget {limit:.4g}",
                code="eps_out_of_range",
            )


def _check_artifacts(model: ModelRecord, params: ExtractionParams, limit: int) -> None:
    """Each attack's query log must fit the per-artifact limit."""
    per_query = (math.prod(model.input_shape) + model.num_classes) * FLOAT32_BYTES + 8
    estimate = params.budgets[-1] * per_query
    if estimate > limit:
        raise InvalidInput(
            f"a query log would take about {estimate / 2**20:.1f} MiB, over the artifact limit of "
            f"{limit / 2**20:.1f} MiB; lower the largest budget",
            code="artifact_too_large",
        )


def check(ctx: ServiceContext, model: ModelRecord, spec: ExtractionJobSpec, held_out: DatasetFacts) -> None:
    """The victim can be queried, the pool fits, budgets and steps make sense, artifacts fit the limit."""
    params = spec.params
    _check_victim(model, params)
    _check_pool(model, params, _pool_facts(ctx, model, params))
    _check_steps(model, params)
    _check_artifacts(model, params, ctx.settings.max_artifact_bytes)


def defense_rows(params: ExtractionParams) -> int:
    """`none`, each defense, and the label-only row the report always has."""
    implicit = params.victim_output.kind != "label" and not any(
        d.name == "label_only" for d in params.defenses
    )
    return 1 + len(params.defenses) + int(implicit)


def estimate_cost(
    ctx: ServiceContext, model: ModelRecord, spec: ExtractionJobSpec, held_out: DatasetFacts
) -> float:
    """Queries plus trained samples x epochs (surrogates at every budget, an attack's own rounds) plus
    transfer passes, for every attack and defense row."""
    params = spec.params
    largest, epochs = params.budgets[-1], params.surrogate.epochs
    n_eval = min(params.max_samples, held_out.n_samples)
    per_row = 0.0
    for attack in params.attacks:
        per_row += largest + sum(params.budgets) * epochs + attack.work_units(largest, epochs)
        if params.transfer is not None:
            per_row += n_eval * params.transfer.steps * params.transfer.restarts * len(params.transfer.eps)
    return float(n_eval + per_row * defense_rows(params))
