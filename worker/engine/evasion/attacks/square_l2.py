"""The l2 parts of the Square Attack: centred-square patterns, the bump initialisation and the update.

Kept apart from `square.py` so each file stays short; `SquareAttack` is the only caller.
"""

import math
from functools import lru_cache

import torch
from torch import Tensor

from worker.engine.evasion.attacks.norms import clamp_range, normalize_l2, perturbation_norm

# Guards the per-channel window normalisations against zero windows.
_TINY = 1e-12


@lru_cache(maxsize=64)
def _centred_rectangle(rows: int, cols: int) -> Tensor:
    """Unit-norm bump on a rows x cols rectangle: sum of 1/(k+1)^2 over nested rectangles around the centre.

    Rectangle k covers the cells within k rows and k columns of the centre cell
    (rows // 2, cols // 2), for k = 0 .. max(rows // 2, cols // 2); every cell thus gets
    sum_{k >= m} 1/(k+1)^2 where m is its Chebyshev distance to the centre.
    """
    if rows == 0 or cols == 0:
        return torch.zeros(rows, cols, dtype=torch.float64)
    count = max(rows // 2, cols // 2) + 1
    weights = 1.0 / torch.arange(1, count + 1, dtype=torch.float64) ** 2
    tail = weights.flip(0).cumsum(0).flip(0)  # tail[m] = sum_{k >= m} weights[k]
    row_gap = (torch.arange(rows) - rows // 2).abs()
    col_gap = (torch.arange(cols) - cols // 2).abs()
    pattern = tail[torch.maximum(row_gap[:, None], col_gap[None, :])]
    return pattern / pattern.norm()


def square_pattern(side: int, generator: torch.Generator) -> Tensor:
    """The paper's s x s update pattern: a positive bump on the top half, a negative one below, unit norm.

    With probability 1/2 (one draw from the generator) the pattern is transposed.
    """
    top = side // 2
    pattern = torch.cat([_centred_rectangle(top, side), -_centred_rectangle(side - top, side)], dim=0)
    pattern = pattern / pattern.norm()
    flip = torch.rand(1, generator=generator, device=generator.device).item() > 0.5
    return pattern.t() if flip else pattern


def random_signs(shape: tuple[int, ...], like: Tensor, generator: torch.Generator) -> Tensor:
    """Independent +1/-1 draws of the given shape, on like's device and dtype."""
    bits = torch.randint(0, 2, shape, generator=generator, device=generator.device)
    return (2 * bits - 1).to(device=like.device, dtype=like.dtype)


def l2_init(x: Tensor, eps: float, input_range: tuple[float, float], generator: torch.Generator) -> Tensor:
    """Initial point: a grid of square bumps with random sign per sample and channel, scaled to norm eps.

    The tile side is h // 5 (at least 1); tiles start (h - 5 * side) // 2 pixels from the top-left
    corner, h // side rows and w // side columns of them, cropped at the image border.
    """
    n, channels, height, width = x.shape
    side = max(min(height, width) // 5, 1)
    offset = max((min(height, width) - 5 * side) // 2, 0)
    delta = torch.zeros_like(x)
    for row in range(offset, offset + (height // side) * side, side):
        for col in range(offset, offset + (width // side) * side, side):
            pattern = square_pattern(side, generator).to(device=x.device, dtype=x.dtype)
            signs = random_signs((n, channels, 1, 1), x, generator)
            rows, cols = min(side, height - row), min(side, width - col)
            if rows > 0 and cols > 0:
                delta[:, :, row : row + rows, col : col + cols] += signs * pattern[:rows, :cols]
    return clamp_range(x + normalize_l2(delta) * eps, input_range)


def l2_side(p: float, height: int, width: int) -> int:
    """Window side for the l2 update: round(sqrt(p * h * w)), at least 3, made odd, at most min(h, w)."""
    side = max(int(round(math.sqrt(p * height * width))), 3)
    if side % 2 == 0:
        side += 1
    return min(side, height, width)


def l2_proposal(
    x: Tensor,
    x_best: Tensor,
    signs: Tensor,
    eps: float,
    p: float,
    input_range: tuple[float, float],
    generator: torch.Generator,
) -> Tensor:
    """One l2 Square proposal for the active samples (windows shared by the batch, as in the reference).

    Window 1 gets the centred-square pattern (random sign per sample and channel) added to its
    normalised old content; window 2 is emptied and its mass, with the unused budget
    eps^2 - ||delta||^2 spread over the channels, moves into window 1. The whole perturbation is
    then rescaled to norm eps and clamped into the input range. signs has shape [A, C, 1, 1].
    """
    _, channels, height, width = x.shape
    delta = x_best - x
    side = l2_side(p, height, width)
    corners = torch.randint(0, height - side + 1, (2,), generator=generator, device=generator.device).tolist()
    corners += torch.randint(0, width - side + 1, (2,), generator=generator, device=generator.device).tolist()
    r1, r2, c1, c2 = corners
    window_1 = (slice(None), slice(None), slice(r1, r1 + side), slice(c1, c1 + side))
    window_2 = (slice(None), slice(None), slice(r2, r2 + side), slice(c2, c2 + side))
    union = torch.zeros(1, 1, height, width, device=x.device, dtype=torch.bool)
    union[window_1] = True
    union[window_2] = True

    norm_window_1 = delta[window_1].square().sum(dim=(2, 3), keepdim=True).sqrt()
    norm_union = (delta * union).square().sum(dim=(2, 3), keepdim=True).sqrt()
    norm_image = perturbation_norm(delta, "l2").reshape(-1, 1, 1, 1)
    pattern = square_pattern(side, generator).to(device=x.device, dtype=x.dtype)
    update = pattern * signs + delta[window_1] / (1e-10 + norm_window_1)
    mass = ((eps**2 - norm_image.square()).clamp_min(0.0) / channels + norm_union.square()).sqrt()
    update = update / update.square().sum(dim=(2, 3), keepdim=True).sqrt().clamp_min(_TINY) * mass
    delta = delta.clone()
    delta[window_2] = 0.0
    delta[window_1] = update
    return clamp_range(x + normalize_l2(delta) * eps, input_range)
