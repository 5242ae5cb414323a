"""Checking and loading uploaded `.npz` datasets (streamed, capped, never unpickled), and built-in facts."""

from dataclasses import dataclass
from typing import Literal

import numpy as np

from app.services.npz_reader import ArrayHeader, invalid, open_npz


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
    # Unlabeled 8x8 patches of scikit-learn's sample photographs (an extraction query pool; labels all 0).
    "natural-patches": DatasetFacts(
        n_samples=5000, sample_shape=(1, 8, 8), num_classes=1, dtype="float32", x_min=0.0, x_max=1.0
    ),
}
BUILTIN_PREFIX = "builtin:"


X_DTYPES = {("u", 1), ("f", 2), ("f", 4), ("f", 8)}  # uint8 and float16/32/64, either byte order
MAX_SAMPLE_DIMS = 6
MAX_CLASSES = 100_000
MAX_SAMPLES = 2**31 - 1


def _default_max_bytes() -> int:
    """The process's dataset cap (`GAUNTLET_MAX_DATASET_BYTES`)."""
    from app.settings import get_settings

    return get_settings().max_dataset_bytes


def _check_headers(x: ArrayHeader, y: ArrayHeader, max_bytes: int) -> None:
    """Shapes, dtypes and the total size, from the headers alone."""
    if len(x.shape) < 2:
        raise invalid("x must have a batch dimension and at least one feature dimension")
    if len(x.shape) - 1 > MAX_SAMPLE_DIMS:
        raise invalid(
            f"x samples have {len(x.shape) - 1} dimensions; at most {MAX_SAMPLE_DIMS} are supported"
        )
    if x.shape[0] == 0:
        raise invalid("the dataset is empty")
    if x.shape[0] > MAX_SAMPLES:
        raise invalid(f"x holds {x.shape[0]} samples; at most {MAX_SAMPLES} are supported")
    if any(d == 0 for d in x.shape[1:]):
        raise invalid(f"x has shape {list(x.shape)}; every sample dimension must be at least 1")
    if len(y.shape) != 1 or y.shape[0] != x.shape[0]:
        raise invalid(
            f"y must hold one label per sample: x has {x.shape[0]} samples, y has shape {list(y.shape)}"
        )
    if (x.dtype.kind, x.dtype.itemsize) not in X_DTYPES:
        raise invalid(f"x must be float32 or uint8, got {x.dtype}")
    if y.dtype.kind not in "iu":
        raise invalid(f"y must hold non-negative integer labels, got dtype {y.dtype}")
    if x.n_bytes + y.n_bytes > max_bytes:
        raise invalid(
            f"x and y hold {x.n_bytes + y.n_bytes} bytes once decompressed, over the dataset limit of "
            f"{max_bytes} bytes"
        )


class _Scan:
    """Running minimum and maximum of an array read in chunks, optionally kept in a flat buffer."""

    def __init__(self, header: ArrayHeader, keep: bool, finite: bool) -> None:
        self.low: float | int | None = None
        self.high: float | int | None = None
        self.finite = finite
        self.buffer = np.empty(header.n_values, dtype=header.dtype) if keep else None
        self.offset = 0

    def __call__(self, chunk: np.ndarray) -> None:
        """Fold one chunk into the statistics (and the buffer)."""
        if self.finite and not np.isfinite(chunk).all():
            raise invalid("x holds NaN or infinite values")
        low, high = chunk.min().item(), chunk.max().item()
        self.low = low if self.low is None else min(self.low, low)
        self.high = high if self.high is None else max(self.high, high)
        if self.buffer is not None:
            self.buffer[self.offset : self.offset + chunk.size] = chunk
        self.offset += chunk.size


def _scan(
    data: bytes, max_bytes: int, keep: bool
) -> tuple[DatasetFacts, np.ndarray | None, np.ndarray | None]:
    """Check an `.npz` header-first, then stream its values; the arrays only when `keep`."""
    with open_npz(data, max_bytes) as archive:
        missing = {"x", "y"} - set(archive.names)
        if missing:
            raise invalid(f"the .npz must hold arrays 'x' and 'y'; missing {sorted(missing)}")
        x_header, y_header = archive.header("x"), archive.header("y")
        _check_headers(x_header, y_header, max_bytes)
        x_scan = _Scan(x_header, keep, finite=x_header.dtype.kind == "f")
        y_scan = _Scan(y_header, keep, finite=False)
        archive.chunks("x", x_scan)
        archive.chunks("y", y_scan)
    if y_scan.low is None or y_scan.high is None or x_scan.low is None or x_scan.high is None:
        raise invalid("x and y must hold at least one value")
    if y_scan.low < 0:
        raise invalid("y must hold non-negative integer labels")
    if y_scan.high >= MAX_CLASSES:
        raise invalid(f"labels go up to {y_scan.high}; at most {MAX_CLASSES} classes are supported")
    facts = DatasetFacts(
        n_samples=x_header.shape[0],
        sample_shape=x_header.shape[1:],
        num_classes=int(y_scan.high) + 1,
        dtype=str(x_header.dtype.newbyteorder("=")),
        x_min=float(x_scan.low),
        x_max=float(x_scan.high),
    )
    if not keep:
        return facts, None, None
    assert x_scan.buffer is not None and y_scan.buffer is not None
    order: Literal["F", "C"] = "F" if x_header.fortran_order else "C"
    return facts, x_scan.buffer.reshape(x_header.shape, order=order), y_scan.buffer


def inspect_npz(data: bytes, max_bytes: int | None = None) -> DatasetFacts:
    """Check an uploaded dataset and describe it, in memory independent of its decompressed size."""
    return _scan(data, max_bytes or _default_max_bytes(), keep=False)[0]


def load_npz(
    data: bytes, input_range: tuple[float, float], max_bytes: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Arrays ready for the engine: float32 inputs in the input range (uint8 is scaled) and int64 labels."""
    facts, x, y = _scan(data, max_bytes or _default_max_bytes(), keep=True)
    assert x is not None and y is not None
    low, high = input_range
    if facts.dtype == "uint8":
        scaled = x.astype(np.float32)
        scaled *= (high - low) / 255.0
        scaled += low
        return np.ascontiguousarray(scaled), y.astype(np.int64)
    return np.ascontiguousarray(x, dtype=np.float32), y.astype(np.int64)
