"""Input transforms that a preprocessing defense puts in front of a model, and their registry.

Each transform acts on a batch in the declared input range and returns one in the same range and
shape. Facts used by the adaptive evaluation are class attributes: `differentiable` (autograd's own
gradient is meaningful; False for quantizers, whose gradient is zero almost everywhere, which is
what BPDA replaces), `randomized` (a fresh random draw per call, which is what EOT averages over) and
`needs_image` (the input must be [C, H, W]).
"""

import math
from dataclasses import dataclass, fields
from typing import ClassVar

import torch
from torch import Tensor
from torch.nn import functional

from worker.engine.defense.preprocessing.jpeg import jpeg_roundtrip
from worker.engine.defense.spec import FromSpec, check_range

InputRange = tuple[float, float]


@dataclass(frozen=True)
class Transform(FromSpec):
    """Base class: `apply` runs the real transform; `approximate` is BPDA's differentiable stand-in."""

    name: ClassVar[str]
    differentiable: ClassVar[bool] = True
    randomized: ClassVar[bool] = False
    needs_image: ClassVar[bool] = False
    channels: ClassVar[tuple[int, ...] | None] = None  # allowed channel counts of an image input

    def check_input(self, sample_shape: tuple[int, ...], input_range: InputRange) -> None:
        """Raise ValueError when the transform does not fit inputs of this shape and range."""
        if self.needs_image and len(sample_shape) != 3:
            raise ValueError(
                f"{self.name} needs image inputs [C, H, W], got a sample shape {list(sample_shape)}"
            )
        if self.channels is not None and sample_shape[0] not in self.channels:
            allowed = " or ".join(str(c) for c in self.channels)
            raise ValueError(f"{self.name} needs {allowed} channels, got {sample_shape[0]}")
        if not all(math.isfinite(v) for v in input_range):
            raise ValueError(f"{self.name} needs a finite input range, got {list(input_range)}")

    def apply(self, x: Tensor, input_range: InputRange, generator: torch.Generator | None) -> Tensor:
        """The real transform of a batch."""
        raise NotImplementedError

    def approximate(self, x: Tensor, input_range: InputRange) -> Tensor:
        """BPDA's differentiable approximation of the transform (identity unless a subclass knows better)."""
        return x

    def describe(self) -> dict[str, object]:
        """The transform's spec with defaults resolved, for reports and the defended model's record."""
        return {"name": self.name, **{item.name: getattr(self, item.name) for item in fields(self)}}


def _unit(x: Tensor, input_range: InputRange) -> Tensor:
    """Inputs rescaled from the input range to [0, 1]."""
    low, high = input_range
    return (x - low) / (high - low)


def _from_unit(u: Tensor, input_range: InputRange) -> Tensor:
    """Inputs rescaled from [0, 1] back to the input range."""
    low, high = input_range
    return u * (high - low) + low


@dataclass(frozen=True)
class Jpeg(Transform):
    """JPEG compression (Dziugaite et al. 2016; Das et al. 2017) through a real codec (Pillow/libjpeg).

    Parameters: quality 1..95 (default 75). Needs grayscale or RGB images. Not differentiable: BPDA
    attacks it with the identity on the backward pass (Athalye et al. 2018).
    """

    name: ClassVar[str] = "jpeg"
    differentiable: ClassVar[bool] = False
    needs_image: ClassVar[bool] = True
    channels: ClassVar[tuple[int, ...] | None] = (1, 3)
    quality: int = 75

    def __post_init__(self) -> None:
        """Validate the quality."""
        check_range("quality", self.quality, 1, 95)

    def apply(self, x: Tensor, input_range: InputRange, generator: torch.Generator | None) -> Tensor:
        """Encode and decode every sample as an 8-bit JPEG."""
        return _from_unit(jpeg_roundtrip(_unit(x, input_range), self.quality), input_range)


@dataclass(frozen=True)
class BitDepth(Transform):
    """Bit-depth reduction (feature squeezing, Xu et al. 2018): `bits` 1..8 (default 4) per value.

    Not differentiable (a quantizer): BPDA uses the identity on the backward pass.
    """

    name: ClassVar[str] = "bit_depth"
    differentiable: ClassVar[bool] = False
    bits: int = 4

    def __post_init__(self) -> None:
        """Validate the bit count."""
        check_range("bits", self.bits, 1, 8)

    def apply(self, x: Tensor, input_range: InputRange, generator: torch.Generator | None) -> Tensor:
        """Round to 2**bits levels over the input range."""
        levels = 2**self.bits - 1
        return _from_unit(torch.round(_unit(x, input_range).clamp(0, 1) * levels) / levels, input_range)


def _windows(x: Tensor, size: int) -> Tensor:
    """Every size x size window of a reflect-padded image batch, as [B, C, H, W, size * size]."""
    pad = size // 2
    if pad >= min(x.shape[-2:]):
        raise ValueError(f"a {size}x{size} filter is too large for {x.shape[-2]}x{x.shape[-1]} images")
    padded = functional.pad(x, (pad, pad, pad, pad), mode="reflect")
    patches = padded.unfold(2, size, 1).unfold(3, size, 1)
    return patches.reshape(*x.shape, size * size)


