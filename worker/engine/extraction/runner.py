"""Extraction evaluation: run each attack against each defense row, measure the surrogate at each budget."""

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from app.schemas.extraction import ExtractionParams
from worker.engine.extraction.attack_run import AttackRunner, derive_seed, slug
from worker.engine.extraction.cells import CellResult
from worker.engine.extraction.checks import run_checks
from worker.engine.extraction.evaluate import EvaluationSet, defense_cost
from worker.engine.extraction.outputs import ExtractionError, softmax
from worker.engine.extraction.plan import Cell, Plan, build_plan, check_pool
from worker.engine.extraction.query import QueryLog, victim_logits
from worker.engine.extraction.strategies import build_strategy
from worker.engine.extraction.surrogate import SurrogateFactory, SurrogateTrainer, epochs_for
from worker.engine.extraction.transfer import transfer_entry
from worker.engine.progress import ProgressCallback, ProgressTracker

Classifier = Callable[[np.ndarray], np.ndarray]
__all__ = [
    "ExtractionOutcome",
    "SurrogateArtifact",
    "finish_extraction",
    "prepare_extraction",
    "run_extraction",
]


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


def _units(plan: Plan, n_eval: int, cells: Sequence[Cell], finishing: bool) -> float:
    """Work units of the cells this process runs (and of the finish, when it finishes), for progress."""
    epochs = plan.recipe.epochs
    measured = sum(b * epochs_for(b, plan.recipe, plan.min_steps) for b in plan.budgets)
    transfer = plan.params.transfer
    per_transfer = n_eval * transfer.steps * len(transfer.eps) if transfer is not None else 0
    attacks = plan.attacks
    total = n_eval + sum(
        plan.max_budget + attacks[c.attack].work_units(plan.max_budget, epochs) + measured + per_transfer
        for c in cells
    )
    if finishing:
        total += len(plan.detectors) * (len(attacks) * plan.max_budget + n_eval)
    return total


def prepare_extraction(
    victim: Classifier,
    x_eval: np.ndarray,
    y_eval: np.ndarray,
    pool: np.ndarray,
    params: ExtractionParams,
    *,
    input_shape: tuple[int, ...],
    num_classes: int,
    input_range: tuple[float, float],
    make_surrogate: SurrogateFactory,
    seed: int = 0,
    device: torch.device | None = None,
    progress: ProgressCallback | None = None,
    cells: Sequence[Cell] | None = None,
    finishing: bool = True,
    victim_probs: np.ndarray | None = None,
) -> AttackRunner:
    """Check the inputs and measure the victim on the evaluation set: what every cell and the finish share.

    `cells` (default: all) and `finishing` say what this process will run, for progress;
    `victim_probs`, the victim's answers on the evaluation set that a shard measured, spares the merge
    those evaluator queries. Raises ExtractionError (with a stable code) for input that cannot be run,
    before any attack query is sent.
    """
    plan = build_plan(params)
    shape = tuple(int(d) for d in input_shape)
    low, high = float(input_range[0]), float(input_range[1])
    _check_eval(x_eval, y_eval, shape, (low, high))
    check_pool(plan, pool, shape, (low, high))
    limit = params.max_samples
    x_eval, y_eval = np.ascontiguousarray(x_eval[:limit], dtype=np.float32), y_eval[:limit].astype(np.int64)
    device = device or torch.device("cpu")
    work = plan.cells() if cells is None else cells
    tracker = ProgressTracker(_units(plan, len(x_eval), work, finishing), progress)
    if victim_probs is None or victim_probs.shape != (len(x_eval), num_classes):
        victim_probs = softmax(victim_logits(victim, x_eval, num_classes))
    data = EvaluationSet(x_eval, y_eval, victim_probs)
    tracker.advance(len(x_eval), "victim on the evaluation set")
    return AttackRunner(
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


def run_extraction(
    victim: Classifier,
    x_eval: np.ndarray,
    y_eval: np.ndarray,
    pool: np.ndarray,
    params: ExtractionParams,
    *,
    victim_white_box: nn.Module | None = None,
    **options: Any,
) -> ExtractionOutcome:
    """Steal the victim through its prediction interface with every attack against every defense row.

    `victim` returns logits for inputs in the input range (onnxruntime or a remote endpoint): the only
    way any attack reaches it. `options` are prepare_extraction's keywords: input_shape, num_classes,
    input_range, make_surrogate (seed -> a fresh surrogate), and optionally seed, device and progress.
    `victim_white_box`, when the victim has gradients, gives the white-box PGD rate beside the transfer
    rate (it is never queried by an attack). Raises ExtractionError (with a stable code) for input that
    cannot be run.
    """
    run = prepare_extraction(victim, x_eval, y_eval, pool, params, **options)
    results = [run.run_cell(cell) for cell in run.plan.cells()]
    return finish_extraction(run, results, victim_white_box)


def finish_extraction(
    run: AttackRunner, results: Sequence[CellResult], victim_white_box: nn.Module | None = None
) -> ExtractionOutcome:
    """The report, surrogates and query logs of every cell's result (from this process or others)."""
    plan, data, seed = run.plan, run.data, run.seed
    by_cell = {(r.cell.attack, r.cell.row): r for r in results}
    if sorted(by_cell) != [(c.attack, c.row) for c in plan.cells()]:
        raise ExtractionError("cells_missing", "the results do not cover every attack and defense row once")
    outcome = ExtractionOutcome(report={})
    attacks, streams = [], []
    for index, spec in enumerate(plan.attacks):
        strategy = build_strategy(spec)
        undefended = by_cell[(index, 0)]
        log, measured = undefended.log, undefended.surrogate
        assert log is not None and measured is not None  # the undefended row keeps both
        attacks.append(
            {
                "name": strategy.name,
                "label": strategy.label,
                "paper": strategy.paper,
                "params": strategy.params(),
                "rows": [by_cell[(index, row)].entry for row in range(len(plan.rows))],
            }
        )
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
            )  # fmt: skip
        )
    white_box = None
    transfer = plan.params.transfer
    if victim_white_box is not None and transfer is not None:
        white_box = [
            {
                "eps": r["eps"],
                "attack_success_rate": r["transfer_success_rate"],
                "n_attacked": r["n_attacked"],
            }
            for r in run.transfer(victim_white_box.to(run.device).eval(), derive_seed(seed, 0x3B))
        ]
    low, high = run.input_range
    report: dict[str, Any] = {
        "n_samples": len(data.x),
        "victim_accuracy": data.victim_accuracy,
        "chance_fidelity": data.chance_fidelity,
        "input_range": [low, high],
        "victim_output": plan.params.victim_output.model_dump(mode="json"),
        "pool": {"n_samples": len(run.pool), "with_replacement": False},
        "budgets": plan.budgets,
        "surrogate": plan.params.surrogate.model_dump(mode="json"),
        "defenses": _defenses(plan, data, attacks, seed),
        "attacks": attacks,
        "transfer": None if transfer is None else {**transfer_entry(transfer), "white_box": white_box},
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
                **defense_cost(data, plan.params.victim_output, row.defense, seed),
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
