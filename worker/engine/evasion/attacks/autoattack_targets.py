"""AutoAttack standard's targeted components (APGD-T, FAB-T): one run per target, looped or batched.

Each (sample, target) run is independent of the others: APGD's step sizes and checkpoints are per
row, FAB-T (one run, starting at the clean input) is deterministic, and a model in eval mode treats
the rows of a batch independently. So instead of looping over the target ranks (rank r on the samples
ranks 1 .. r-1 left standing), the accelerated path runs every (sample, target) pair in one batch and
drops all pairs of a sample as soon as one of them breaks it. The best-ranked target runs alone
first: it breaks most of the samples that fall, and a batch would spend every other target's passes
on them until they do; the other ranks then run as one batch on the samples still standing. A
sample is broken by the batched run exactly when some target's run breaks it in the loop (the pairs
that leave early belong to a sample already broken); its adversarial is that of the best-ranked
target that broke it at that iteration.
On the samples that stay robust the batch spends the loop's model passes exactly (every target
runs its whole budget either way) in two loops of iterations instead of nine, which is where the
per-iteration overhead of small batches went.

Random starts (APGD-T): both paths draw one start per target rank for every sample given, rank by
rank, before any run, so the pair (sample i, rank r) starts from the same point in the loop and in
the batch (the loop ignores the draws of samples it no longer attacks).
"""

from typing import Any

import torch
from torch import Tensor, nn

from worker.engine.evasion.attacks.apgd import apgd_search, random_on_sphere
from worker.engine.evasion.attacks.dlr import misclassified, targeted_dlr_objective
from worker.engine.evasion.attacks.fab import Linearizer, fab_restarts

# Largest batch of (sample, target) rows times input size run at once (the rest runs in chunks).
MAX_PAIR_ELEMENTS = 1 << 24


def ranked_targets(clean_logits: Tensor, count: int) -> Tensor:
    """The 2nd, 3rd, ... most likely classes of the clean logits ([N, count])."""
    return clean_logits.argsort(dim=1, descending=True)[:, 1 : count + 1]


def targeted_component(
    component: str,
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    targets: Tensor,
    *,
    apgd: dict[str, Any],
    fab: dict[str, Any],
    batched: bool,
) -> Tensor:
    """APGD-T or FAB-T over the target ranks: per sample its first adversarial found, x elsewhere."""
    starts = None
    if component == "apgd-t":
        starts = torch.stack(
            [
                random_on_sphere(x, apgd["eps"], apgd["norm"], apgd["generator"])
                for _ in range(targets.shape[1])
            ],
            dim=1,
        )
    if not batched:
        return _looped(component, model, x, y, targets, starts, apgd, fab)
    # The best-ranked target alone first (it breaks most of the samples that fall), then the other
    # ranks batched on the samples it left standing.
    first_starts = None if starts is None else starts[:, :1]
    candidate = _looped(component, model, x, y, targets[:, :1], first_starts, apgd, fab)
    active = (candidate == x).flatten(1).all(dim=1).nonzero()[:, 0]
    if targets.shape[1] == 1 or not active.numel():
        return candidate
    rest = targets[active, 1:]
    per_chunk = max(1, MAX_PAIR_ELEMENTS // max(1, rest.shape[1] * x[0].numel()))
    for first in range(0, len(active), per_chunk):
        part = active[first : first + per_chunk]
        candidate[part] = _batched(
            component, model, x[part], y[part], rest[first : first + per_chunk],
            None if starts is None else starts[part, 1:], apgd, fab,
        )  # fmt: skip
    return candidate


def _looped(
    component: str,
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    targets: Tensor,
    starts: Tensor | None,
    apgd: dict[str, Any],
    fab: dict[str, Any],
) -> Tensor:
    """The reference's loop: rank r runs on the samples ranks 1 .. r-1 did not break."""
    candidate, done = x.clone(), torch.zeros(len(x), dtype=torch.bool, device=x.device)
    for rank in range(targets.shape[1]):
        active = (~done).nonzero()[:, 0]
        if not active.numel():
            break
        x_run, y_run, t_run = x[active], y[active], targets[active, rank]
        init = None if starts is None else starts[active, rank]
        found, success = _run(component, model, x_run, y_run, t_run, None, init, apgd, fab)
        candidate[active[success]], done[active[success]] = found[success], True
    return candidate


def _batched(
    component: str,
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    targets: Tensor,
    starts: Tensor | None,
    apgd: dict[str, Any],
    fab: dict[str, Any],
) -> Tensor:
    """Every (sample, target) pair in one run; a sample's pairs leave together once it is broken."""
    n, count = targets.shape
    rows_x = x.repeat_interleave(count, dim=0)
    rows_y = y.repeat_interleave(count)
    groups = torch.arange(n, device=x.device).repeat_interleave(count)
    init = None if starts is None else starts.reshape(n * count, *x.shape[1:])
    found, success = _run(component, model, rows_x, rows_y, targets.reshape(-1), groups, init, apgd, fab)
    success = success.reshape(n, count)
    first = success.to(torch.uint8).argmax(dim=1)  # the best-ranked target that broke the sample
    chosen = found.reshape(n, count, *x.shape[1:])[torch.arange(n, device=x.device), first]
    broken = success.any(dim=1).reshape((-1,) + (1,) * (x.dim() - 1))
    return torch.where(broken, chosen, x)


def _run(
    component: str,
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    targets: Tensor,
    groups: Tensor | None,
    init: Tensor | None,
    apgd: dict[str, Any],
    fab: dict[str, Any],
) -> tuple[Tensor, Tensor]:
    """One targeted run per row: (candidates, success within eps)."""
    if component == "apgd-t":
        found, success, _ = apgd_search(
            model, x, targeted_dlr_objective(y, targets), misclassified(y),
            init=init, groups=groups, **apgd,
        )  # fmt: skip
        return found, success
    eps = apgd["eps"]
    found, size = fab_restarts(
        model, x, Linearizer(model, apgd["norm"]).pair(targets, y), misclassified(y), eps=eps,
        restart_radius=eps, restarts=1, generator=apgd["generator"], norm=apgd["norm"],
        steps=apgd["steps"], input_range=apgd["input_range"], groups=groups, **fab,
    )  # fmt: skip
    return found, size <= eps
