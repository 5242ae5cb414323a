"""A classifier known only through its outputs, seen by attacks as a torch module with no gradient path."""

from collections.abc import Callable

import numpy as np
import torch
from torch import Tensor, nn


class QueryOnlyModel(nn.Module):
    """Wraps a NumPy classifier (onnxruntime session, remote endpoint) as a module for black-box attacks.

    Its outputs never require gradients, so an attack that tries to differentiate through it fails
    loudly instead of silently using a gradient the threat model does not allow.
    """

    def __init__(self, classify: Callable[[np.ndarray], np.ndarray]) -> None:
        super().__init__()
        self.classify = classify

    def forward(self, x: Tensor) -> Tensor:
        """Logits for a batch, computed outside torch."""
        with torch.no_grad():
            inputs = np.ascontiguousarray(x.detach().cpu().numpy(), dtype=np.float32)
            logits = np.asarray(self.classify(inputs), dtype=np.float32)
        return torch.from_numpy(logits).to(x.device)
