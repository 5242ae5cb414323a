"""Sanity checks that need extra attack runs: an unbounded attack and a doubled iteration budget.

Careful robustness evaluations (Carlini et al., "On Evaluating Adversarial Robustness", 2019) verify
that an attack with an unbounded budget breaks every input (otherwise the attack, not the model, is
the limit) and that spending more iterations and restarts barely changes the result (otherwise the
reported numbers have not converged).
"""

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from app.schemas.evasion import AttackParamsBase, EvasionAttackSpec, PgdParams
from worker.engine.evasion.attacks.autoattack_check import check_fast_vs_standard, fast_vs_standard_units
from worker.engine.evasion.attacks.pgd import PGD
from worker.engine.evasion.attacks.registry import as_spec, build_attack
from worker.engine.evasion.data import EvaluationData
from worker.engine.progress import ProgressTracker
from worker.engine.sample_streams import sample_batch
from worker.engine.seeding import seeded_generator

UNBOUNDED_SAMPLES = 100
UNBOUNDED_STEPS = 100
UNBOUNDED_MAX_ROBUST = 0.02
DOUBLED_SAMPLES = 200
# Seed-sequence keys of the sanity runs, apart from the attacks' own keys.
_UNBOUNDED_KEY, _DOUBLED_KEY, _FAST_KEY = 1 << 22, 1 << 23, 1 << 25


def _subset(data: EvaluationData, limit: int) -> torch.Tensor:
    """Indices of the first `limit` clean-correct samples."""
    return data.clean_correct.nonzero()[:limit, 0]


def sanity_run_units(n_samples: int, attacks: Sequence[EvasionAttackSpec | Mapping[str, Any]]) -> int:
    """Work units of the sanity runs, for progress weighting."""
    typed = [as_spec(spec) for spec in attacks]
    if not _has_budgeted_attack(typed):
        return 0
    units = min(UNBOUNDED_SAMPLES, n_samples) * UNBOUNDED_STEPS
    found = _doubled_spec(typed)
    if found is not None:
        units += min(DOUBLED_SAMPLES, n_samples) * 4 * _budget(found[1])[0]
    return units + fast_vs_standard_units(n_samples, typed)


def check_unbounded_attack(
    model: nn.Module,
    data: EvaluationData,
    *,
    input_range: tuple[float, float],
    seed: int,
    device: torch.device,
    progress: ProgressTracker,
    judge: nn.Module | None = None,
) -> dict[str, Any] | None:
    """PGD with eps covering the whole input range must break (nearly) every clean-correct sample."""
    chosen = _subset(data, UNBOUNDED_SAMPLES)
    if not chosen.numel():
        return None
    eps = input_range[1] - input_range[0]
    attack = PGD(
        PgdParams(name="pgd", norm="linf", eps=[eps], steps=UNBOUNDED_STEPS), input_range=input_range
    )
    with sample_batch(chosen.tolist(), _UNBOUNDED_KEY):
        outcome = attack.run(
            model,
            data.x[chosen].to(device),
            data.y[chosen].to(device),
            eps=eps,
            generator=seeded_generator(device, seed, _UNBOUNDED_KEY),
            judge=judge,
        )
    progress.advance(len(chosen) * UNBOUNDED_STEPS, "sanity check: unbounded attack")
    robust = 1.0 - float(outcome.success.float().mean())
    passed = robust <= UNBOUNDED_MAX_ROBUST
    detail = (
        f"PGD linf with eps={eps:g} (the whole input range), {UNBOUNDED_STEPS} steps, left {robust:.1%} of "
        f"{len(chosen)} clean-correct samples correctly classified"
    )
    if not passed:
        detail += (
            ". Any input is reachable at this budget, so the attack, not the model, is failing: this "
            "suggests gradient masking (vanishing or shattered gradients); treat the robust accuracies "
            "as upper bounds and add black-box or adaptive attacks"
        )
    return {"name": "unbounded_attack_breaks_everything", "passed": passed, "detail": detail}


def _has_budgeted_attack(attacks: Sequence[EvasionAttackSpec]) -> bool:
    """Whether any attack works inside an eps budget (a patch-only job has none)."""
    return any(isinstance(spec, AttackParamsBase) for spec in attacks)


