"""Jacobian-based dataset augmentation (Papernot et al. 2017): synthetic queries along the surrogate's
gradient, from a small seed set."""

import numpy as np
import torch
from torch import nn

from app.schemas.extraction import JacobianParams
from worker.engine.extraction.query import QueryInterface
from worker.engine.extraction.strategies.base import Strategy, StrategyContext, query_in_batches
from worker.engine.extraction.surrogate import model_device

GRADIENT_BATCH = 256


def jacobian_signs(model: nn.Module, x: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """sign(d softmax(model(x))[label] / dx) per sample, in batches (the surrogate's own gradient)."""
    model.eval()
    device = model_device(model)
    signs = []
    for start in range(0, len(x), GRADIENT_BATCH):
        xb = torch.from_numpy(np.ascontiguousarray(x[start : start + GRADIENT_BATCH])).to(device)
        yb = torch.from_numpy(labels[start : start + GRADIENT_BATCH]).to(device)
        xb.requires_grad_(True)
        with torch.enable_grad():
            probs = torch.softmax(model(xb), dim=1)
            (grad,) = torch.autograd.grad(probs.gather(1, yb[:, None]).sum(), xb)
        signs.append(grad.sign().cpu().numpy())
    return np.concatenate(signs) if signs else np.zeros_like(x)


class Jacobian(Strategy):
    """Jacobian-based dataset augmentation.

    Paper: Papernot, McDaniel, Goodfellow, Jha, Celik and Swami, "Practical Black-Box Attacks against
    Machine Learning", AsiaCCS 2017.

    Threat model: black-box queries of a small seed set from the pool and of synthetic points the
    attacker makes from it (so the budget may exceed the pool size).

    Each round trains the surrogate on everything queried so far, then adds, for every point x, the
    point x + lambda_r * sign(grad_x F(x)[O(x)]) (O the victim's answer, F the surrogate's softmax),
    clipped to the input range, and queries them: the set doubles. lambda_r = lambda * (-1) **
    (r // flip_period), the periodic sign flip of the paper's section 6. Once the budget binds, the
    round's new points are a uniform random subset (reservoir sampling): each round's points are
    shuffled and queried in order, so any prefix of the stream is such a subset.

    Parameters:
        seed_size: pool samples in the seed set, default 150.
        rounds: augmentation rounds, default 6.
        lambda: the step, default 0.1 (in input units).
        flip_period: rounds between sign flips (tau), default 3.
    """

    spec_type = JacobianParams
    spec: JacobianParams
    paper = "Papernot, McDaniel, Goodfellow, Jha, Celik and Swami, AsiaCCS 2017"

    def step_at(self, round_index: int) -> float:
        """lambda with its periodic sign flip."""
        return self.spec.step * (-1.0) ** (round_index // self.spec.flip_period)

    def run(self, interface: QueryInterface, pool: np.ndarray, ctx: StrategyContext) -> None:
        """Seed set, then rounds of augmentation until the rounds or the budget run out."""
        rng = ctx.rng(3)
        low, high = ctx.input_range
        n_seed = min(self.spec.seed_size, len(pool), interface.remaining)
        x = pool[rng.choice(len(pool), size=n_seed, replace=False)]
        outputs = np.concatenate(query_in_batches(interface, x, ctx, "jacobian seed queries"))
        for round_index in range(self.spec.rounds):
            if interface.remaining <= 0:
                break
            stage = f"jacobian round {round_index + 1}/{self.spec.rounds}"
            model = ctx.trainer.train(x, outputs, seed=ctx.seed + round_index, stage=stage)
            labels = outputs if outputs.ndim == 1 else outputs.argmax(axis=1)
            signs = jacobian_signs(model, x, labels.astype(np.int64))
            new = np.clip(x + self.step_at(round_index) * signs, low, high).astype(np.float32)
            new = new[rng.permutation(len(new))[: interface.remaining]]
            answers = query_in_batches(interface, new, ctx, stage)
            x = np.concatenate([x, new])
            outputs = np.concatenate([outputs, *answers])
