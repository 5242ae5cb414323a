"""Evaluate one configured attack at each of its eps over the batched data set.

`attack_slice` runs the attack on a slice (whole batches) and keeps per-sample outcomes only;
`attack_entry` turns the joined slices into the report entry. Every figure comes from the attack's
verified call (`Attack.run`: the output projected onto the ball and the range, then judged by the
attacked model or the caller's judge), never from what the search claimed. Every random stream is
keyed by the run seed, the attack, the eps and the batch's first sample position, so a split
evaluation draws the same numbers as one over all samples.
"""

import math
import time
from collections.abc import Sequence
from functools import partial
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from app.schemas.evasion import AttackParamsBase
from worker.engine.batching import BatchFit
from worker.engine.evasion.attacks.base import Attack, AttackResult, restrict_to_budget
from worker.engine.evasion.attacks.norms import perturbation_norm
from worker.engine.evasion.attacks.targets import attackable, select_targets
from worker.engine.evasion.data import EvaluationData
from worker.engine.evasion.metrics import WorstCase, eps_result, query_stats
from worker.engine.evasion.slices import AttackSlice
from worker.engine.progress import ProgressTracker
from worker.engine.sample_streams import sample_batch
from worker.engine.seeding import seeded_generator

# Seed-sequence key of the random-target draw, apart from the per-eps keys 0..n_eps-1.
TARGETS_KEY = 1 << 20
# Seed-sequence key of a minimum-norm attack's single run, apart from the per-eps keys.
UNBOUNDED_KEY = 1 << 21


def target_mode(spec: AttackParamsBase) -> str:
    """How a targeted attack picks its targets (least_likely unless the spec says otherwise)."""
    return str(spec.target_mode or "least_likely")


def _targets(
    attack: Attack,
    spec: AttackParamsBase,
    data: EvaluationData,
    seed: int,
    index: int,
    span: tuple[int, int],
) -> Tensor | None:
    """Per-sample targets for a targeted attack, None otherwise.

    Random targets are drawn for every position of the evaluated set (offset, total) and sliced, so a
    sample's target does not depend on the slice it is evaluated in.
    """
    if not attack.targeted:
        return None
    mode = target_mode(spec)
    offset, total = span
    generator = seeded_generator(torch.device("cpu"), seed, index, TARGETS_KEY)
    if mode == "random":
        y_all = torch.zeros(total, dtype=torch.long)
        y_all[offset : offset + len(data.y)] = data.y
        drawn = select_targets(mode, y_all, num_classes=data.logits.shape[1], generator=generator)
        return drawn[offset : offset + len(data.y)]
    return select_targets(
        mode,
        data.y,
        num_classes=data.logits.shape[1],
        clean_logits=data.logits,
        target_class=spec.target_class,
        generator=generator,
    )


def _store(
    part: AttackSlice, position: int, chosen: Tensor, x_clean: Tensor, outcome: AttackResult, norm: str
) -> None:
    """Copy one batch's outcome at one eps into the slice's per-sample arrays."""
    rows = chosen.numpy()
    part.arrays["x_adv"][position, rows] = outcome.x_adv.cpu().numpy()
    part.arrays["success"][position, rows] = outcome.success.cpu().numpy()
    part.predictions[position, rows] = outcome.predictions.cpu().numpy()
    part.perturbation[position, rows] = perturbation_norm(outcome.x_adv - x_clean, norm).float().cpu().numpy()
    if outcome.queries is not None:
        part.queries[position, rows] = outcome.queries.cpu().numpy()


def _attack_batch(
    start: int,
    stop: int,
    *,
    model: nn.Module,
    attack: Attack,
    data: EvaluationData,
    part: AttackSlice,
    attacked: Tensor,
    targets: Tensor | None,
    eps: tuple[float, Sequence[int], list[float]],
    keys: tuple[int, int, int, int],
    device: torch.device,
    judge: nn.Module | None,
) -> None:
    """Attack the samples of [start, stop) still attacked at one run eps; store what the evaluator sees.

    `eps` is (the run's eps, the eps positions it fills, every eps); `keys` is (seed, attack index,
    eps key, the slice's first sample position): the random stream is keyed by start's position, and a
    randomized model's draws by each attacked sample's position (`sample_batch`).
    """
    run_eps, positions, eps_values = eps
    seed, index, key, offset = keys
    chosen = start + attacked[start:stop].nonzero()[:, 0]
    if not chosen.numel():
        return
    x_clean, y_clean = data.x[chosen].to(device), data.y[chosen].to(device)
    chosen_targets = None if targets is None else targets[chosen].to(device)
    generator = seeded_generator(device, seed, index, key, offset + start)
    with sample_batch((offset + chosen).tolist(), index, key):
        outcome = attack.run(
            model, x_clean, y_clean, eps=run_eps, targets=chosen_targets, generator=generator, judge=judge
        )
    for position in positions:
        seen = outcome
        if attack.spec_type.minimum_norm:
            seen = restrict_to_budget(outcome, x_clean, y_clean, eps_values[position], attack.norm)
        _store(part, position, chosen, x_clean, seen, attack.norm)


