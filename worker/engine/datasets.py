"""Built-in datasets that ship with installed packages (uploads are read by app.services.dataset_arrays)."""

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


DIGITS_TRAIN_SIZE = 1500
BUILTIN_DATASETS = ("digits", "digits-train", "digits-test")


def load_builtin(name: str) -> ArrayDataset:
    """A built-in dataset: scikit-learn's 8x8 digits in [0, 1], whole or split 1500 train / 297 test."""
    if name not in BUILTIN_DATASETS:
        raise DatasetError(f"unknown built-in dataset {name!r}; available: {', '.join(BUILTIN_DATASETS)}")
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = (digits.images.astype(np.float32) / 16.0)[:, None, :, :]
    y = digits.target.astype(np.int64)
    if name == "digits-train":
        x, y = x[:DIGITS_TRAIN_SIZE], y[:DIGITS_TRAIN_SIZE]
    elif name == "digits-test":
        x, y = x[DIGITS_TRAIN_SIZE:], y[DIGITS_TRAIN_SIZE:]
    return ArrayDataset(x=np.ascontiguousarray(x), y=y)
