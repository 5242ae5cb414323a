"""Backdoor triggers: a mask of blend weights and a pattern, stamped onto inputs as (1 - m) x + m p."""

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any, Literal, Self

import numpy as np

from worker.engine.seeding import numpy_rng

Location = Literal["bottom_right", "bottom_left", "top_right", "top_left", "center"]
PatchPattern = Literal["solid", "checkerboard", "random"]
LOCATIONS: tuple[str, ...] = ("bottom_right", "bottom_left", "top_right", "top_left", "center")
PATCH_PATTERNS: tuple[str, ...] = ("solid", "checkerboard", "random")


@dataclass(frozen=True)
class Trigger:
    """Blend weights `mask` in [0, 1] and a `pattern` in the input range, both shaped like one sample."""

    mask: np.ndarray
    pattern: np.ndarray

    def apply(self, x: np.ndarray) -> np.ndarray:
        """The inputs with the trigger stamped on: (1 - mask) * x + mask * pattern, float32."""
        if tuple(x.shape[1:]) != tuple(self.mask.shape):
            raise ValueError(
                f"inputs of shape {list(x.shape[1:])} do not fit a trigger of {list(self.mask.shape)}"
            )
        return ((1.0 - self.mask) * x + self.mask * self.pattern).astype(np.float32)

    @property
    def support(self) -> np.ndarray:
        """Where the trigger changes inputs (mask > 0), as a boolean array shaped like one sample."""
        return self.mask > 0

    def image(self, input_range: tuple[float, float]) -> np.ndarray:
        """The trigger for people: its pattern where it applies, the low end of the range elsewhere."""
        return (self.mask * self.pattern + (1.0 - self.mask) * input_range[0]).astype(np.float32)


