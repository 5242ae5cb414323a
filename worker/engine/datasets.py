"""Datasets: user `.npz` uploads (never unpickled) and built-in datasets that ship with packages."""

import io
from dataclasses import dataclass

import numpy as np


class DatasetError(ValueError):
    """A dataset that cannot be used; the message says why."""


@dataclass(frozen=True)
class ArrayDataset:
    """Inputs as float32 in the declared input range and integer labels."""

    x: np.ndarray
    y: np.ndarray

    @property
    def sample_shape(self) -> tuple[int, ...]:
        """Shape of one sample, without the batch dimension."""
        return tuple(int(d) for d in self.x.shape[1:])

    @property
    def num_classes(self) -> int:
        """One more than the largest label."""
        return int(self.y.max()) + 1 if len(self.y) else 0


BUILTIN_DATASETS = ("digits",)


def load_builtin(name: str) -> ArrayDataset:
    """Load a built-in dataset; digits is scikit-learn's 8x8 handwritten digits scaled to [0, 1]."""
    if name != "digits":
        raise DatasetError(f"unknown built-in dataset {name!r}; available: {', '.join(BUILTIN_DATASETS)}")
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = (digits.images.astype(np.float32) / 16.0)[:, None, :, :]
    return ArrayDataset(x=x, y=digits.target.astype(np.int64))


def parse_npz(data: bytes, input_range: tuple[float, float] = (0.0, 1.0)) -> ArrayDataset:
    """Parse an uploaded `.npz` holding `x` and `y`; uint8 inputs are scaled into the input range."""
    try:
        archive = np.load(io.BytesIO(data), allow_pickle=False)
    except Exception as exc:
        raise DatasetError("the file is not a readable .npz archive") from exc
    with archive:
        missing = {"x", "y"} - set(archive.files)
        if missing:
            raise DatasetError(f"the .npz must hold arrays 'x' and 'y'; missing {sorted(missing)}")
        try:
            x, y = archive["x"], archive["y"]
        except ValueError as exc:
            raise DatasetError("arrays must be plain numeric arrays (object arrays are refused)") from exc
    return validate_arrays(x, y, input_range)


def validate_arrays(x: np.ndarray, y: np.ndarray, input_range: tuple[float, float]) -> ArrayDataset:
    """Check dtypes, shapes, finiteness and range; return the arrays in canonical dtypes."""
    low, high = input_range
    if x.ndim < 2:
        raise DatasetError("x must have a batch dimension and at least one feature dimension")
    if y.ndim != 1 or len(y) != len(x):
        raise DatasetError(f"y must be one label per sample: x has {len(x)} samples, y has shape {y.shape}")
    if len(x) == 0:
        raise DatasetError("the dataset is empty")
    if not np.issubdtype(y.dtype, np.integer):
        raise DatasetError(f"y must hold integer labels, got {y.dtype}")
    if (y < 0).any():
        raise DatasetError("labels must be non-negative")
    if x.dtype == np.uint8:
        x = x.astype(np.float32) / 255.0 * (high - low) + low
    elif np.issubdtype(x.dtype, np.floating):
        x = x.astype(np.float32)
        if not np.isfinite(x).all():
            raise DatasetError("x holds NaN or infinite values")
        if x.min() < low - 1e-6 or x.max() > high + 1e-6:
            raise DatasetError(
                f"x values lie in [{x.min():.4g}, {x.max():.4g}], outside the input range [{low}, {high}]"
            )
    else:
        raise DatasetError(f"x must be float32 or uint8, got {x.dtype}")
    return ArrayDataset(x=np.ascontiguousarray(x), y=y.astype(np.int64))
