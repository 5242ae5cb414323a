"""Transfer: adversarial examples crafted white-box on the surrogate (the evasion engine's PGD), tried on
the victim through its prediction interface."""

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import nn

from app.schemas.evasion import PgdParams
from app.schemas.extraction import TransferParams
from worker.engine.batching import batch_bounds
from worker.engine.evasion.attacks.norms import project
from worker.engine.evasion.attacks.pgd import PGD
from worker.engine.seeding import seeded_generator

Classifier = Callable[[np.ndarray], np.ndarray]
TRANSFER_BATCH = 256


def transfer_entry(spec: TransferParams) -> dict[str, Any]:
    """The transfer spec as the report shows it (unset options left out)."""
    return spec.model_dump(mode="json", exclude_none=True)


def craft(
    model: nn.Module,
    x: np.ndarray,
    y: np.ndarray,
    spec: TransferParams,
    eps: float,
    *,
    input_range: tuple[float, float],
    seed: int,
) -> np.ndarray:
    """PGD adversarial examples on `model` at eps, projected onto the eps ball and the input range."""
    attack = PGD(PgdParams.model_validate(spec.model_dump()), input_range=input_range)
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    generator = seeded_generator(device, seed, 0x7F)
    chunks = []
    for start, stop in batch_bounds(len(x), TRANSFER_BATCH):
        xb = torch.from_numpy(np.ascontiguousarray(x[start:stop])).to(device)
        yb = torch.from_numpy(y[start:stop]).to(device)
        result = attack.run(model, xb, yb, eps=eps, generator=generator)
        chunks.append(project(xb, result.x_adv, eps, attack.norm, input_range).cpu().numpy())
    return np.concatenate(chunks) if chunks else np.zeros_like(x)


def success_on(
    labels_of: Callable[[np.ndarray], np.ndarray], x_adv: np.ndarray, y: np.ndarray, correct: np.ndarray
) -> float | None:
    """Share of the victim-correct samples whose victim label differs from y on x_adv (None: none correct)."""
    if not correct.any():
        return None
    flipped = labels_of(x_adv[correct]) != y[correct]
    return float(flipped.mean())
