"""Extraction evaluation: run each attack against each defense row, measure the surrogate at each budget."""

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from worker.engine.extraction.attack_run import AttackRunner, derive_seed, slug
from worker.engine.extraction.checks import run_checks
from worker.engine.extraction.evaluate import EvaluationSet, defense_cost
from worker.engine.extraction.outputs import ExtractionError, softmax
from worker.engine.extraction.plan import Plan, build_plan, check_pool
from worker.engine.extraction.query import QueryLog, victim_logits
from worker.engine.extraction.strategies import build_strategy
from worker.engine.extraction.surrogate import SurrogateFactory, SurrogateTrainer, epochs_for
from worker.engine.progress import ProgressCallback, ProgressTracker

Classifier = Callable[[np.ndarray], np.ndarray]
__all__ = ["ExtractionOutcome", "SurrogateArtifact", "run_extraction"]


@dataclass(frozen=True)
class SurrogateArtifact:
    """An attack's surrogate at the largest budget against the undefended interface, exported and vetted."""

    attack_index: int
    label: str
    onnx: bytes
    intake: dict[str, Any]
    budget: int
    queries: int
    fidelity: float


@dataclass
class ExtractionOutcome:
    """The report body (without envelope), each attack's surrogate and its query log (`.npz` arrays)."""

    report: dict[str, Any]
    surrogates: list[SurrogateArtifact] = field(default_factory=list)
    query_logs: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)


def _check_eval(
    x: np.ndarray, y: np.ndarray, input_shape: tuple[int, ...], input_range: tuple[float, float]
) -> None:
    """The evaluation set fits the victim."""
    if (
        x.ndim != len(input_shape) + 1
        or tuple(x.shape[1:]) != tuple(input_shape)
        or len(x) != len(y)
        or not len(x)
    ):
        raise ExtractionError("shape_mismatch", f"evaluation samples must have shape {list(input_shape)}")
    low, high = input_range
    if not np.isfinite(x).all() or x.min() < low - 1e-6 or x.max() > high + 1e-6:
        raise ExtractionError("dataset_out_of_range", f"evaluation samples must be inside [{low}, {high}]")


def _units(plan: Plan, n_eval: int) -> float:
    """Work units of the whole run, for progress."""
    epochs = plan.recipe.epochs
    measured = sum(b * epochs_for(b, plan.recipe, plan.min_steps) for b in plan.budgets)
    per_row = 0.0
    for spec in plan.attack_specs:
        strategy = build_strategy(spec)
        per_row += plan.max_budget + strategy.work_units(plan.max_budget, epochs) + measured
        if plan.transfer:
            per_row += n_eval * plan.transfer.get("steps", 40) * len(plan.transfer["eps"])
    detection = len(plan.detectors) * (len(plan.attack_specs) * plan.max_budget + n_eval)
    return n_eval + per_row * len(plan.rows) + detection


