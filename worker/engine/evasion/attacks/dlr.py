"""The Difference of Logits Ratio loss (Croce & Hein, ICML 2020), untargeted and targeted.

Both losses are to be maximised by the attacker and are invariant to shifting and rescaling the
logits, which is what makes them robust to the gradient-scaling tricks that break cross-entropy.
With z the logits of one sample sorted decreasingly as z_pi1 >= z_pi2 >= ...:

    DLR(z, y)            = -(z_y - max_{i != y} z_i) / (z_pi1 - z_pi3 + 1e-12)
    DLR-targeted(z, y, t) = -(z_y - z_t) / (z_pi1 - (z_pi3 + z_pi4) / 2 + 1e-12)

The untargeted loss needs at least 3 classes, the targeted one at least 4.

Also here: the per-sample objectives and success tests that APGD, FAB and AutoAttack share, as
closures over the labels of a batch called with (logits, rows) for a subset of its rows.
"""

from collections.abc import Callable

import torch
from torch import Tensor
from torch.nn import functional

# Keeps the ratio finite when the top logits coincide (the paper's constant).
DLR_TINY = 1e-12
MIN_CLASSES_DLR = 3
MIN_CLASSES_TARGETED_DLR = 4


def _check_classes(logits: Tensor, needed: int, loss: str) -> None:
    """Raise ValueError when the logits have too few classes for the loss."""
    if logits.dim() != 2 or logits.shape[1] < needed:
        raise ValueError(f"the {loss} loss needs logits [batch, classes] with at least {needed} classes")


def dlr_loss(logits: Tensor, y: Tensor) -> Tensor:
    """Per-sample untargeted DLR loss of logits [B, K] for true labels y [B]."""
    _check_classes(logits, MIN_CLASSES_DLR, "DLR")
    ordered, order = logits.sort(dim=1, descending=True)
    z_y = logits.gather(1, y[:, None]).squeeze(1)
    top_is_y = order[:, 0] == y
    strongest_other = torch.where(top_is_y, ordered[:, 1], ordered[:, 0])
    return -(z_y - strongest_other) / (ordered[:, 0] - ordered[:, 2] + DLR_TINY)


def targeted_dlr_loss(logits: Tensor, y: Tensor, targets: Tensor) -> Tensor:
    """Per-sample targeted DLR loss of logits [B, K] for true labels y and target labels."""
    _check_classes(logits, MIN_CLASSES_TARGETED_DLR, "targeted DLR")
    ordered = logits.sort(dim=1, descending=True).values
    z_y = logits.gather(1, y[:, None]).squeeze(1)
    z_t = logits.gather(1, targets[:, None]).squeeze(1)
    scale = ordered[:, 0] - 0.5 * (ordered[:, 2] + ordered[:, 3]) + DLR_TINY
    return -(z_y - z_t) / scale


# (logits, rows) -> per-sample value; rows index the labels' batch.
Objective = Callable[[Tensor, Tensor], Tensor]
# (logits, rows) -> per-sample success (bool).
SuccessTest = Callable[[Tensor, Tensor], Tensor]


def ce_objective(y: Tensor) -> Objective:
    """Cross-entropy to the true labels (ascended by untargeted attacks)."""
    return lambda logits, rows: functional.cross_entropy(logits, y[rows], reduction="none")


def targeted_ce_objective(targets: Tensor) -> Objective:
    """Minus the cross-entropy to the targets."""
    return lambda logits, rows: -functional.cross_entropy(logits, targets[rows], reduction="none")


def dlr_objective(y: Tensor) -> Objective:
    """The untargeted DLR loss."""
    return lambda logits, rows: dlr_loss(logits, y[rows])


def targeted_dlr_objective(y: Tensor, targets: Tensor) -> Objective:
    """The targeted DLR loss (true labels y, target labels targets)."""
    return lambda logits, rows: targeted_dlr_loss(logits, y[rows], targets[rows])


def misclassified(y: Tensor) -> SuccessTest:
    """Success test of an untargeted attack: the prediction is not the true label."""
    return lambda logits, rows: logits.argmax(dim=1) != y[rows]


def classified_as(targets: Tensor) -> SuccessTest:
    """Success test of a targeted attack: the prediction is the target."""
    return lambda logits, rows: logits.argmax(dim=1) == targets[rows]
