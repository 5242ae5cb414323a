"""Built-in datasets that ship with installed packages (uploads are read by app.services.dataset_arrays)."""

from dataclasses import dataclass

import numpy as np

from worker.engine.errors import EngineError


class DatasetError(EngineError, ValueError):
    """A dataset that cannot be used; the message says why."""

    default_code = "dataset_invalid"


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
NATURAL_PATCHES = "natural-patches"
NATURAL_PATCHES_SIZE = 5000
BUILTIN_DATASETS = ("digits", "digits-train", "digits-test", NATURAL_PATCHES)


def load_builtin(name: str) -> ArrayDataset:
    """A built-in dataset: scikit-learn's 8x8 digits in [0, 1], whole or split 1500 train / 297 test."""
    if name not in BUILTIN_DATASETS:
        raise DatasetError(f"unknown built-in dataset {name!r}; available: {', '.join(BUILTIN_DATASETS)}")
    if name == NATURAL_PATCHES:
        return natural_patches()
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = (digits.images.astype(np.float32) / 16.0)[:, None, :, :]
    y = digits.target.astype(np.int64)
    if name == "digits-train":
        x, y = x[:DIGITS_TRAIN_SIZE], y[:DIGITS_TRAIN_SIZE]
    elif name == "digits-test":
        x, y = x[DIGITS_TRAIN_SIZE:], y[DIGITS_TRAIN_SIZE:]
    return ArrayDataset(x=np.ascontiguousarray(x), y=y)


def natural_patches(n: int = NATURAL_PATCHES_SIZE, seed: int = 0) -> ArrayDataset:
    """Unlabeled 8x8 grayscale patches of scikit-learn's two sample photographs (an out-of-distribution pool).

    Each patch is a square of 8, 16, 32 or 64 pixels at a random place (drawn from `seed`), averaged down
    to 8x8 and scaled to [0, 1] (its darkest pixel 0, its brightest 1); nearly flat patches are
    skipped. Labels are all 0: the pool carries none. Needs Pillow, which scikit-learn uses to read
    the JPEGs.
    """
    from sklearn.datasets import load_sample_images

    photos = [
        image.astype(np.float64) @ np.array([0.299, 0.587, 0.114]) for image in load_sample_images().images
    ]
    rng = np.random.default_rng(seed)
    patches = np.empty((n, 8, 8), dtype=np.float32)
    count = 0
    while count < n:
        photo = photos[int(rng.integers(len(photos)))]
        size = 8 * 2 ** int(rng.integers(4))
        top = int(rng.integers(photo.shape[0] - size + 1))
        left = int(rng.integers(photo.shape[1] - size + 1))
        block = photo[top : top + size, left : left + size]
        small = block.reshape(8, size // 8, 8, size // 8).mean(axis=(1, 3))
        low, high = small.min(), small.max()
        if high - low < 8.0:  # nearly flat: sky, a wall
            continue
        patches[count] = (small - low) / (high - low)
        count += 1
    return ArrayDataset(x=np.ascontiguousarray(patches[:, None]), y=np.zeros(n, dtype=np.int64))
