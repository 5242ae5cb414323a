"""Feature collision (Poison Frogs): base-class poisons pulled onto a target in feature space, within eps."""

from typing import ClassVar

import numpy as np
import torch

from app.schemas.poisoning import FeatureCollisionParams, PoisoningAttackBase
from worker.engine.batching import batch_bounds
from worker.engine.poisoning.attacks.base import TargetedPoisoning
from worker.engine.poisoning.attacks.surrogate_features import penultimate
from worker.engine.poisoning.data import PoisonContext, PoisonedSet, TargetSample

_BATCH = 256


class FeatureCollision(TargetedPoisoning):
    """Feature collision ("Poison Frogs"), a targeted clean-label attack.

    Paper: Shafahi, Huang, Najibi, Suciu, Studer, Dumitras and Goldstein, "Poison Frogs! Targeted
    Clean-Label Poisoning Attacks on Neural Networks", NeurIPS 2018.

    Threat model: clean-label, targeted; for one held-out target sample the attacker wants classified
    as the intended class, it perturbs rate x N training samples of the intended class (labels
    untouched) within a linf ball of `eps` so that their features on a clean surrogate collide with
    the target's. The victim is retrained from scratch on the poisoned set, once per target.

    Parameters:
        targets: independent target samples (one poisoning and retraining each), default 5.
        eps: linf budget per poison, default 0.1 (input-range units).
        intended_class: the class every target should become; default None, per target the clean
            surrogate's second most likely class.
        steps: Adam steps on the perturbations, default 200; step_size: Adam's learning rate, default
            None (eps / 10).
    The poisons are the intended-class samples nearest the target in feature space (Shafahi et al.'s
    base choice, one base per poison); features are the surrogate's penultimate activations.
    Success: the share of targets the retrained victim classifies as intended.
    """

    spec_type: ClassVar[type[PoisoningAttackBase]] = FeatureCollisionParams
    spec: FeatureCollisionParams
    paper: ClassVar[str] = "Shafahi et al. 2018 (Poison Frogs, feature collision)"
    threat_model: ClassVar[str] = (
        "clean-label targeted: intended-class samples perturbed within eps to collide with one target "
        "in a surrogate's feature space; no label changes"
    )

    def craft_units(self, n_poison: int) -> float:
        """Forward-backward passes per poison and target."""
        return float(n_poison * int(self.spec.steps))

    def poison_target(self, ctx: PoisonContext, rate: float, target: TargetSample, key: int) -> PoisonedSet:
        """Pull count(rate) intended-class samples onto the target's features, inside the eps box."""
        model = ctx.need_surrogate()
        features, _ = penultimate(model)
        eps, low, high = float(self.spec.eps), *ctx.input_range
        n = self.count(ctx.y, rate)
        candidates = np.flatnonzero(ctx.y == target.intended)
        with torch.no_grad():
            goal = features(torch.as_tensor(target.x[None], device=ctx.device))
            distances = torch.cat(
                [
                    (features(torch.as_tensor(ctx.x[candidates[a:b]], device=ctx.device)) - goal)
                    .norm(dim=1)
                    .cpu()
                    for a, b in batch_bounds(len(candidates), _BATCH)
                ]
            )
        indices = np.sort(candidates[np.argsort(distances.numpy(), kind="stable")[:n]]).astype(np.int64)
        x = ctx.x.copy()
        for start, stop in batch_bounds(n, _BATCH):
            chosen = indices[start:stop]
            base = torch.as_tensor(ctx.x[chosen], device=ctx.device)
            delta = torch.zeros_like(base, requires_grad=True)
            optimizer = torch.optim.Adam([delta], lr=self.spec.step_size or eps / 10)
            for step in range(int(self.spec.steps)):
                loss = ((features((base + delta).clamp(low, high)) - goal) ** 2).sum(dim=1).sum()
                (delta.grad,) = torch.autograd.grad(loss, delta)
                optimizer.step()
                with torch.no_grad():
                    delta.copy_(((base + delta.clamp(-eps, eps)).clamp(low, high)) - base)
                if step % 20 == 19:
                    ctx.advance(20 * len(chosen), f"feature_collision: step {step + 1}/{self.spec.steps}")
            x[chosen] = (base + delta.detach()).clamp(low, high).cpu().numpy()
        ctx.advance((int(self.spec.steps) % 20) * n, "feature_collision: poisons ready")
        return PoisonedSet(x=x, y=ctx.y.copy(), indices=indices, eps=eps, target=target)
