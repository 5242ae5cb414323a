"""FAB's projection: the smallest linf or l2 move onto a hyperplane that stays inside the input box.

For points t [N, D], hyperplanes {z : <w, z> = <w, t> - c} given by w [N, D] and the offsets
c = <w, t> - b [N], and the box [low, high]^D, `project_onto_hyperplane_box` returns d minimising
||d||_p subject to <w, t + d> = b and low <= t + d <= high (Croce & Hein, ICML 2020, section 3).
Where no point of the box reaches the hyperplane, it returns the move to the box corner that gets
closest to it (every coordinate pushed to its bound), as the reference implementation does.

Both norms reduce to one monotone one-dimensional search. After flipping w so that c >= 0, the
move must lower <w, .> by c; each coordinate moves against the sign of its weight w_i, by at most
its room r_i to the box bound in that direction. For a scalar lambda the best move is
    linf: d_i = -sign(w_i) * min(lambda, r_i)          (lambda is the linf radius)
    l2:   d_i = -sign(w_i) * min(lambda * |w_i|, r_i)  (the KKT form of the l2 projection)
and the decrease it achieves, sum_i |w_i| * |d_i|, is piecewise linear, continuous and increasing in
lambda with breakpoints r_i (linf) or r_i / |w_i| (l2). Sorting the breakpoints gives the decrease
at every breakpoint by cumulative sums; the segment where it first reaches c gives lambda in closed
form. Everything is batched; the cost is one sort per row.
"""

import torch
from torch import Tensor

from worker.engine.evasion.attacks.norms import Norm

_TINY = 1e-12


def project_onto_hyperplane_box(
    t: Tensor, w: Tensor, c: Tensor, *, low: float, high: float, norm: Norm
) -> Tensor:
    """Smallest move d (rows of [N, D]) from t onto <w, t + d> = <w, t> - c inside [low, high]."""
    flip = c < 0
    w = torch.where(flip[:, None], -w, w)
    c = c.abs()
    weight = w.abs()
    direction = -torch.sign(w)
    room = torch.where(w > 0, t - low, high - t).clamp_min(0.0)
    if norm == "linf":
        breakpoints, slope = room, weight
    else:
        breakpoints = torch.where(weight > 0, room / weight.clamp_min(_TINY), torch.zeros_like(room))
        slope = weight * weight
    order = breakpoints.argsort(dim=1)
    sorted_breaks = breakpoints.gather(1, order)
    sorted_slope = slope.gather(1, order)
    saturated = (weight * room).gather(1, order)
    # Decrease at breakpoint k: saturated coordinates before k plus the slope of the rest times lambda.
    before = saturated.cumsum(dim=1) - saturated
    rest = sorted_slope.flip(1).cumsum(dim=1).flip(1)
    reach = before + sorted_breaks * rest
    segment = (reach < c[:, None]).sum(dim=1, keepdim=True)
    feasible = segment[:, 0] < t.shape[1]
    index = segment.clamp_max(t.shape[1] - 1)
    lower = torch.where(
        segment > 0, sorted_breaks.gather(1, (index - 1).clamp_min(0)), torch.zeros_like(c[:, None])
    )
    lam = (c[:, None] - before.gather(1, index)) / rest.gather(1, index).clamp_min(_TINY)
    lam = torch.maximum(lam, lower).clamp_min(0.0)
    size = torch.minimum(lam if norm == "linf" else lam * weight, room)
    size = torch.where(feasible[:, None], size, room)
    return direction * size
