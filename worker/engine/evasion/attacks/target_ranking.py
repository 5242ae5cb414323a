"""Target classes ranked for targeted attacks: by clean logits, or by MALT's linear distance estimate.

AutoAttack's targeted components take the 2nd, 3rd, ... most likely classes of the clean logits.
MALT (Melamed, Yehudai and Shamir, "MALT Powers Up Adversarial Attacks", 2024, arXiv 2407.02240)
ranks them instead by how close the decision boundary towards each class is in a linear model of
the classifier at the clean input ("mesoscopic almost linearity"): for the true class y and a
candidate t, the first-order distance to the boundary z_t = z_y is

    d_t = (z_y - z_t) / ||grad_x (z_y - z_t)||_dual      (dual of linf: l1; of l2: l2)

and the classes with the smallest d_t come first. Confidence alone ignores how steep the margin is;
d_t is the step a linear model needs, which is what a targeted attack inside a small ball has to make.
"""

import torch
from torch import Tensor, nn

from worker.engine.evasion.attacks.norms import Norm

_TINY = 1e-12


def rank_by_logits(clean_logits: Tensor, y: Tensor, count: int) -> Tensor:
    """The `count` most likely classes other than y, most likely first ([N, count])."""
    masked = clean_logits.detach().clone()
    masked[torch.arange(len(y), device=y.device), y] = -torch.inf
    return masked.argsort(dim=1, descending=True)[:, :count]


def linear_distances(model: nn.Module, x: Tensor, y: Tensor, norm: Norm) -> Tensor:
    """MALT's d_t for every class ([N, K]; inf at the true class): one forward and K backward passes."""
    return _distances_and_logits(model, x, y, norm)[0]


def _distances_and_logits(model: nn.Module, x: Tensor, y: Tensor, norm: Norm) -> tuple[Tensor, Tensor]:
    """MALT's d_t for every class and the clean logits."""
    x_in = x.detach().requires_grad_(True)
    with torch.enable_grad():
        logits = model(x_in)
    z = logits.detach()
    n, classes = z.shape
    index = torch.arange(n, device=z.device)
    margins = z[index, y][:, None] - z
    distances = torch.full_like(z, torch.inf)
    eye = torch.eye(classes, device=z.device, dtype=z.dtype)
    for k in range(classes):
        (grad,) = torch.autograd.grad(logits, x_in, eye[y] - eye[k], retain_graph=k < classes - 1)
        flat = grad.reshape(n, -1)
        dual = flat.abs().sum(dim=1) if norm == "linf" else flat.norm(dim=1)
        distances[:, k] = torch.where(y == k, torch.inf, margins[:, k] / (dual + _TINY))
    return distances, z


def rank_by_linear_distance(model: nn.Module, x: Tensor, y: Tensor, norm: Norm, count: int) -> Tensor:
    """The `count` classes with the smallest MALT distance, closest first ([N, count])."""
    return linear_distances(model, x, y, norm).argsort(dim=1)[:, :count]


def malt_after_most_likely(model: nn.Module, x: Tensor, y: Tensor, norm: Norm, count: int) -> Tensor:
    """The most likely other class of the clean logits first, then MALT's closest of the rest ([N, count]).

    The clean logits' runner-up is the target AutoAttack's standard version tries first and the one
    that breaks most of the samples that fall; MALT's distance can rank it lower on a steep margin.
    """
    distances, logits = _distances_and_logits(model, x, y, norm)
    first = rank_by_logits(logits, y, 1)
    return distances.scatter(1, first, -torch.inf).argsort(dim=1)[:, :count]
