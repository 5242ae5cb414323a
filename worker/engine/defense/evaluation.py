"""Adaptive evaluation of a defense: undefended and defended side by side, naive beside adaptive.

Attacks search on views of the models (the attacker's gradients: naive, BPDA, EOT, logits), through
the evasion engine, and every output is judged inside the attack's verified call (`Attack.run`) by the
deployed model: the exported ONNX through onnxruntime, behind the real preprocessing where there is
one (the undefended side: the uploaded model as deployed). Every figure, the sanity runs' included,
comes from that judge; `attack_reported_robust_accuracy` is the same row on the attack's own view
(its prediction on the same outputs), so the gap a masking view opens stays visible.

Attacked samples are those the judge classifies correctly clean, not those the view does. For a
deterministic defense the two sets are the same (each view's argmax is the deployed argmax). For a
randomized one they differ by the draws, and attacking the view's set let samples the deployed model
gets right go unattacked yet count as robust (robust accuracy above clean accuracy: 0.667 against a
clean 0.533 on a random_resize_pad spec before this change) while clean errors of the deployed model
counted as the attack's successes; with the judge's set, robust accuracy never exceeds the deployed
clean accuracy and a success is a sample the attack flipped.

The work splits along whole batches like evasion's: `evaluate_defense_slice` runs every side's
attacks on samples [start, stop) and keeps per-sample outcomes (`DefenseSlice`, bytes via
`defense_slice_to_bytes`); `finish_defense` joins the slices (any split, any order), runs the sanity
runs and builds the section. `evaluate_defense` is both over all samples. Random streams (attacks and
randomized defenses alike) are keyed by sample position, so the section does not depend on the split.
"""

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from app.schemas.evasion import AttackParamsBase
from worker.engine.batching import batch_bounds
from worker.engine.defense.evaluation_plan import (
    AttackRun,
    Classify,
    EvaluationPlan,
    Role,
    evasion_units,
    module_classifier,
    plain_specs,
    predict_labels,
    run_units,
    sub_progress,
)
from worker.engine.defense.evaluation_slices import (
    EXTRA_INDEX,
    DefenseSlice,
    JudgedSlice,
    defense_slice_from_bytes,
    defense_slice_to_bytes,
    join_defense,
)
from worker.engine.evasion.attack_eval import attack_entry, attack_slice
from worker.engine.evasion.attacks.base import Attack
from worker.engine.evasion.data import EvaluationData
from worker.engine.evasion.metrics import WorstCase
from worker.engine.evasion.runner import evaluate_slice, finish_evasion
from worker.engine.evasion.sanity_runs import sanity_run_units
from worker.engine.evasion.slices import AttackSlice
from worker.engine.models.black_box import QueryOnlyModel
from worker.engine.progress import ProgressTracker
from worker.engine.sample_streams import sample_batch

__all__ = [
    "AttackRun",
    "Classify",
    "DefenseSlice",
    "EvaluationPlan",
    "Role",
    "defense_slice_from_bytes",
    "defense_slice_to_bytes",
    "evaluate_defense",
    "evaluate_defense_slice",
    "finish_defense",
    "module_classifier",
    "plain_specs",
    "predict_labels",
    "run_units",
]

# Sample-batch key of the view's verdict on an attack's outputs (plus the attack index), apart from the
# evasion engine's keys.
VIEW_KEY = 1 << 26


def _judges(plan: EvaluationPlan) -> tuple[nn.Module, nn.Module, nn.Module]:
    """The undefended judge, the defended judge and what black-box attacks on the defended model query."""
    search = plan.deployed_search or plan.deployed
    return QueryOnlyModel(plan.undefended_classify), QueryOnlyModel(plan.deployed), QueryOnlyModel(search)


def _view_predictions(
    view: nn.Module, part: AttackSlice, index: int, start: int, plan: EvaluationPlan
) -> np.ndarray:
    """The view's predicted labels on each output of an attack slice ([n_eps, n]), batch by batch."""
    x_adv = part.arrays["x_adv"]
    predictions = np.zeros(x_adv.shape[:2], dtype=np.int64)
    was_training = view.training
    view.eval()
    try:
        for position in range(len(x_adv)):
            for a, b in batch_bounds(x_adv.shape[1], plan.batch_size):
                inputs = torch.as_tensor(np.ascontiguousarray(x_adv[position, a:b]), device=plan.device)
                with torch.no_grad(), sample_batch(range(start + a, start + b), VIEW_KEY + index, position):
                    predictions[position, a:b] = view(inputs).argmax(dim=1).cpu().numpy()
    finally:
        view.train(was_training)
    return predictions


