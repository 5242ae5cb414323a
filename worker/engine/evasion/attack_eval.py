"""Evaluate one configured attack at each of its eps over the batched data set."""

import math
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from worker.engine.evasion.attacks.base import Attack, AttackResult, restrict_to_budget
from worker.engine.evasion.attacks.norms import clamp_range, perturbation_norm, project
from worker.engine.evasion.attacks.targets import attackable, select_targets
from worker.engine.evasion.data import EvaluationData
from worker.engine.evasion.metrics import WorstCase, eps_result, query_stats
from worker.engine.progress import ProgressTracker
from worker.engine.seeding import seeded_generator

# Seed-sequence key of the random-target draw, apart from the per-eps keys 0..n_eps-1.
TARGETS_KEY = 1 << 20
# Seed-sequence key of a minimum-norm attack's single run, apart from the per-eps keys.
UNBOUNDED_KEY = 1 << 21


@dataclass
class _EpsState:
    """Per-sample outcomes at one eps while batches stream through."""

    predictions: Tensor
    perturbation: Tensor
    queries: Tensor
    seconds: float = 0.0


def _targets(
    attack: Attack, spec: Mapping[str, Any], data: EvaluationData, seed: int, index: int
) -> Tensor | None:
    """Per-sample targets for a targeted attack, None otherwise."""
    if not attack.targeted:
        return None
    return select_targets(
        spec.get("target_mode") or "least_likely",
        data.y,
        num_classes=data.logits.shape[1],
        clean_logits=data.logits,
        target_class=spec.get("target_class"),
        generator=seeded_generator(torch.device("cpu"), seed, index, TARGETS_KEY),
    )


@torch.no_grad()
def verify(
    model: nn.Module,
    attack: Attack,
    x_clean: Tensor,
    y_clean: Tensor,
    targets: Tensor | None,
    outcome: AttackResult,
    eps: float,
) -> AttackResult:
    """The evaluator's own view of an attack's output: never the attack's word (the foolbox rule).

    What the attack returned is projected onto the eps ball (for a finite eps) and the input range,
    the model under evaluation runs on it once more, and predictions and success come from that pass.
    """
    if math.isinf(eps):
        x_adv = clamp_range(outcome.x_adv, attack.input_range)
    else:
        x_adv = project(x_clean, outcome.x_adv, eps, attack.norm, attack.input_range)
    predictions = model(x_adv).argmax(dim=1)
    if attack.targeted:
        assert targets is not None
        success = predictions == targets.to(predictions.device)
    else:
        success = predictions != y_clean
    return AttackResult(x_adv=x_adv, predictions=predictions, success=success, queries=outcome.queries)


def _store(
    state: _EpsState,
    arrays: dict[str, np.ndarray],
    eps_index: int,
    chosen: Tensor,
    x_clean: Tensor,
    outcome: AttackResult,
    norm: str,
) -> None:
    """Copy one batch's outcome at one eps into the per-sample state and the artifact arrays."""
    rows = chosen.numpy()
    arrays["x_adv"][eps_index, rows] = outcome.x_adv.cpu().numpy()
    arrays["success"][eps_index, rows] = outcome.success.cpu().numpy()
    state.predictions[chosen] = outcome.predictions.cpu()
    state.perturbation[chosen] = perturbation_norm(outcome.x_adv - x_clean, norm).float().cpu()
    if outcome.queries is not None:
        state.queries[chosen] = outcome.queries.cpu().to(state.queries.dtype)