def attack_slice(
    model: nn.Module,
    attack: Attack,
    spec: AttackParamsBase,
    data: EvaluationData,
    *,
    index: int,
    seed: int,
    device: torch.device,
    progress: ProgressTracker,
    span: tuple[int, int] | None = None,
    judge: nn.Module | None = None,
) -> AttackSlice:
    """Run one attack spec at every eps over the slice; per-sample outcomes, no metrics.

    `span` is (position of the slice's first sample, size of the whole evaluated set); default: the
    slice is the whole set. `judge` sees every output (default: the attacked model). Bounded attacks
    run once per eps and batch. Minimum-norm attacks run once per batch with eps=inf and each eps
    keeps only the successes within it, so their cost does not grow with the eps list.
    """
    offset, total = span or (0, len(data.x))
    targets = _targets(attack, spec, data, seed, index, (offset, total))
    attacked = data.clean_correct.clone()
    if targets is not None:
        attacked &= attackable(data.y, targets)
    eps_values = [float(eps) for eps in spec.eps]
    n, n_eps = len(data.x), len(eps_values)
    arrays: dict[str, np.ndarray] = {
        "x_adv": np.repeat(data.x.numpy()[None], n_eps, axis=0),
        "eps": np.asarray(eps_values, dtype=np.float64),
        "y": data.y.numpy().copy(),
        "success": np.zeros((n_eps, n), dtype=bool),
        "attacked": attacked.numpy().copy(),
    }
    if targets is not None:
        arrays["targets"] = targets.numpy().copy()
    part = AttackSlice(
        arrays=arrays,
        predictions=np.repeat(data.logits.argmax(dim=1).numpy()[None], n_eps, axis=0),
        perturbation=np.zeros((n_eps, n), dtype=np.float32),
        queries=np.zeros((n_eps, n), dtype=np.int64),
        seconds=[0.0] * n_eps,
    )
    breakdown = getattr(attack, "_breakdown", None)
    if isinstance(breakdown, dict):
        breakdown.clear()
    runs: list[tuple[float, int | None]] = (
        [(math.inf, None)]
        if attack.spec_type.minimum_norm
        else [(eps, i) for i, eps in enumerate(eps_values)]
    )
    fit = BatchFit(max((stop - start for start, stop in data.batches), default=1))
    for run_eps, eps_index in runs:
        positions = range(n_eps) if eps_index is None else [eps_index]
        key = UNBOUNDED_KEY if eps_index is None else eps_index
        for number, (start, stop) in enumerate(data.batches):
            started = time.perf_counter()
            fit.run(start, stop, partial(
                _attack_batch, model=model, attack=attack, data=data, part=part, attacked=attacked,
                targets=targets, eps=(run_eps, positions, eps_values), keys=(seed, index, key, offset),
                device=device, judge=judge,
            ))  # fmt: skip
            elapsed = time.perf_counter() - started
            for position in positions:
                part.seconds[position] += elapsed
            label = "all eps" if eps_index is None else f"eps={run_eps:g}"
            stage = f"{attack.name} {attack.norm} {label} batch {number + 1}/{len(data.batches)}"
            progress.advance(spec.passes_per_sample() * (stop - start), stage)
    if isinstance(breakdown, dict):
        part.details = {float(eps): row for eps, row in breakdown.items()}
    return part


def attack_entry(
    attack: Attack, spec: AttackParamsBase, part: AttackSlice, worst: WorstCase
) -> dict[str, Any]:
    """The report entry of one attack from its per-sample outcomes over every evaluated sample."""
    breakdown = getattr(attack, "_breakdown", None)
    if isinstance(breakdown, dict):
        breakdown.clear()
        breakdown.update(part.details)
    arrays, attacked, facts = part.arrays, part.arrays["attacked"], attack.spec_type
    results = []
    for position, eps in enumerate(float(value) for value in arrays["eps"]):
        robust = part.predictions[position] == arrays["y"]
        worst.add(attack.norm, eps, robust)
        row = eps_result(
            eps,
            robust=robust,
            success=arrays["success"][position],
            perturbation=part.perturbation[position],
            attacked=attacked,
            seconds=part.seconds[position],
            measured=arrays["success"][position] if facts.minimum_norm else None,
        )
        if not facts.white_box:
            row |= query_stats(part.queries[position], attacked)
        results.append({**row, **attack.params_at(eps), **attack.details_at(eps)})
    params = attack.params()
    if attack.targeted:
        params["target_class"] = spec.target_class if target_mode(spec) == "fixed" else None
    return {
        "name": attack.name,
        "norm": attack.norm,
        "targeted": attack.targeted,
        "target_mode": target_mode(spec) if attack.targeted else None,
        "threat_model": "white-box" if facts.white_box else "black-box",
        "iterative": facts.iterative,
        "ensemble": facts.ensemble,
        "minimum_norm": facts.minimum_norm,
        "n_samples": len(arrays["y"]),
        "n_attacked": int(attacked.sum()),
        "params": params,
        "results": results,
    }


def evaluate_attack(
    model: nn.Module,
    attack: Attack,
    spec: AttackParamsBase | dict[str, Any],
    data: EvaluationData,
    *,
    index: int,
    seed: int,
    device: torch.device,
    progress: ProgressTracker,
    worst: WorstCase,
    judge: nn.Module | None = None,
) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Run one attack spec at every eps over all of data; returns its report entry and artifact arrays."""
    if not isinstance(spec, AttackParamsBase):  # a plain mapping: the attack's own spec type reads it
        spec = attack.spec_type.model_validate({**spec, "name": attack.name})
    part = attack_slice(
        model, attack, spec, data, index=index, seed=seed, device=device, progress=progress, judge=judge
    )
    return attack_entry(attack, spec, part, worst), part.arrays