def _doubled_spec(attacks: Sequence[EvasionAttackSpec]) -> tuple[int, AttackParamsBase] | None:
    """The first attack of the job with an iteration budget to double (spec budget_keys) and its index."""
    for index, spec in enumerate(attacks):
        if isinstance(spec, AttackParamsBase) and type(spec).budget_keys:
            return index, spec
    return None


def _budget(spec: AttackParamsBase) -> tuple[int, int]:
    """(steps, restarts) of an attack with an iteration budget (100 and 1 where it has none)."""
    return int(getattr(spec, "steps", None) or 100), int(getattr(spec, "restarts", None) or 1)


def check_more_iterations(
    model: nn.Module,
    data: EvaluationData,
    attacks: Sequence[EvasionAttackSpec],
    adversarial: Sequence[Mapping[str, np.ndarray]],
    *,
    input_range: tuple[float, float],
    seed: int,
    device: torch.device,
    progress: ProgressTracker,
    judge: nn.Module | None = None,
) -> dict[str, Any] | None:
    """Doubling the iteration budget (the spec's budget_keys) of the first such attack must lower robust
    accuracy by little."""
    found = _doubled_spec(attacks)
    if found is None:
        return None
    index, spec = found
    arrays = adversarial[index]
    eps_position = len(spec.eps) // 2
    eps = float(spec.eps[eps_position])
    chosen = torch.as_tensor(np.flatnonzero(arrays["attacked"])[:DOUBLED_SAMPLES])
    if not chosen.numel():
        return None
    steps, restarts = _budget(spec)
    update = {key: 2 * getattr(spec, key) for key in type(spec).budget_keys}
    doubled = build_attack(spec.model_copy(update=update), input_range)
    targets = torch.as_tensor(arrays["targets"])[chosen].to(device) if "targets" in arrays else None
    with sample_batch(chosen.tolist(), _DOUBLED_KEY):
        outcome = doubled.run(
            model,
            data.x[chosen].to(device),
            data.y[chosen].to(device),
            eps=eps,
            targets=targets,
            generator=seeded_generator(device, seed, _DOUBLED_KEY),
            judge=judge,
        )
    progress.advance(len(chosen) * 4 * steps, "sanity check: doubled iterations")
    before = float(arrays["success"][eps_position, chosen.numpy()].mean())
    after = float(outcome.success.float().mean())
    tolerance = max(0.02, 1.5 / len(chosen))
    passed = after - before <= tolerance
    detail = (
        f"{spec.name} {spec.norm} at eps={eps:g} on {len(chosen)} samples: success rate "
        f"{before:.1%} with {steps} steps x {restarts} restart(s), {after:.1%} with {2 * steps} x "
        f"{2 * restarts}"
    )
    if not passed:
        detail += (
            f". More iterations broke {after - before:.1%} more samples: the attack has not converged, "
            "so the reported robust accuracy is too high; raise steps and restarts"
        )
    return {"name": "more_iterations_change_little", "passed": passed, "detail": detail}


def sanity_run_checks(
    model: nn.Module | None,
    data: EvaluationData,
    attacks: Sequence[EvasionAttackSpec],
    adversarial: Sequence[Mapping[str, np.ndarray]],
    *,
    input_range: tuple[float, float],
    seed: int,
    device: torch.device,
    progress: ProgressTracker,
    judge: nn.Module | None = None,
) -> list[dict[str, Any]]:
    """The checks that need extra runs (each judged by `judge` when given, the fast-vs-standard AutoAttack
    check's standard run included); none without a differentiable model."""
    if (
        model is None
        or not math.isfinite(input_range[1] - input_range[0])
        or not _has_budgeted_attack(attacks)
    ):
        return []
    checks = [
        check_unbounded_attack(
            model, data, input_range=input_range, seed=seed, device=device, progress=progress, judge=judge
        ),
        check_more_iterations(
            model,
            data,
            attacks,
            adversarial,
            input_range=input_range,
            seed=seed,
            device=device,
            progress=progress,
            judge=judge,
        ),
    ]
    with sample_batch(None, _FAST_KEY):  # its own subsets: one stream for the check, apart from the rest
        checks += check_fast_vs_standard(
            model, data, attacks, adversarial, input_range=input_range, seed=seed, device=device,
            progress=progress, judge=judge,
        )  # fmt: skip
    return [check for check in checks if check is not None]