def evaluate_attack(
    model: nn.Module,
    attack: Attack,
    spec: Mapping[str, Any],
    data: EvaluationData,
    *,
    index: int,
    seed: int,
    device: torch.device,
    progress: ProgressTracker,
    worst: WorstCase,
) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Run one attack spec at every eps; returns its report entry and artifact arrays.

    Bounded attacks run once per eps and batch. Minimum-norm attacks run once per batch with eps=inf
    and each eps keeps only the successes within it, so their cost does not grow with the eps list.
    """
    targets = _targets(attack, spec, data, seed, index)
    attacked = data.clean_correct.clone()
    if targets is not None:
        attacked &= attackable(data.y, targets)
    eps_values = [float(eps) for eps in spec["eps"]]
    n = len(data.x)
    arrays: dict[str, np.ndarray] = {
        "x_adv": np.repeat(data.x.numpy()[None], len(eps_values), axis=0),
        "eps": np.asarray(eps_values, dtype=np.float64),
        "y": data.y.numpy().copy(),
        "success": np.zeros((len(eps_values), n), dtype=bool),
        "attacked": attacked.numpy().copy(),
    }
    if targets is not None:
        arrays["targets"] = targets.numpy().copy()
    states = [
        _EpsState(data.logits.argmax(dim=1), torch.zeros(n), torch.zeros(n, dtype=torch.long))
        for _ in eps_values
    ]
    runs: list[tuple[float, int | None]] = (
        [(math.inf, None)] if attack.minimum_norm else [(eps, i) for i, eps in enumerate(eps_values)]
    )
    for run_eps, eps_index in runs:
        positions = range(len(eps_values)) if eps_index is None else [eps_index]
        generator = seeded_generator(device, seed, index, UNBOUNDED_KEY if eps_index is None else eps_index)
        for number, (start, stop) in enumerate(data.batches):
            chosen = start + attacked[start:stop].nonzero()[:, 0]
            started = time.perf_counter()
            if chosen.numel():
                x_clean, y_clean = data.x[chosen].to(device), data.y[chosen].to(device)
                chosen_targets = None if targets is None else targets[chosen].to(device)
                claimed = attack.run(
                    model, x_clean, y_clean, eps=run_eps, targets=chosen_targets, generator=generator
                )
                outcome = verify(model, attack, x_clean, y_clean, chosen_targets, claimed, run_eps)
                for position in positions:
                    seen = outcome
                    if attack.minimum_norm:
                        seen = restrict_to_budget(
                            outcome, x_clean, y_clean, eps_values[position], attack.norm
                        )
                    _store(states[position], arrays, position, chosen, x_clean, seen, attack.norm)
            elapsed = time.perf_counter() - started
            for position in positions:
                states[position].seconds += elapsed
            label = "all eps" if eps_index is None else f"eps={run_eps:g}"
            stage = f"{attack.name} {attack.norm} {label} batch {number + 1}/{len(data.batches)}"
            progress.advance(attack.work_units * (stop - start), stage)
    results = []
    for position, eps in enumerate(eps_values):
        state = states[position]
        robust = (state.predictions == data.y).numpy()
        worst.add(attack.norm, eps, robust)
        row = eps_result(
            eps,
            robust=robust,
            success=arrays["success"][position],
            perturbation=state.perturbation.numpy(),
            attacked=attacked.numpy(),
            seconds=state.seconds,
            measured=arrays["success"][position] if attack.minimum_norm else None,
        )
        if not attack.requires_gradients:
            row |= query_stats(state.queries.numpy(), attacked.numpy())
        results.append({**row, **attack.params_at(eps), **attack.details_at(eps)})
    params = attack.params()
    if attack.targeted:
        params["target_class"] = spec.get("target_class") if spec.get("target_mode") == "fixed" else None
    entry = {
        "name": attack.name,
        "norm": attack.norm,
        "targeted": attack.targeted,
        "target_mode": (spec.get("target_mode") or "least_likely") if attack.targeted else None,
        "threat_model": "white-box" if attack.requires_gradients else "black-box",
        "iterative": attack.iterative,
        "ensemble": attack.ensemble,
        "minimum_norm": attack.minimum_norm,
        "n_samples": n,
        "n_attacked": int(attacked.sum()),
        "params": params,
        "results": results,
    }
    return entry, arrays