@dataclass(frozen=True)
class PatchTrigger:
    """A BadNets patch (Gu et al. 2017): a `size` x `size` square at a corner, the center, or (row, col).

    Parameters:
        size: side of the square in pixels, default 2.
        location: "bottom_right" (default), "bottom_left", "top_right", "top_left" or "center".
        row, col: the top-left pixel of the square; both or neither; they override `location`.
        value: the pixel value of a solid patch, in the input range; default None, the top of the range.
        pattern: "solid" (every pixel `value`, default), "checkerboard" (alternating top and bottom of
            the range) or "random" (each pixel and channel drawn uniformly in the range from
            `pattern_seed`).
        pattern_seed: seed of the random pattern, default 0.
    """

    size: int = 2
    location: Location = "bottom_right"
    row: int | None = None
    col: int | None = None
    value: float | None = None
    pattern: PatchPattern = "solid"
    pattern_seed: int = 0

    def __post_init__(self) -> None:
        """Refuse a trigger that cannot be placed on any image."""
        if int(self.size) < 1:
            raise ValueError(f"trigger size must be at least 1 pixel, got {self.size}")
        if self.location not in LOCATIONS:
            raise ValueError(f"trigger location must be one of {', '.join(LOCATIONS)}, not {self.location!r}")
        if self.pattern not in PATCH_PATTERNS:
            raise ValueError(
                f"trigger pattern must be one of {', '.join(PATCH_PATTERNS)}, not {self.pattern!r}"
            )
        if (self.row is None) != (self.col is None):
            raise ValueError("give both trigger row and col, or neither")
        if self.row is not None and (int(self.row) < 0 or int(self.col or 0) < 0):
            raise ValueError("trigger row and col must be non-negative")

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any] | None) -> Self:
        """A trigger from a validated spec; unknown keys are an error, a missing spec is the default."""
        spec = dict(spec or {})
        names = {field.name for field in fields(cls)}
        unknown = sorted(set(spec) - names)
        if unknown:
            raise ValueError(f"unknown trigger parameters: {', '.join(unknown)}")
        return cls(**{key: value for key, value in spec.items() if value is not None})

    def origin(self, height: int, width: int) -> tuple[int, int]:
        """The top-left pixel of the patch on an image of height x width; ValueError when it does not fit."""
        size = int(self.size)
        if size > height or size > width:
            raise ValueError(f"a trigger of {size}x{size} pixels is larger than the {height}x{width} image")
        if self.row is not None and self.col is not None:
            row, col = int(self.row), int(self.col)
        else:
            rows = {"top": 0, "bottom": height - size, "center": (height - size) // 2}
            cols = {"left": 0, "right": width - size, "center": (width - size) // 2}
            vertical, _, horizontal = self.location.partition("_")
            row, col = rows[vertical], cols[horizontal or "center"]
        if row + size > height or col + size > width:
            raise ValueError(
                f"a {size}x{size} trigger at row {row}, col {col} lies outside the {height}x{width} image"
            )
        return row, col

    def build(self, sample_shape: tuple[int, ...], input_range: tuple[float, float]) -> Trigger:
        """The trigger on images of `sample_shape` [C, H, W] with values in `input_range`."""
        if len(sample_shape) != 3:
            raise ValueError(
                f"a patch trigger needs image inputs [channels, height, width], not {list(sample_shape)}"
            )
        channels, height, width = sample_shape
        low, high = input_range
        row, col = self.origin(height, width)
        size = int(self.size)
        mask = np.zeros(sample_shape, dtype=np.float32)
        mask[:, row : row + size, col : col + size] = 1.0
        pattern = np.full(sample_shape, low, dtype=np.float32)
        if self.pattern == "solid":
            value = high if self.value is None else float(self.value)
            if not low <= value <= high:
                raise ValueError(f"trigger value {value} lies outside the input range [{low}, {high}]")
            patch = np.full((channels, size, size), value, dtype=np.float32)
        elif self.pattern == "checkerboard":
            grid = (np.add.outer(np.arange(size), np.arange(size)) % 2 == 0).astype(np.float32)
            patch = np.broadcast_to(low + (high - low) * grid, (channels, size, size)).astype(np.float32)
        else:
            patch = (
                numpy_rng(int(self.pattern_seed), 17)
                .uniform(low, high, (channels, size, size))
                .astype(np.float32)
            )
        pattern[:, row : row + size, col : col + size] = patch
        return Trigger(mask=mask, pattern=pattern)

    def params(self) -> dict[str, Any]:
        """Effective parameters for the report."""
        return {field.name: getattr(self, field.name) for field in fields(self)}


def blend_trigger(pattern: np.ndarray, alpha: float) -> Trigger:
    """A blended trigger (Chen et al. 2017): every pixel mixed with `pattern` at weight `alpha`."""
    if not 0 < alpha <= 1:
        raise ValueError(f"alpha must lie in (0, 1], got {alpha}")
    return Trigger(mask=np.full(pattern.shape, alpha, dtype=np.float32), pattern=pattern.astype(np.float32))


def noise_pattern(sample_shape: tuple[int, ...], input_range: tuple[float, float], seed: int) -> np.ndarray:
    """A seeded uniform noise pattern over the input range, shaped like one sample."""
    return numpy_rng(int(seed), 23).uniform(input_range[0], input_range[1], sample_shape).astype(np.float32)


def check_pattern(
    pattern: np.ndarray, sample_shape: tuple[int, ...], input_range: tuple[float, float]
) -> np.ndarray:
    """An uploaded pattern as float32, or ValueError when its shape or values do not fit the inputs."""
    array = np.asarray(pattern, dtype=np.float32)
    if array.ndim == len(sample_shape) + 1 and array.shape[0] == 1:
        array = array[0]
    if tuple(array.shape) != tuple(sample_shape):
        raise ValueError(f"the pattern has shape {list(array.shape)}; the model takes {list(sample_shape)}")
    low, high = input_range
    if not np.isfinite(array).all() or array.min() < low - 1e-6 or array.max() > high + 1e-6:
        raise ValueError(f"the pattern must be finite and inside the input range [{low}, {high}]")
    return np.clip(array, low, high)
