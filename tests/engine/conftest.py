"""Session-scoped fixtures for engine tests: the digits data and two small trained models."""

from collections.abc import Iterator

import numpy as np
import pytest
import torch
from torch import nn

from tests.engine.onnx_fixtures import export_onnx
from worker.engine.datasets import ArrayDataset, load_builtin
from worker.engine.training.classifier import train_digits_model

# train_digits_model trains on the first 1500 digits; the rest are held out.
HELD_OUT_START = 1500


@pytest.fixture(scope="session", autouse=True)
def single_thread() -> Iterator[None]:
    """One intra-op thread for the engine tests: the tiny models run faster that way, and a loaded
    machine does not make torch's threads fight over the cores."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def digits() -> ArrayDataset:
    """The built-in digits dataset, x float32 [N, 1, 8, 8] in [0, 1]."""
    return load_builtin("digits")


@pytest.fixture(scope="session")
def held_out(digits: ArrayDataset) -> tuple[np.ndarray, np.ndarray]:
    """The 297 digits the models never saw in training."""
    return digits.x[HELD_OUT_START:], digits.y[HELD_OUT_START:]


@pytest.fixture(scope="session")
def small_cnn() -> nn.Module:
    """A small CNN trained on digits (about 94% held-out accuracy)."""
    return train_digits_model("small-cnn", epochs=15, seed=0)


@pytest.fixture(scope="session")
def mlp() -> nn.Module:
    """An MLP trained on digits."""
    return train_digits_model("mlp", epochs=15, seed=0)


@pytest.fixture(scope="session")
def cnn_onnx(small_cnn: nn.Module) -> bytes:
    """The trained CNN exported to ONNX with a dynamic batch axis."""
    return export_onnx(small_cnn, (1, 8, 8))
