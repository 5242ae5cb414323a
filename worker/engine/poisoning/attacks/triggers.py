"""Backdoor triggers: a mask of blend weights and a pattern, stamped onto inputs as (1 - m) x + m p."""

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Self

import numpy as np
from pydantic import ValidationError

from app.schemas.poisoning import TriggerParams
from worker.engine.seeding import numpy_rng


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


class PatchTrigger:
    """A BadNets patch (Gu et al. 2017) built from its spec (app.schemas.poisoning.TriggerParams): a `size` x
    `size` square at a corner, the center or (row, col); solid (default the top of the input range),
    checkerboard, or random from `pattern_seed`."""

    def __init__(self, spec: TriggerParams | None = None, **fields: Any) -> None:
        """From a spec, or from its fields as keywords (validated by the spec)."""
        self.spec = spec if spec is not None else TriggerParams(**fields)

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any] | None) -> Self:
        """A trigger from a spec dict; unknown keys are an error, a missing spec is the default."""
        try:
            return cls(TriggerParams.model_validate({k: v for k, v in (spec or {}).items() if v is not None}))
        except ValidationError as exc:
            raise ValueError(f"bad trigger parameters: {exc.errors()[0]['msg']}") from exc

    @property
    def size(self) -> int:
        """Side of the square in pixels."""
        return self.spec.size

    def origin(self, height: int, width: int) -> tuple[int, int]:
        """The top-left pixel of the patch on an image of height x width; ValueError when it does not fit."""
        size = int(self.size)
        if size > height or size > width:
            raise ValueError(f"a trigger of {size}x{size} pixels is larger than the {height}x{width} image")
        spec = self.spec
        if spec.row is not None and spec.col is not None:
            row, col = int(spec.row), int(spec.col)
        else:
            rows = {"top": 0, "bottom": height - size, "center": (height - size) // 2}
            cols = {"left": 0, "right": width - size, "center": (width - size) // 2}
            vertical, _, horizontal = spec.location.partition("_")
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
        if self.spec.pattern == "solid":
            value = high if self.spec.value is None else float(self.spec.value)
            if not low <= value <= high:
                raise ValueError(f"trigger value {value} lies outside the input range [{low}, {high}]")
            patch = np.full((channels, size, size), value, dtype=np.float32)
        elif self.spec.pattern == "checkerboard":
            grid = (np.add.outer(np.arange(size), np.arange(size)) % 2 == 0).astype(np.float32)
            patch = np.broadcast_to(low + (high - low) * grid, (channels, size, size)).astype(np.float32)
        else:
            patch = (
                numpy_rng(int(self.spec.pattern_seed), 17)
                .uniform(low, high, (channels, size, size))
                .astype(np.float32)
            )
        pattern[:, row : row + size, col : col + size] = patch
        return Trigger(mask=mask, pattern=pattern)

    def params(self) -> dict[str, Any]:
        """Effective parameters for the report."""
        return self.spec.model_dump(mode="json")


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
