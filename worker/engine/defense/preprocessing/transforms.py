"""Input transforms that a preprocessing defense puts in front of a model, and their registry.

Each transform acts on a batch in the declared input range and returns one in the same range and
shape. It is built from its typed spec (app.schemas.defense), which holds its parameters and the facts
the adaptive evaluation reads: `differentiable` (autograd's own gradient is meaningful; False for
quantizers, whose gradient is zero almost everywhere, which is what BPDA replaces), `randomized` (a fresh
random draw per call, which is what EOT averages over), `needs_image` and `channels`.
"""

import math
from typing import Any, ClassVar, Generic, TypeVar

import torch
from torch import Tensor
from torch.nn import functional

from app.schemas.defense_transforms import (
    BitDepthParams,
    GaussianNoiseParams,
    GaussianParams,
    JpegParams,
    MedianParams,
    RandomResizePadParams,
    TransformBase,
    TransformParams,
)
from worker.engine.defense.preprocessing.jpeg import jpeg_roundtrip

InputRange = tuple[float, float]
P = TypeVar("P", bound=TransformBase)


class Transform(Generic[P]):
    """Base class: `apply` runs the real transform; `approximate` is BPDA's differentiable stand-in."""

    spec_type: ClassVar[type[TransformBase]]

    def __init__(self, spec: P) -> None:
        self.spec = spec

    @property
    def name(self) -> str:
        """The transform's enumerated name."""
        return self.spec.name

    @property
    def differentiable(self) -> bool:
        """Whether autograd's own gradient is meaningful (False: BPDA replaces it)."""
        return type(self.spec).differentiable

    @property
    def randomized(self) -> bool:
        """Whether every call draws afresh (EOT averages over draws)."""
        return type(self.spec).randomized

    def check_input(self, sample_shape: tuple[int, ...], input_range: InputRange) -> None:
        """Raise ValueError when the transform does not fit inputs of this shape and range."""
        facts = type(self.spec)
        if facts.needs_image and len(sample_shape) != 3:
            raise ValueError(
                f"{self.name} needs image inputs [C, H, W], got a sample shape {list(sample_shape)}"
            )
        if facts.channels is not None and sample_shape[0] not in facts.channels:
            allowed = " or ".join(str(c) for c in facts.channels)
            raise ValueError(f"{self.name} needs {allowed} channels, got {sample_shape[0]}")
        if not all(math.isfinite(v) for v in input_range):
            raise ValueError(f"{self.name} needs a finite input range, got {list(input_range)}")

    def apply(self, x: Tensor, input_range: InputRange, generator: torch.Generator | None) -> Tensor:
        """The real transform of a batch (a randomized one draws from generator: `apply_drawn` of `draw`)."""
        if self.randomized:
            return self.apply_drawn(x, input_range, self.draw(len(x), x, generator))
        raise NotImplementedError

    def draw(self, rows: int, like: Tensor, generator: torch.Generator | None) -> Tensor:
        """A randomized transform's random draw for `rows` samples shaped like `like`'s, from generator."""
        raise NotImplementedError

    def apply_drawn(self, x: Tensor, input_range: InputRange, drawn: Tensor) -> Tensor:
        """A randomized transform of a batch with its draw given (one row of `drawn` per sample)."""
        raise NotImplementedError

    def approximate(self, x: Tensor, input_range: InputRange) -> Tensor:
        """BPDA's differentiable approximation of the transform (identity unless a subclass knows better)."""
        return x


def _unit(x: Tensor, input_range: InputRange) -> Tensor:
    """Inputs rescaled from the input range to [0, 1]."""
    low, high = input_range
    return (x - low) / (high - low)


def _from_unit(u: Tensor, input_range: InputRange) -> Tensor:
    """Inputs rescaled from [0, 1] back to the input range."""
    low, high = input_range
    return u * (high - low) + low


