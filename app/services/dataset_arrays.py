"""Reading uploaded `.npz` datasets with NumPy only (never unpickled), and built-in dataset facts."""

import io
from dataclasses import dataclass

import numpy as np

from app.errors import InvalidInput


@dataclass(frozen=True)
class DatasetFacts:
    """What a dataset looks like, enough to check it against a model without loading it."""

    n_samples: int
    sample_shape: tuple[int, ...]
    num_classes: int
    dtype: str
    x_min: float
    x_max: float


def _digits(n_samples: int) -> DatasetFacts:
    """Facts of scikit-learn's 8x8 digits (or a split of them), scaled to [0, 1]."""
    return DatasetFacts(
        n_samples=n_samples, sample_shape=(1, 8, 8), num_classes=10, dtype="float32", x_min=0.0, x_max=1.0
    )


# What worker/engine/datasets.py loads for each name; a test keeps the two in agreement.
BUILTIN_DATASETS: dict[str, DatasetFacts] = {
    "digits": _digits(1797),
    "digits-train": _digits(1500),
    "digits-test": _digits(297),
}
BUILTIN_PREFIX = "builtin:"


def _read_arrays(data: bytes) -> tuple[np.ndarray, np.ndarray]:
    """The `x` and `y` arrays of an `.npz`, refusing pickled object arrays."""
    try:
        archive = np.load(io.BytesIO(data), allow_pickle=False)
    except Exception as exc:
        raise InvalidInput("the file is not a readable .npz archive", code="dataset_invalid") from exc
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise InvalidInput(
            "the file is a single .npy array; upload an .npz with arrays x and y", code="dataset_invalid"
        )
    with archive:
        missing = {"x", "y"} - set(archive.files)
        if missing:
            raise InvalidInput(
                f"the .npz must hold arrays 'x' and 'y'; missing {sorted(missing)}", code="dataset_invalid"
            )
        try:
            return archive["x"], archive["y"]
        except ValueError as exc:
            raise InvalidInput(
                "x and y must be numeric arrays; object arrays are refused", code="dataset_invalid"
            ) from exc


def inspect_npz(data: bytes) -> DatasetFacts:
    """Check an uploaded dataset's arrays and describe them; a 422 says what is wrong."""
    return _check_arrays(*_read_arrays(data))


def _check_arrays(x: np.ndarray, y: np.ndarray) -> DatasetFacts:
    """Check the arrays of a dataset and describe them; a 422 says what is wrong."""
    if x.ndim < 2:
        raise InvalidInput(
            "x must have a batch dimension and at least one feature dimension", code="dataset_invalid"
        )
    if y.ndim != 1 or len(y) != len(x):
        raise InvalidInput(
            f"y must hold one label per sample: x has {len(x)} samples, y has shape {list(y.shape)}",
            code="dataset_invalid",
        )
    if len(x) == 0:
        raise InvalidInput("the dataset is empty", code="dataset_invalid")
    if not np.issubdtype(y.dtype, np.integer) or (y < 0).any():
        raise InvalidInput("y must hold non-negative integer labels", code="dataset_invalid")
    if x.dtype != np.uint8 and x.dtype not in (np.float32, np.float64, np.float16):
        raise InvalidInput(f"x must be float32 or uint8, got {x.dtype}", code="dataset_invalid")
    if x.dtype != np.uint8 and not np.isfinite(x).all():
        raise InvalidInput("x holds NaN or infinite values", code="dataset_invalid")
    return DatasetFacts(
        n_samples=len(x),
        sample_shape=tuple(int(d) for d in x.shape[1:]),
        num_classes=int(y.max()) + 1,
        dtype=str(x.dtype),
        x_min=float(x.min()),
        x_max=float(x.max()),
    )


def load_npz(data: bytes, input_range: tuple[float, float]) -> tuple[np.ndarray, np.ndarray]:
    """Arrays ready for the engine: float32 inputs in the input range (uint8 is scaled) and int64 labels."""
    x, y = _read_arrays(data)
    _check_arrays(x, y)
    low, high = input_range
    if x.dtype == np.uint8:
        x = x.astype(np.float32) / 255.0 * (high - low) + low
    return np.ascontiguousarray(x, dtype=np.float32), y.astype(np.int64)
