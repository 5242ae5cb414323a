"""Gradient matching (Witches' Brew): poisons whose training gradient points where the target's does."""

from typing import ClassVar

import numpy as np
import torch
from torch.nn import functional

from app.schemas.poisoning import GradientMatchingParams, PoisoningAttackBase
from worker.engine.poisoning.attacks.base import TargetedPoisoning
from worker.engine.poisoning.data import PoisonContext, PoisonedSet, TargetSample, choose


class GradientMatching(TargetedPoisoning):
    """Gradient matching ("Witches' Brew"), a targeted clean-label attack on training from scratch.

    Paper: Geiping, Fowl, Huang, Czaja, Taylor, Moeller and Goldstein, "Witches' Brew: Industrial Scale
    Data Poisoning via Gradient Matching", ICLR 2021.

    Threat model: clean-label, targeted; the attacker perturbs rate x N training samples of the
    intended class (labels untouched) within a linf ball of `eps` so that the gradient of the training
    loss on the poisons, taken on a clean surrogate, aligns (cosine similarity) with the gradient of
    the loss that would classify the target as intended. The victim is retrained from scratch, once
    per target, from its own initialisation (not the surrogate's).

    Parameters:
        targets: independent target samples, default 5.
        eps: linf budget per poison, default 0.1 (input-range units).
        intended_class: default None, per target the clean surrogate's second most likely class.
        steps: signed-Adam steps, default 150, the learning rate divided by 10 at 3/8, 5/8 and 7/8 of
            them (Geiping et al.'s schedule); step_size: the initial learning rate, default None (eps / 10).
        restarts: random restarts, the one with the best alignment kept, default 1.
    The poisons are drawn at random from the intended class. Success: the share of targets the
    retrained victim classifies as intended.
    """

    spec_type: ClassVar[type[PoisoningAttackBase]] = GradientMatchingParams
    spec: GradientMatchingParams
    paper: ClassVar[str] = "Geiping et al. 2021 (Witches' Brew, gradient matching)"
    threat_model: ClassVar[str] = (
        "clean-label targeted: intended-class samples perturbed within eps so their training gradient "
        "on a surrogate matches the target's adversarial gradient; victim retrained from scratch"
    )

    def craft_units(self, n_poison: int) -> float:
        """About three passes (forward, gradient, gradient of the gradient) per step, poison and restart."""
        return float(3 * n_poison * int(self.spec.steps) * int(self.spec.restarts))

    def poison_target(self, ctx: PoisonContext, rate: float, target: TargetSample, key: int) -> PoisonedSet:
        """Brew count(rate) poisons from random intended-class samples; keep the best-aligned restart."""
        model = ctx.need_surrogate()
        parameters = [p for p in model.parameters() if p.requires_grad]
        if not parameters:
            raise ValueError("gradient_matching: the surrogate has no trainable parameters")
        eps, low, high = float(self.spec.eps), *ctx.input_range
        n = self.count(ctx.y, rate)
        indices = choose(ctx.rng(key), np.flatnonzero(ctx.y == target.intended), n)
        goal_x = torch.as_tensor(target.x[None], device=ctx.device)
        goal_y = torch.tensor([target.intended], device=ctx.device)
        goal = torch.autograd.grad(functional.cross_entropy(model(goal_x), goal_y), parameters)
        goal = [g.detach() for g in goal]
        goal_norm = torch.sqrt(sum((g * g).sum() for g in goal))
        base = torch.as_tensor(ctx.x[indices], device=ctx.device)
        labels = torch.as_tensor(ctx.y[indices], device=ctx.device)
        generator = ctx.generator(key)
        best, best_loss = torch.zeros_like(base), float("inf")
        for restart in range(int(self.spec.restarts)):
            noise = torch.rand(base.shape, generator=generator, device=ctx.device)
            delta = ((noise * 2 - 1) * eps).requires_grad_(True)
            optimizer = torch.optim.Adam([delta], lr=self.spec.step_size or eps / 10)
            milestones = [int(self.spec.steps * f) for f in (3 / 8, 5 / 8, 7 / 8)]
            schedule = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=milestones, gamma=0.1)
            loss = torch.zeros(())
            for step in range(int(self.spec.steps)):
                loss = self._mismatch(model, parameters, base, delta, labels, goal, goal_norm, (low, high))
                (grad,) = torch.autograd.grad(loss, delta)
                delta.grad = grad.sign()
                optimizer.step()
                schedule.step()
                with torch.no_grad():
                    delta.copy_((base + delta.clamp(-eps, eps)).clamp(low, high) - base)
                if step % 10 == 9:
                    ctx.advance(
                        30 * n, f"gradient_matching: restart {restart + 1} step {step + 1}/{self.spec.steps}"
                    )
            mismatch = self._mismatch(
                model, parameters, base, delta.detach(), labels, goal, goal_norm, (low, high)
            )
            final = mismatch.detach().item()
            if final < best_loss:
                best, best_loss = delta.detach().clone(), final
        ctx.advance(
            3 * n * (int(self.spec.steps) % 10) * int(self.spec.restarts), "gradient_matching: poisons ready"
        )
        x = ctx.x.copy()
        x[indices] = (base + best).clamp(low, high).cpu().numpy()
        return PoisonedSet(x=x, y=ctx.y.copy(), indices=indices, eps=eps, target=target)

    @staticmethod
    def _mismatch(
        model: torch.nn.Module,
        parameters: list[torch.nn.Parameter],
        base: torch.Tensor,
        delta: torch.Tensor,
        labels: torch.Tensor,
        goal: list[torch.Tensor],
        goal_norm: torch.Tensor,
        input_range: tuple[float, float],
    ) -> torch.Tensor:
        """1 - cosine similarity of the poisons' parameter gradient and the target's."""
        with torch.enable_grad():
            loss = functional.cross_entropy(model((base + delta).clamp(*input_range)), labels)
            grads = torch.autograd.grad(loss, parameters, create_graph=True)
            dot = sum((g * t).sum() for g, t in zip(grads, goal, strict=True))
            norm = torch.sqrt(sum((g * g).sum() for g in grads))
            return 1 - dot / (norm * goal_norm + 1e-12)
