"""Helpers shared by the attack tests."""

import numpy as np
import torch
from torch import nn

from worker.engine.black_box import QueryOnlyModel
from worker.engine.model_intake import OnnxRuntimeClassifier


@torch.no_grad()
def predict(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Predicted labels."""
    return model(x).argmax(dim=1)


def seeded(seed: int = 0) -> torch.Generator:
    """A CPU generator with a fixed seed."""
    return torch.Generator().manual_seed(seed)


def clean_correct(
    model: nn.Module, held_out: tuple[np.ndarray, np.ndarray], limit: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """The first `limit` held-out digits the model classifies correctly (what the runner attacks)."""
    x, y = torch.as_tensor(held_out[0][:limit]), torch.as_tensor(held_out[1][:limit])
    correct = predict(model, x) == y
    return x[correct], y[correct]


def onnx_black_box(data: bytes) -> tuple[QueryOnlyModel, OnnxRuntimeClassifier]:
    """A query-only model over onnxruntime (no torch module in reach) and its query counter."""
    classifier = OnnxRuntimeClassifier(data)
    return QueryOnlyModel(classifier), classifier