class Jpeg(Transform[JpegParams]):
    """JPEG compression (Dziugaite et al. 2016; Das et al. 2017) through a real codec (Pillow/libjpeg).

    Parameters: quality 1..95 (default 75). Needs grayscale or RGB images. Not differentiable: BPDA
    attacks it with the identity on the backward pass (Athalye et al. 2018).
    """

    spec_type = JpegParams

    def apply(self, x: Tensor, input_range: InputRange, generator: torch.Generator | None) -> Tensor:
        """Encode and decode every sample as an 8-bit JPEG."""
        return _from_unit(jpeg_roundtrip(_unit(x, input_range), self.spec.quality), input_range)


class BitDepth(Transform[BitDepthParams]):
    """Bit-depth reduction (feature squeezing, Xu et al. 2018): `bits` 1..8 (default 4) per value.

    Not differentiable (a quantizer): BPDA uses the identity on the backward pass.
    """

    spec_type = BitDepthParams

    def apply(self, x: Tensor, input_range: InputRange, generator: torch.Generator | None) -> Tensor:
        """Round to 2**bits levels over the input range."""
        levels = 2**self.spec.bits - 1
        return _from_unit(torch.round(_unit(x, input_range).clamp(0, 1) * levels) / levels, input_range)


def _windows(x: Tensor, size: int) -> Tensor:
    """Every size x size window of a reflect-padded image batch, as [B, C, H, W, size * size]."""
    pad = size // 2
    if pad >= min(x.shape[-2:]):
        raise ValueError(f"a {size}x{size} filter is too large for {x.shape[-2]}x{x.shape[-1]} images")
    padded = functional.pad(x, (pad, pad, pad, pad), mode="reflect")
    patches = padded.unfold(2, size, 1).unfold(3, size, 1)
    return patches.reshape(*x.shape, size * size)


class Median(Transform[MedianParams]):
    """Median filter denoising (feature squeezing, Xu et al. 2018) over size x size windows (odd, default 3).

    Differentiable almost everywhere (the gradient flows to each window's median element).
    """

    spec_type = MedianParams

    def check_input(self, sample_shape: tuple[int, ...], input_range: InputRange) -> None:
        """Also refuse windows larger than the image."""
        super().check_input(sample_shape, input_range)
        if self.spec.size // 2 >= min(sample_shape[1:]):
            raise ValueError(
                f"a {self.spec.size}x{self.spec.size} median does not fit {list(sample_shape[1:])} images"
            )

    def apply(self, x: Tensor, input_range: InputRange, generator: torch.Generator | None) -> Tensor:
        """Per-pixel median of its window."""
        return _windows(x, self.spec.size).median(dim=-1).values


class Gaussian(Transform[GaussianParams]):
    """Gaussian blur denoising with standard deviation `sigma` in pixels (default 1.0), radius 2 sigma.

    Differentiable (a convolution).
    """

    spec_type = GaussianParams

    def apply(self, x: Tensor, input_range: InputRange, generator: torch.Generator | None) -> Tensor:
        """Separable blur with reflect padding (radius capped to fit the image)."""
        radius = max(1, min(math.ceil(2 * self.spec.sigma), min(x.shape[-2:]) - 1))
        offsets = torch.arange(-radius, radius + 1, dtype=x.dtype, device=x.device)
        kernel = torch.exp(-0.5 * (offsets / self.spec.sigma) ** 2)
        kernel = kernel / kernel.sum()
        channels = x.shape[1]
        padded = functional.pad(x, (radius, radius, radius, radius), mode="reflect")
        rows = functional.conv2d(padded, kernel.view(1, 1, 1, -1).repeat(channels, 1, 1, 1), groups=channels)
        return functional.conv2d(rows, kernel.view(1, 1, -1, 1).repeat(channels, 1, 1, 1), groups=channels)


