"""Differentiable random placement of a square patch: rotation, scale, location and brightness.

The patch is pasted into each image by one affine_grid/grid_sample pass (bilinear, zero padding), so
gradients flow from the patched images back to the patch pixels. Every random draw comes from the
torch.Generator passed in, on the device of the images.
"""

import math
from dataclasses import dataclass

import torch
from torch import Tensor
from torch.nn import functional

from worker.engine.evasion.attacks.norms import clamp_range


@dataclass(frozen=True)
class PatchTransforms:
    """One drawn transformation per image.

    angle: rotation of the patch about its centre, radians [B]. scale: factor on the patch side [B].
    center: patch centre in pixel coordinates (x, y) of the image, [B, 2] (pixel (0, 0) spans
    [0, 1] x [0, 1]). brightness: additive shift of the patch pixels as a fraction of the input
    range width [B].
    """

    angle: Tensor
    scale: Tensor
    center: Tensor
    brightness: Tensor

    def __len__(self) -> int:
        """Number of drawn transformations."""
        return int(self.angle.shape[0])


@dataclass(frozen=True)
class TransformDistribution:
    """The distribution of physical conditions a patch must survive (expectation over transformation).

    rotation_deg: angle uniform in [-rotation_deg, rotation_deg] degrees.
    scale_range: (low, high): the patch side is multiplied by a factor uniform in [low, high].
    max_translation: placement. Per axis the patch centre is uniform over the positions where the
        scaled (unrotated) patch lies inside the image, widened on each side by max_translation
        times the image side; the part of a patch pushed past the border is cut off. 0 keeps the
        whole unrotated patch inside the image.
    brightness: additive shift uniform in [-brightness, brightness] times the input range width,
        applied to the patch pixels (then clamped into the input range), as printing and lighting
        would.
    The values and their limits come from the patch attack's spec (`PatchParams`), which validates them.
    """

    rotation_deg: float
    scale_range: tuple[float, float]
    max_translation: float
    brightness: float

    def sample(
        self,
        n: int,
        *,
        patch_side: int,
        image_hw: tuple[int, int],
        generator: torch.Generator,
        device: torch.device,
    ) -> PatchTransforms:
        """Draw n transformations for a patch of patch_side pixels on images of size image_hw."""
        uniform = torch.rand((n, 5), generator=generator, device=device, dtype=torch.float32)
        signed = 2.0 * uniform - 1.0
        angle = signed[:, 0] * math.radians(self.rotation_deg)
        low, high = self.scale_range
        scale = low + (high - low) * uniform[:, 1]
        side = patch_side * scale
        height, width = image_hw
        extent = torch.tensor([float(width), float(height)], device=device)
        # Half the free room per axis, plus the allowed overshoot past the border.
        reach = ((extent[None] - side[:, None]).clamp_min(0.0) / 2.0) + self.max_translation * extent[None]
        center = extent[None] / 2.0 + signed[:, 2:4] * reach
        brightness = signed[:, 4] * self.brightness
        return PatchTransforms(angle=angle, scale=scale, center=center, brightness=brightness)


def _sampling_grid(transforms: PatchTransforms, patch_side: int, shape: torch.Size) -> Tensor:
    """Grid mapping each output pixel to normalised patch coordinates ([-1, 1] spans the patch)."""
    _, _, height, width = shape
    cos, sin = transforms.angle.cos(), transforms.angle.sin()
    half = 2.0 / (patch_side * transforms.scale)  # pixels -> patch units
    # Offset of an output pixel from the patch centre, affine in the output's normalised (u, v).
    off_x = width / 2.0 - transforms.center[:, 0]
    off_y = height / 2.0 - transforms.center[:, 1]
    row_x = torch.stack([cos * width / 2.0, sin * height / 2.0, cos * off_x + sin * off_y], dim=1)
    row_y = torch.stack([-sin * width / 2.0, cos * height / 2.0, -sin * off_x + cos * off_y], dim=1)
    theta = torch.stack([row_x, row_y], dim=1) * half[:, None, None]
    return functional.affine_grid(theta, list(shape), align_corners=False)


def apply_patch(
    x: Tensor, patch: Tensor, transforms: PatchTransforms, input_range: tuple[float, float]
) -> Tensor:
    """Paste the patch [C, s, s] into each image of x [B, C, H, W] under its transformation.

    Differentiable in the patch (and in x). The result is a per-pixel convex combination of the
    image and the (brightness-shifted, clamped) patch, so it stays inside the input range.
    """
    if patch.dim() != 3 or patch.shape[1] != patch.shape[2] or patch.shape[0] != x.shape[1]:
        raise ValueError(f"patch must be [C, s, s] with C={x.shape[1]}, got {tuple(patch.shape)}")
    if len(transforms) != x.shape[0]:
        raise ValueError("need one transformation per image")
    low, high = input_range
    batch, channels = x.shape[0], x.shape[1]
    shift = transforms.brightness[:, None, None, None] * (high - low)
    shifted = clamp_range(patch[None] + shift, input_range)
    ones = shifted.new_ones((batch, 1, patch.shape[1], patch.shape[2]))
    grid = _sampling_grid(transforms, patch.shape[1], torch.Size((batch, channels + 1, *x.shape[2:])))
    # With zero padding the sampled patch is pre-multiplied by the sampled coverage.
    sampled = functional.grid_sample(
        torch.cat([shifted, ones], dim=1), grid.to(x.dtype), mode="bilinear", align_corners=False
    )
    painted, coverage = sampled[:, :channels], sampled[:, channels:]
    return clamp_range(x * (1.0 - coverage) + painted, input_range)
