"""Plain supervised training, used for demo models, tests and benchmarks."""

import numpy as np
import torch
from torch import nn

from worker.engine.datasets import load_builtin
from worker.engine.models.catalog import build_architecture


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
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    inputs = torch.as_tensor(x, dtype=torch.float32)
    labels = torch.as_tensor(y, dtype=torch.long)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    for _ in range(epochs):
        order = torch.randperm(len(inputs), generator=generator)
        for start in range(0, len(inputs), batch_size):
            index = order[start : start + batch_size]
            optimizer.zero_grad(set_to_none=True)
            loss = nn.functional.cross_entropy(model(inputs[index]), labels[index])
            loss.backward()
            optimizer.step()
    return model.eval()


@torch.no_grad()
def accuracy(model: nn.Module, x: np.ndarray, y: np.ndarray, batch_size: int = 512) -> float:
    """Share of samples the model classifies correctly."""
    inputs = torch.as_tensor(x, dtype=torch.float32)
    correct = 0
    for start in range(0, len(inputs), batch_size):
        logits = model(inputs[start : start + batch_size])
        correct += int((logits.argmax(1).numpy() == y[start : start + batch_size]).sum())
    return correct / len(inputs)


def train_digits_model(architecture: str = "small-cnn", *, epochs: int = 15, seed: int = 0) -> nn.Module:
    """A catalog architecture trained on `digits-train`; `digits-test` stays held out."""
    torch.manual_seed(seed)
    data = load_builtin("digits-train")
    model = build_architecture(architecture, data.sample_shape, 10)
    return train_classifier(model, data.x, data.y, epochs=epochs, seed=seed)
