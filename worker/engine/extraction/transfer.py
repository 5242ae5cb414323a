"""Transfer: adversarial examples crafted white-box on the surrogate (the evasion engine's PGD), tried on
the victim through its prediction interface."""

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import torch
from torch import nn

from worker.engine.batching import batch_bounds
from worker.engine.evasion.attacks.norms import project
from worker.engine.evasion.attacks.registry import attack_class
from worker.engine.seeding import seeded_generator

Classifier = Callable[[np.ndarray], np.ndarray]
TRANSFER_KEYS = ("steps", "step_size", "random_start", "restarts")
TRANSFER_BATCH = 256


def transfer_spec(spec: Mapping[str, Any]) -> dict[str, Any]:
    """A checked transfer spec: PGD (the only transfer attack), a norm and eps values."""
    unknown = sorted(set(spec) - {"name", "norm", "eps", *TRANSFER_KEYS})
    if unknown:
        raise ValueError(f"transfer: unknown keys {', '.join(unknown)}")
    if spec.get("name", "pgd") != "pgd":
        raise ValueError("transfer: only pgd is supported")
    eps = [float(e) for e in spec.get("eps") or []]
    if not eps or any(not np.isfinite(e) or e < 0 for e in eps):
        raise ValueError("transfer: eps must be a non-empty list of finite non-negative numbers")
    return {"name": "pgd", "norm": spec.get("norm") or "linf", "eps": eps} | {
        key: spec[key] for key in TRANSFER_KEYS if spec.get(key) is not None
    }


def craft(
    model: nn.Module,
    x: np.ndarray,
    y: np.ndarray,
    spec: Mapping[str, Any],
    eps: float,
    *,
    input_range: tuple[float, float],
    seed: int,
) -> np.ndarray:
    """PGD adversarial examples on `model` at eps, projected onto the eps ball and the input range."""
    attack = attack_class("pgd").from_spec(dict(spec), input_range=input_range)
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