@dataclass(frozen=True)
class Median(Transform):
    """Median filter denoising (feature squeezing, Xu et al. 2018) over size x size windows (odd, default 3).

    Differentiable almost everywhere (the gradient flows to each window's median element).
    """

    name: ClassVar[str] = "median"
    needs_image: ClassVar[bool] = True
    size: int = 3

    def __post_init__(self) -> None:
        """Validate the window size."""
        check_range("size", self.size, 3, 7)
        if self.size % 2 == 0:
            raise ValueError(f"size must be odd, got {self.size}")

    def check_input(self, sample_shape: tuple[int, ...], input_range: InputRange) -> None:
        """Also refuse windows larger than the image."""
        super().check_input(sample_shape, input_range)
        if self.size // 2 >= min(sample_shape[1:]):
            raise ValueError(f"a {self.size}x{self.size} median does not fit {list(sample_shape[1:])} images")

    def apply(self, x: Tensor, input_range: InputRange, generator: torch.Generator | None) -> Tensor:
        """Per-pixel median of its window."""
        return _windows(x, self.size).median(dim=-1).values


@dataclass(frozen=True)
class Gaussian(Transform):
    """Gaussian blur denoising with standard deviation `sigma` in pixels (default 1.0), radius 2 sigma.

    Differentiable (a convolution).
    """

    name: ClassVar[str] = "gaussian"
    needs_image: ClassVar[bool] = True
    sigma: float = 1.0

    def __post_init__(self) -> None:
        """Validate sigma."""
        check_range("sigma", self.sigma, 0.0, 10.0, low_open=True)

    def apply(self, x: Tensor, input_range: InputRange, generator: torch.Generator | None) -> Tensor:
        """Separable blur with reflect padding (radius capped to fit the image)."""
        radius = max(1, min(math.ceil(2 * self.sigma), min(x.shape[-2:]) - 1))
        offsets = torch.arange(-radius, radius + 1, dtype=x.dtype, device=x.device)
        kernel = torch.exp(-0.5 * (offsets / self.sigma) ** 2)
        kernel = kernel / kernel.sum()
        channels = x.shape[1]
        padded = functional.pad(x, (radius, radius, radius, radius), mode="reflect")
        rows = functional.conv2d(padded, kernel.view(1, 1, 1, -1).repeat(channels, 1, 1, 1), groups=channels)
        return functional.conv2d(rows, kernel.view(1, 1, -1, 1).repeat(channels, 1, 1, 1), groups=channels)


@dataclass(frozen=True)
class RandomResizePad(Transform):
    """Random resizing and padding (Xie et al. 2018), at the model's input size.

    Each sample is resized (bilinear) to a random height in [ceil(min_scale * H), H] and, drawn
    independently, a random width in [ceil(min_scale * W), W], and placed at a random offset on a canvas
    of the input size filled with the range's low end.
    Parameters: min_scale in [0.5, 1) (default 0.8; the paper's 299/331 is 0.9). Differentiable but
    randomized: EOT averages over draws.
    """

    name: ClassVar[str] = "random_resize_pad"
    randomized: ClassVar[bool] = True
    needs_image: ClassVar[bool] = True
    min_scale: float = 0.8

    def __post_init__(self) -> None:
        """Validate the scale."""
        check_range("min_scale", self.min_scale, 0.5, 0.99)

    def apply(self, x: Tensor, input_range: InputRange, generator: torch.Generator | None) -> Tensor:
        """Resize each sample to its drawn size and pad it at its drawn offset (one bilinear resampling)."""
        batch, _, height, width = x.shape
        gen = {"generator": generator, "device": x.device}
        low_h, low_w = math.ceil(self.min_scale * height), math.ceil(self.min_scale * width)
        grids = []
        for side, low in ((height, low_h), (width, low_w)):
            size = torch.randint(low, side + 1, (batch,), **gen)
            offset = (torch.rand(batch, **gen) * (side - size + 1)).long().clamp_max(side - size)
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


@dataclass(frozen=True)
class GaussianNoise(Transform):
    """Additive Gaussian noise of standard deviation `sigma` in input units (default 0.1), unclamped.

    Randomized: EOT averages over draws. (Randomized smoothing votes over many such draws.)
    """

    name: ClassVar[str] = "gaussian_noise"
    randomized: ClassVar[bool] = True
    sigma: float = 0.1

    def __post_init__(self) -> None:
        """Validate sigma (its range is checked against the input range in check_input)."""
        check_range("sigma", self.sigma, 0.0, math.inf, low_open=True)

    def check_input(self, sample_shape: tuple[int, ...], input_range: InputRange) -> None:
        """Sigma must not exceed the width of the input range."""
        super().check_input(sample_shape, input_range)
        if self.sigma > input_range[1] - input_range[0]:
            raise ValueError(
                f"sigma {self.sigma} exceeds the input range's width {input_range[1] - input_range[0]}"
            )

    def apply(self, x: Tensor, input_range: InputRange, generator: torch.Generator | None) -> Tensor:
        """x plus fresh noise."""
        return x + self.sigma * torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)


TRANSFORMS: dict[str, type[Transform]] = {
    cls.name: cls for cls in (Jpeg, Median, Gaussian, BitDepth, RandomResizePad, GaussianNoise)
}


def transform_class(name: str) -> type[Transform]:
    """The transform registered under name; ValueError for an unknown one."""
    try:
        return TRANSFORMS[name]
    except KeyError:
        raise ValueError(f"unknown transform {name!r}; available: {', '.join(TRANSFORMS)}") from None