class RandomResizePad(Transform[RandomResizePadParams]):
    """Random resizing and padding (Xie et al. 2018), at the model's input size.

    Each sample is resized (bilinear) to a random height in [ceil(min_scale * H), H] and, drawn
    independently, a random width in [ceil(min_scale * W), W], and placed at a random offset on a canvas
    of the input size filled with the range's low end.
    Parameters: min_scale in [0.5, 1) (default 0.8; the paper's 299/331 is 0.9). Differentiable but
    randomized: EOT averages over draws.
    """

    spec_type = RandomResizePadParams

    def draw(self, rows: int, like: Tensor, generator: torch.Generator | None) -> Tensor:
        """Per sample its drawn height, top offset, width and left offset ([rows, 4], long)."""
        gen = {"generator": generator, "device": like.device}
        columns = []
        for side in like.shape[-2:]:
            size = torch.randint(math.ceil(self.spec.min_scale * side), side + 1, (rows,), **gen)
            offset = (torch.rand(rows, **gen) * (side - size + 1)).long().clamp_max(side - size)
            columns += [size, offset]
        return torch.stack(columns, dim=1)

    def apply_drawn(self, x: Tensor, input_range: InputRange, drawn: Tensor) -> Tensor:
        """Resize each sample to its drawn size and pad it at its drawn offset (one bilinear resampling)."""
        batch, _, height, width = x.shape
        grids = []
        for side, size, offset in ((height, drawn[:, 0], drawn[:, 1]), (width, drawn[:, 2], drawn[:, 3])):
            inner = torch.arange(side, device=x.device)[None, :] - offset[:, None]
            # Pixel u of the resized side maps to normalized input coordinate 2 (u + 0.5) / size - 1
            # (bilinear, align_corners=False); pixels off the resized image sample outside (-> padding).
            coordinate = 2.0 * (inner + 0.5) / size[:, None] - 1.0
            grids.append(
                torch.where(
                    (inner >= 0) & (inner < size[:, None]), coordinate, torch.full_like(coordinate, 3.0)
                )
            )
        rows, columns = grids
        grid = torch.stack(
            [columns[:, None, :].expand(batch, height, width), rows[:, :, None].expand(batch, height, width)],
            dim=-1,
        ).to(x.dtype)
        low = float(input_range[0])
        shifted = functional.grid_sample(
            x - low, grid, mode="bilinear", padding_mode="zeros", align_corners=False
        )
        return shifted + low


class GaussianNoise(Transform[GaussianNoiseParams]):
    """Additive Gaussian noise of standard deviation `sigma` in input units (default 0.1), unclamped.

    Randomized: EOT averages over draws. (Randomized smoothing votes over many such draws.)
    """

    spec_type = GaussianNoiseParams

    def check_input(self, sample_shape: tuple[int, ...], input_range: InputRange) -> None:
        """Sigma must not exceed the width of the input range."""
        super().check_input(sample_shape, input_range)
        if self.spec.sigma > input_range[1] - input_range[0]:
            raise ValueError(
                f"sigma {self.spec.sigma} exceeds the input range's width {input_range[1] - input_range[0]}"
            )

    def draw(self, rows: int, like: Tensor, generator: torch.Generator | None) -> Tensor:
        """Standard normal noise for `rows` samples."""
        return torch.randn((rows, *like.shape[1:]), generator=generator, device=like.device, dtype=like.dtype)

    def apply_drawn(self, x: Tensor, input_range: InputRange, drawn: Tensor) -> Tensor:
        """x plus sigma times the drawn noise."""
        return x + self.spec.sigma * drawn


TRANSFORMS: dict[type[TransformBase], type[Transform[Any]]] = {
    cls.spec_type: cls for cls in (Jpeg, Median, Gaussian, BitDepth, RandomResizePad, GaussianNoise)
}


def build_transform(spec: TransformParams) -> Transform[Any]:
    """The engine transform of a typed spec."""
    return TRANSFORMS[type(spec)](spec)
