"""Supervised training of a classifier through the shared fit loop, and accuracy."""

import numpy as np
import torch
from torch import nn

from worker.engine.datasets import load_builtin
from worker.engine.models.catalog import build_architecture
from worker.engine.training.fit import fit
from worker.engine.training.recipe import TrainingRecipe


def train_classifier(
    model: nn.Module,
    x: np.ndarray,
    y: np.ndarray,
    *,
    epochs: int = 20,
    batch_size: int = 64,
    lr: float = 1e-3,
    seed: int = 0,
) -> nn.Module:
    """Train with Adam on cross-entropy; returns the model in eval mode."""
    fit(model, x, y, recipe=TrainingRecipe(epochs=epochs, batch_size=batch_size, learning_rate=lr), seed=seed)
    return model.eval()


@torch.no_grad()
def predict_labels(model: nn.Module, x: np.ndarray, batch_size: int = 512) -> np.ndarray:
    """The model's labels for x, in batches, on the model's device."""
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    inputs = torch.as_tensor(np.ascontiguousarray(x), dtype=torch.float32)
    labels = [
        model(inputs[start : start + batch_size].to(device)).argmax(1).cpu()
        for start in range(0, len(inputs), batch_size)
    ]
    return torch.cat(labels).numpy() if labels else np.zeros(0, dtype=np.int64)


def accuracy(model: nn.Module, x: np.ndarray, y: np.ndarray, batch_size: int = 512) -> float:
    """Share of samples the model classifies correctly."""
    return float((predict_labels(model, x, batch_size) == y).mean())


def train_digits_model(architecture: str = "small-cnn", *, epochs: int = 15, seed: int = 0) -> nn.Module:
    """A catalog architecture trained on `digits-train`; `digits-test` stays held out."""
    torch.manual_seed(seed)
    data = load_builtin("digits-train")
    model = build_architecture(architecture, data.sample_shape, 10)
    return train_classifier(model, data.x, data.y, epochs=epochs, seed=seed)