def _side(
    plan: EvaluationPlan,
    view: nn.Module,
    attacks: list[AttackParamsBase],
    x: np.ndarray,
    y: np.ndarray,
    *,
    span: tuple[int, int],
    black_box: nn.Module | None,
    judge: nn.Module,
    tracker: ProgressTracker,
    extra: Sequence[tuple[Attack, AttackParamsBase]] = (),
) -> JudgedSlice:
    """One side's attacks (and extra attack instances) on a slice, judged by `judge`, with the view's word."""
    callback, finish = sub_progress(tracker, evasion_units(attacks, len(x), False))
    evasion = evaluate_slice(
        view, x, y, attacks, start=span[0], total=span[1], input_range=plan.input_range,
        batch_size=plan.batch_size, seed=plan.seed, device=plan.device, progress=callback,
        black_box=black_box, judge=judge,
    )  # fmt: skip
    finish()
    if extra:
        x_all = torch.as_tensor(np.ascontiguousarray(x, dtype=np.float32))
        y_all, logits = torch.as_tensor(y, dtype=torch.long), torch.as_tensor(evasion.logits)
        batches = batch_bounds(len(x_all), plan.batch_size)
        data = EvaluationData(x_all, y_all, logits, logits.argmax(dim=1) == y_all, batches)
        for number, (attack, spec) in enumerate(extra):
            evasion.attacks[EXTRA_INDEX + number] = attack_slice(
                view, attack, spec, data, index=EXTRA_INDEX + number, seed=plan.seed,
                device=plan.device, progress=tracker, span=span, judge=judge,
            )  # fmt: skip
    views = {
        index: _view_predictions(view, part, index, span[0], plan) for index, part in evasion.attacks.items()
    }
    return JudgedSlice(evasion, views)


def evaluate_defense_slice(
    plan: EvaluationPlan, x: np.ndarray, y: np.ndarray, *, start: int, total: int, tracker: ProgressTracker
) -> DefenseSlice:
    """Samples [start, start + len(x)) of an evaluated set of `total` (start on a whole batch): the
    undefended side's attacks and every run's attacks on the defended model, per-sample outcomes only."""
    if start % plan.batch_size or start + len(x) > total:
        raise ValueError("a slice starts at a whole batch and lies inside the evaluated set")
    undefended_judge, judge, search = _judges(plan)
    span = (start, total)
    undefended = _side(
        plan, plan.undefended, plan.attacks, x, y, span=span, black_box=plan.undefended_black_box,
        judge=undefended_judge, tracker=tracker,
    )  # fmt: skip
    runs = [
        _side(
            plan,
            run.model,
            run.attacks,
            x,
            y,
            span=span,
            black_box=search,
            judge=judge,
            tracker=tracker,
            extra=run.extra,
        )  # fmt: skip
        for run in plan.runs
    ]
    return DefenseSlice(start, undefended, runs)


def _rows(entry: dict[str, Any], part: AttackSlice, view: np.ndarray, *worst: WorstCase) -> None:
    """The judge's figures of an entry's rows (robust: the judge's label is the true one; broken: an attacked
    sample it no longer classifies correctly) and the view's beside them, folded into the worst cases."""
    y, attacked = part.arrays["y"], part.arrays["attacked"]
    for position, row in enumerate(entry["results"]):
        robust = part.predictions[position] == y
        broken = attacked & ~robust
        row["attack_reported_robust_accuracy"] = float((view[position] == y).mean())
        row["robust_accuracy"] = float(robust.mean())
        row["n_succeeded"] = int(broken.sum())
        row["attack_success_rate"] = float(broken.sum() / attacked.sum()) if attacked.any() else None
        for case in worst:
            case.add(entry["norm"], float(row["eps"]), robust)


def _finish_side(
    plan: EvaluationPlan,
    view: nn.Module,
    attacks: list[AttackParamsBase],
    joined: JudgedSlice,
    x: np.ndarray,
    y: np.ndarray,
    *,
    black_box: nn.Module | None,
    judge: nn.Module,
    sanity: bool,
    tracker: ProgressTracker,
) -> dict[str, Any] | None:
    """The evasion report of one side from its joined slice (sanity runs judged too); None without attacks."""
    if not attacks:
        return None
    callback, finish = sub_progress(tracker, sanity_run_units(len(x), attacks) if sanity else 0)
    outcome = finish_evasion(
        view, x, y, attacks, [joined.evasion], input_range=plan.input_range, batch_size=plan.batch_size,
        seed=plan.seed, device=plan.device, progress=callback, black_box=black_box, sanity_runs=sanity,
        judge=judge,
    )  # fmt: skip
    finish()
    return outcome.report


