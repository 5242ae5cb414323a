"""Helpers shared by the attack tests."""

import numpy as np
import pytest
import torch
from torch import nn

from worker.engine.evasion.attacks.norms import perturbation_norm
from worker.engine.models.black_box import QueryOnlyModel
from worker.engine.models.intake import OnnxRuntimeClassifier


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


def outcome(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, x_adv: torch.Tensor, norm: str = "l2"
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sample success (label changed) and perturbation size of any library's adversarial output."""
    return predict(model, x_adv) != y, perturbation_norm(x_adv - x, norm)  # type: ignore[arg-type]


def robust_within(success: torch.Tensor, sizes: torch.Tensor, eps: float) -> float:
    """Robust accuracy over the attacked (clean-correct) samples when only perturbations within eps count."""
    return 1.0 - (success & (sizes <= eps * (1 + 1e-6) + 1e-7)).float().mean().item()


def query_only_without_gradients(data: bytes, probe: torch.Tensor) -> nn.Module:
    """The ONNX model as a query-only module, after proving it has no gradient path.

    The returned module also fails the test if an attack calls it with autograd enabled or with an input
    that requires gradients.
    """
    model, _ = onnx_black_box(data)
    assert not list(model.parameters())
    probe = probe.clone().requires_grad_(True)
    out = model(probe)
    assert not out.requires_grad
    with pytest.raises(RuntimeError):
        torch.autograd.grad(out.sum(), probe)

    class NoGraph(nn.Module):
        def forward(self, z: torch.Tensor) -> torch.Tensor:
            assert not torch.is_grad_enabled() and not z.requires_grad
            return model(z)

    return NoGraph()
