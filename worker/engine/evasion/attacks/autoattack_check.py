"""The `fast_vs_standard` check: AutoAttack's fast version against the standard one on a random subset.

After an evasion job ran `{"name": "autoattack", "version": "fast"}`, the standard version runs on a
seeded random subset of the samples the fast one attacked (the spec's `fast_vs_standard` samples,
default min(100, attacked); 0 skips the check), at the middle eps of the spec's list, with the same
norm and budgets. Both sides are verified the same way (an attack's `run`: the output projected onto
the ball and the range, a fresh forward pass). The check fails when the standard version broke
more than ceil(GAP_TOLERANCE x subset) samples that the fast one left standing: on 100 samples one
such sample is tolerated (two random starts rarely agree on every borderline sample), on 500 three.
The detail gives both robust accuracies on the subset, the gap, and the rows fast missed.
"""

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from app.schemas.evasion import AutoAttackParams, EvasionAttackSpec
from app.schemas.evasion_base import validate_attack
from worker.engine.evasion.attacks.autoattack import AutoAttack
from worker.engine.evasion.data import EvaluationData
from worker.engine.progress import ProgressTracker
from worker.engine.seeding import seeded_generator

DEFAULT_SUBSET = 100
GAP_TOLERANCE = 0.005
CHECK_NAME = "fast_vs_standard"
# Seed-sequence keys of the subset draw and of the standard run, apart from every other stream.
_SUBSET_KEY, _RUN_KEY = 1 << 24, 1 << 25
_SHOWN_ROWS = 10


AttackEntry = EvasionAttackSpec | Mapping[str, Any]


def _fast_specs(attacks: Sequence[AttackEntry]) -> list[tuple[int, AutoAttackParams]]:
    """The fast AutoAttack entries of a job whose check is on, with their index (plain mappings typed)."""
    typed = [spec if isinstance(spec, EvasionAttackSpec) else validate_attack(dict(spec)) for spec in attacks]
    return [
        (index, spec)
        for index, spec in enumerate(typed)
        if isinstance(spec, AutoAttackParams) and spec.version == "fast" and spec.fast_vs_standard != 0
    ]


def _standard_spec(spec: AutoAttackParams) -> AutoAttackParams:
    """The standard version's spec with the fast spec's norm and budgets."""
    return spec.model_copy(update={"version": "standard", "fast_vs_standard": None})


def subset_size(spec: AutoAttackParams | Mapping[str, Any], attacked: int) -> int:
    """Samples the check runs on: the spec's number (capped at the attacked samples) or min(100, attacked)."""
    wanted = spec.fast_vs_standard if isinstance(spec, AutoAttackParams) else spec.get("fast_vs_standard")
    return min(DEFAULT_SUBSET if wanted is None else int(wanted), attacked)


def allowed_misses(subset: int) -> int:
    """Samples standard may break that fast left standing before the check fails."""
    return math.ceil(GAP_TOLERANCE * subset)


def fast_vs_standard_units(n_samples: int, attacks: Sequence[AttackEntry]) -> int:
    """Work units of the checks' standard runs (an upper bound), for progress weighting."""
    units = 0
    for _, spec in _fast_specs(attacks):
        units += round(subset_size(spec, n_samples) * _standard_spec(spec).passes_per_sample())
    return units


def check_fast_vs_standard(
    model: nn.Module,
    data: EvaluationData,
    attacks: Sequence[AttackEntry],
    adversarial: Sequence[Mapping[str, np.ndarray]],
    *,
    input_range: tuple[float, float],
    seed: int,
    device: torch.device,
    progress: ProgressTracker,
    judge: nn.Module | None = None,
) -> list[dict[str, Any]]:
    """One `fast_vs_standard` check per fast AutoAttack entry of the job (none when it has none); the
    standard run is judged by `judge` when given (the deployed model of a defense), as the fast run was."""
    checks = []
    for index, spec in _fast_specs(attacks):
        arrays = adversarial[index]
        attacked = np.flatnonzero(arrays["attacked"])
        size = subset_size(spec, len(attacked))
        if size == 0:
            continue
        draw = torch.randperm(
            len(attacked), generator=seeded_generator(torch.device("cpu"), seed, index, _SUBSET_KEY)
        )
        rows = np.sort(attacked[draw[:size].numpy()])
        position = len(spec.eps) // 2
        eps = float(spec.eps[position])
        standard_spec = _standard_spec(spec)
        standard = AutoAttack(standard_spec, input_range=input_range)
        x, y = data.x[rows].to(device), data.y[rows].to(device)
        verified = standard.run(
            model, x, y, eps=eps, generator=seeded_generator(device, seed, index, _RUN_KEY), judge=judge
        )
        standard_broken = verified.success.cpu().numpy()
        progress.advance(
            size * standard_spec.passes_per_sample(), "sanity check: fast vs standard AutoAttack"
        )
        fast_broken = arrays["success"][position, rows]
        checks.append(_verdict(spec, eps, rows, fast_broken, standard_broken))
    return checks


def _verdict(
    spec: AutoAttackParams, eps: float, rows: np.ndarray, fast: np.ndarray, standard: np.ndarray
) -> dict[str, Any]:
    """The check's entry from the per-sample outcomes of both versions on the subset."""
    size = len(rows)
    missed = rows[standard & ~fast]
    allowed = allowed_misses(size)
    passed = len(missed) <= allowed
    fast_robust, standard_robust = 1.0 - float(fast.mean()), 1.0 - float(standard.mean())
    detail = (
        f"autoattack {spec.norm} at eps={eps:g} on {size} random attacked samples: robust "
        f"accuracy {fast_robust:.3f} (fast) against {standard_robust:.3f} (standard), gap "
        f"{fast_robust - standard_robust:+.3f}; standard broke {len(missed)} sample(s) fast left "
        f"standing (at most {allowed} tolerated)"
    )
    if len(missed):
        shown = ", ".join(str(int(row)) for row in missed[:_SHOWN_ROWS])
        detail += f": rows {shown}" + (" ..." if len(missed) > _SHOWN_ROWS else "")
    if not passed:
        detail += (
            ". The fast version is weaker than the standard one on this model: use version "
            "'standard' for the figures you report"
        )
    return {"name": CHECK_NAME, "passed": passed, "detail": detail}