def run_extraction(
    victim: Classifier,
    x_eval: np.ndarray,
    y_eval: np.ndarray,
    pool: np.ndarray,
    params: Mapping[str, Any],
    *,
    input_shape: tuple[int, ...],
    num_classes: int,
    input_range: tuple[float, float],
    make_surrogate: SurrogateFactory,
    victim_white_box: nn.Module | None = None,
    seed: int = 0,
    device: torch.device | None = None,
    progress: ProgressCallback | None = None,
) -> ExtractionOutcome:
    """Steal the victim through its prediction interface with every attack against every defense row.

    `victim` returns logits for inputs in the input range (onnxruntime or a remote endpoint): the only
    way any attack reaches it. `make_surrogate(seed)` builds a fresh surrogate. `victim_white_box`, when
    the victim has gradients, gives the white-box PGD rate beside the transfer rate (it is never queried
    by an attack). Raises ExtractionError (with a stable code) for input that cannot be run.
    """
    plan = build_plan(params)
    shape = tuple(int(d) for d in input_shape)
    low, high = float(input_range[0]), float(input_range[1])
    _check_eval(x_eval, y_eval, shape, (low, high))
    check_pool(plan, pool, shape, (low, high))
    limit = plan.max_samples or len(x_eval)
    x_eval, y_eval = np.ascontiguousarray(x_eval[:limit], dtype=np.float32), y_eval[:limit].astype(np.int64)
    device = device or torch.device("cpu")
    tracker = ProgressTracker(_units(plan, len(x_eval)), progress)
    data = EvaluationSet(x_eval, y_eval, softmax(victim_logits(victim, x_eval, num_classes)))
    tracker.advance(len(x_eval), "victim on the evaluation set")
    run = AttackRunner(
        victim,
        plan,
        data,
        np.ascontiguousarray(pool, dtype=np.float32),
        shape,
        int(num_classes),
        (low, high),
        SurrogateTrainer(make_surrogate, plan.recipe, device, tracker, plan.min_steps),
        tracker,
        seed,
        device,
    )
    outcome = ExtractionOutcome(report={})
    attacks, streams = [], []
    for index, spec in enumerate(plan.attack_specs):
        strategy = build_strategy(spec)
        entry: dict[str, Any] = {
            "name": strategy.name,
            "label": strategy.label,
            "paper": strategy.paper,
            "params": strategy.params(),
            "rows": [],
        }
        for row_index, row in enumerate(plan.rows):
            row_entry, log, measured = run.attack_row(index, spec, row_index, row)
            entry["rows"].append(row_entry)
            if row_index == 0:
                streams.append((strategy.label, log))
                outcome.query_logs[f"query_log_{index}_{slug(strategy.label)}"] = log.arrays()
                outcome.surrogates.append(
                    SurrogateArtifact(
                        index,
                        strategy.label,
                        measured.onnx,
                        measured.intake,
                        plan.max_budget,
                        len(log.x),
                        measured.fidelity,
                    )
                )
        attacks.append(entry)
    white_box = None
    if victim_white_box is not None and plan.transfer is not None:
        white_box = [
            {
                "eps": r["eps"],
                "attack_success_rate": r["transfer_success_rate"],
                "n_attacked": r["n_attacked"],
            }
            for r in run.transfer(victim_white_box.to(device).eval(), derive_seed(seed, 0x3B))
        ]
    report: dict[str, Any] = {
        "n_samples": len(x_eval),
        "victim_accuracy": data.victim_accuracy,
        "chance_fidelity": data.chance_fidelity,
        "input_range": [low, high],
        "victim_output": plan.output.as_dict(),
        "pool": {"n_samples": len(pool), "with_replacement": False},
        "budgets": plan.budgets,
        "surrogate": {
            **plan.surrogate_spec,
            **{k: getattr(plan.recipe, k) for k in ("epochs", "batch_size", "learning_rate", "optimizer")},
            "min_steps": plan.min_steps,
        },
        "defenses": _defenses(plan, data, attacks, seed),
        "attacks": attacks,
        "transfer": None if plan.transfer is None else {**plan.transfer, "white_box": white_box},
        "detection": _detection(plan, streams, data, run),
    }
    report["checks"] = run_checks(report)
    outcome.report = report
    return outcome


def _defenses(
    plan: Plan, data: EvaluationSet, attacks: list[dict[str, Any]], seed: int
) -> list[dict[str, Any]]:
    """Each defense row's cost to honest callers and the best fidelity an attacker reached against it."""
    rows = []
    for row_index, row in enumerate(plan.rows):
        best = max(a["rows"][row_index]["results"][-1]["fidelity"] for a in attacks)
        label_best = max(
            r["results"][-1]["fidelity"]
            for a in attacks
            for r in a["rows"]
            if r["defense"] == "label_only" or (r["defense"] == "none" and r["sees"] == "label")
        )
        keeps = row.defense is None or row.defense.keeps_top_label
        rows.append(
            {
                "name": row.name,
                "params": row.params(),
                "implicit": row.implicit,
                "keeps_top_label": keeps,
                **defense_cost(data, plan.output, row.defense, seed),
                "attacker_fidelity": best,
                "label_attacker_fidelity": label_best if keeps else None,
            }
        )
    return rows


def _detection(
    plan: Plan, streams: list[tuple[str, QueryLog]], data: EvaluationSet, run: AttackRunner
) -> list[dict[str, Any]]:
    """Each detector over each attack's undefended stream, and over the benign evaluation stream."""
    entries = []
    for detector in plan.detectors:
        benign = detector.alarm_at(data.x, data.victim_labels, run.tracker)
        entries.append(
            {
                "name": detector.name,
                "paper": detector.paper,
                "params": detector.params(),
                "benign": {"n_queries": len(data.x), "alarm_at_query": benign},
                "streams": [
                    {
                        "attack": label,
                        "n_queries": len(log.x),
                        "alarm_at_query": detector.alarm_at(log.x, log.victim_labels, run.tracker),
                    }
                    for label, log in streams
                ],
            }
        )
    return entries
