"""Declared input normalization: the model sees (x - mean) / std, attacks work on x in the input range."""

from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import Tensor, nn


def _per_channel(values: Sequence[float], ndim: int) -> np.ndarray:
    """Values shaped to broadcast over the channel axis of a [C, ...] sample."""
    return np.asarray(values, dtype=np.float32).reshape((-1,) + (1,) * (ndim - 1))


class Normalized(nn.Module):
    """A differentiable model that expects normalized inputs, taking inputs in the declared input range."""

    def __init__(
        self, inner: nn.Module, mean: Sequence[float], std: Sequence[float], sample_ndim: int
    ) -> None:
        super().__init__()
        self.inner = inner
        self.register_buffer("mean", torch.from_numpy(_per_channel(mean, sample_ndim)))
        self.register_buffer("std", torch.from_numpy(_per_channel(std, sample_ndim)))

    def forward(self, x: Tensor) -> Tensor:
        """Logits of the wrapped model on (x - mean) / std."""
        return self.inner((x - self.mean) / self.std)


def normalized_classifier(
    classify: Callable[[np.ndarray], np.ndarray],
    mean: Sequence[float],
    std: Sequence[float],
    sample_ndim: int,
) -> Callable[[np.ndarray], np.ndarray]:
    """A NumPy classifier (onnxruntime, remote endpoint) taking inputs in the declared input range."""
    mean_array, std_array = _per_channel(mean, sample_ndim), _per_channel(std, sample_ndim)

    def classify_normalized(x: np.ndarray) -> np.ndarray:
        return classify(((x - mean_array) / std_array).astype(np.float32))

    return classify_normalized
