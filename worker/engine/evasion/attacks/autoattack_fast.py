"""The pieces of AutoAttack's `fast` version: MALT-ranked targets in one batched targeted APGD run.

The fast version keeps AutoAttack's cheap, strong components and drops the expensive ones that
rarely add a sample on models without gradient masking (FAB-T and Square: fra31/auto-attack issues
#18 and #45; the `fast_vs_standard` check measures what that costs on the job's own data):
    1. APGD-CE, as in the standard version (100 steps; a sample leaves when broken or stuck).
    2. APGD-T on FAST_TARGETS target classes: the clean logits' most likely other class (the
       standard version's first target), then the 3 others that MALT's linear distance estimate
       (Melamed et al. 2024, see target_ranking) ranks closest, instead of the 9 most likely
       classes (the runner-up alone was missing on the digits CNN at eps 0.2, where MALT ranked
       a steep runner-up 4th and only that target broke the sample): every (sample, target)
       pair runs in one batch, each from its own random start, so a sample's targets cost one run's
       iterations of wall time rather than a loop of them (A3, Liu et al. CVPR 2022, spends its
       iterations the same way: only on samples still standing, split over their likely targets).
"""

from typing import Any

import torch
from torch import Tensor, nn

from app.schemas.evasion import AutoAttackParams
from worker.engine.evasion.attacks.apgd import apgd_search
from worker.engine.evasion.attacks.dlr import misclassified, targeted_dlr_objective
from worker.engine.evasion.attacks.norms import Norm
from worker.engine.evasion.attacks.target_ranking import malt_after_most_likely

FAST_TARGETS = AutoAttackParams.fast_targets
FAST_COMPONENTS = ("apgd-ce", "apgd-t")


def fast_targets(n_target_classes: int, classes: int) -> int:
    """Targets the fast version runs per sample."""
    return max(1, min(FAST_TARGETS, n_target_classes, classes - 1))


def ranked_targeted_apgd(
    model: nn.Module, x: Tensor, y: Tensor, *, count: int, norm: Norm, apgd: dict[str, Any]
) -> tuple[Tensor, Tensor]:
    """Targeted APGD (DLR) on the `count` closest targets at once; returns (candidates, targets run).

    A sample's candidate is its adversarial for the best-ranked target that succeeded, x elsewhere.
    """
    targets = malt_after_most_likely(model, x, y, norm, count)
    n = len(x)
    rows_x = x.repeat_interleave(count, dim=0)
    rows_y = y.repeat_interleave(count)
    rows_t = targets.reshape(-1)
    found, success, _ = apgd_search(
        model,
        rows_x,
        targeted_dlr_objective(rows_y, rows_t),
        misclassified(rows_y),
        **apgd,
    )
    success = success.reshape(n, count)
    first = success.to(torch.uint8).argmax(dim=1)
    chosen = found.reshape(n, count, *x.shape[1:])[torch.arange(n, device=x.device), first]
    broken = success.any(dim=1).reshape((-1,) + (1,) * (x.dim() - 1))
    return torch.where(broken, chosen, x), targets


class PassCounter(nn.Module):
    """Counts the samples the wrapped model is run on (one per sample per forward pass)."""

    def __init__(self, model: nn.Module) -> None:
        """Wrap model; the count starts at zero."""
        super().__init__()
        self.model, self.count = model, 0

    def forward(self, x: Tensor) -> Tensor:
        """Run the model and count the samples."""
        self.count += len(x)
        return self.model(x)  # type: ignore[no-any-return]
