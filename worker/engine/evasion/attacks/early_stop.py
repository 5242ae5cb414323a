"""Early exit of APGD runs that cannot change any more: the exact fixed points of the linf iteration.

PGD with cycle detection (arXiv 2503.19347) stops an iteration once it revisits a state: from there
on it repeats itself, so the estimate is identical. APGD's state is the iterate, the previous
iterate (momentum), the best point, the gradients at both and the step size; its only other move is
a checkpoint, which halves the step and resets the iterate to the best point. A linf sample is at a
fixed point when the iterate equals the previous one and the best point, with the same gradient,
and the signed step from it projects back onto it: every coordinate either has a zero gradient or
is pinned at the eps ball or the input range in the direction it is pushed. A smaller step leaves
such a point fixed too, and a reset goes to the same point, so the rest of the run would repeat it:
the sample can leave with exactly the output the full run would give it (a cycle of length one;
longer cycles are rarer under APGD's shrinking steps and are not looked for).
"""

from torch import Tensor

from worker.engine.evasion.attacks.norms import project


def at_fixed_point(
    x: Tensor,
    x_adv: Tensor,
    x_prev: Tensor,
    x_best: Tensor,
    grad: Tensor,
    grad_best: Tensor,
    step: Tensor,
    eps: float,
    input_range: tuple[float, float],
) -> Tensor:
    """Per sample: whether the linf APGD iteration from this state can never move again."""
    same = (x_adv == x_prev) & (x_adv == x_best) & (grad == grad_best)
    candidate = same.flatten(1).all(dim=1)
    if not bool(candidate.any()):
        return candidate
    view = (-1,) + (1,) * (x.dim() - 1)
    stepped = project(x, x_adv + step.reshape(view) * grad.sign(), eps, "linf", input_range)
    return candidate & (stepped == x_adv).flatten(1).all(dim=1)