def finish_defense(
    plan: EvaluationPlan,
    x: np.ndarray,
    y: np.ndarray,
    parts: Sequence[DefenseSlice],
    tracker: ProgressTracker,
) -> tuple[dict[str, Any], dict[str, dict[str, np.ndarray]]]:
    """The evaluation section of a defense report and the adversarial arrays of every run, from the slices
    evaluate_defense_slice returned (any split, any order)."""
    joined = join_defense(parts)
    if joined.start != 0 or joined.size != len(x):
        raise ValueError(f"the slices cover {joined.size} of {len(x)} samples")
    n = len(x)
    undefended_judge, judge, search = _judges(plan)
    adversarial: dict[str, dict[str, np.ndarray]] = {}
    report = _finish_side(
        plan, plan.undefended, plan.attacks, joined.undefended, x, y, black_box=plan.undefended_black_box,
        judge=undefended_judge, sanity=False, tracker=tracker,
    )  # fmt: skip
    assert report is not None
    undefended_worst = WorstCase(n)
    for index, entry in enumerate(report["attacks"]):
        part = joined.undefended.evasion.attacks[index]
        _rows(entry, part, joined.undefended.view[index], undefended_worst)
        adversarial[f"undefended_adversarial_{entry['name']}_{entry['norm']}_{index}"] = part.arrays
    if not joined.runs:
        raise ValueError("a defense evaluation needs at least one run on the defended model")
    section: dict[str, Any] = {
        "n_samples": n,
        "undefended": {
            "clean_accuracy": _clean(joined.undefended, y),
            "attacks": report["attacks"],
            "worst_case": undefended_worst.rows(),
        },
        "defended": {"clean_accuracy": _clean(joined.runs[0], y), "runs": []},
    }
    worst = {"naive": WorstCase(n), "adaptive": WorstCase(n), "all": WorstCase(n)}
    checks: list[dict[str, Any]] = []
    for number, (run, side) in enumerate(zip(plan.runs, joined.runs, strict=True)):
        sanity = run.sanity_runs and plan.sanity_runs
        report = _finish_side(
            plan, run.model, run.attacks, side, x, y, black_box=search, judge=judge, sanity=sanity,
            tracker=tracker,
        )  # fmt: skip
        entries = list(report["attacks"]) if report is not None else []
        if report is not None and run.sanity_runs:
            checks += [{**c, "detail": f"[defended, {run.view}] {c['detail']}"} for c in report["checks"]]
        indices = list(range(len(entries)))
        for k, (attack, spec) in enumerate(run.extra):
            entries.append(attack_entry(attack, spec, side.evasion.attacks[EXTRA_INDEX + k], WorstCase(n)))
            indices.append(EXTRA_INDEX + k)
        run_worst = WorstCase(n)
        for position, (entry, index) in enumerate(zip(entries, indices, strict=True)):
            part = side.evasion.attacks[index]
            _rows(entry, part, side.view[index], run_worst, worst[run.role], worst["all"])
            name = f"defended_{run.role}{number}_{entry['name']}_{entry['norm']}_{position}"
            adversarial[name] = part.arrays
        section["defended"]["runs"].append(
            {"role": run.role, "view": run.view, "attacks": entries, "worst_case": run_worst.rows()}
        )
    section["defended"]["worst_case"] = {role: case.rows() for role, case in worst.items()}
    section["checks"] = checks
    return section, adversarial


def _clean(side: JudgedSlice, y: np.ndarray) -> float:
    """Clean accuracy of a side's judge (its clean pass decided which samples were attacked)."""
    return float((side.evasion.logits.argmax(axis=1) == y).mean())


def evaluate_defense(
    plan: EvaluationPlan, x: np.ndarray, y: np.ndarray, tracker: ProgressTracker
) -> tuple[dict[str, Any], dict[str, dict[str, np.ndarray]]]:
    """The evaluation section and adversarial arrays over all samples (one slice, then the finish)."""
    part = evaluate_defense_slice(plan, x, y, start=0, total=len(x), tracker=tracker)
    return finish_defense(plan, x, y, [part], tracker)
