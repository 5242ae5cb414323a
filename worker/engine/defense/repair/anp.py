"""ANP, adversarial neuron pruning (Wu and Wang, NeurIPS 2021), as the authors' reference code runs it."""

import dataclasses
from collections.abc import Iterator
from contextlib import contextmanager
from typing import ClassVar

import torch
from torch import Tensor, nn
from torch.nn import functional

from app.schemas.repair_methods import AnpMethod
from worker.engine.defense.repair.base import Repair, RepairContext, RepairResult
from worker.engine.defense.repair.units import Unit, channel_view, find_units, hooked, prune
from worker.engine.models.onnx_graph import OnnxGraphModule
from worker.engine.seeding import seeded_generator


class ANP(Repair):
    """Adversarial neuron pruning: the neurons a backdoor relies on are the ones whose small perturbation
    breaks the model; learn a mask that keeps the clean loss low under adversarial neuron perturbations
    and prune the neurons it drives down.

    Paper: Wu and Wang, "Adversarial Neuron Pruning Purifies Backdoored Deep Models", NeurIPS 2021
    (reference code github.com/csdongxian/ANP_backdoor, optimize_mask_cifar.py and prune_neuron_cifar.py).
    Threat model: the defender holds the model and a small clean labelled set, no poisoned data and no
    knowledge of the trigger.

    Neurons: every batch-normalised channel when the model has batch norm (the reference code's
    NoisyBatchNorm layers), else every convolution channel and hidden linear unit. Neuron k's weight
    is scaled by m_k + d_k and its bias by 1 + e_k (for batch norm: its scale and shift), with a mask
    m in [0, 1] and perturbations d, e drawn uniformly in [-eps, eps] afresh for each batch, then
    moved by `anp_steps` signed ascent steps of eps / anp_steps on the clean loss (unclipped, as the
    reference code). The mask descends alpha * loss(m) + (1 - alpha) * loss(m + d) with SGD
    (momentum 0.9) and is clipped to [0, 1]. The model is in training mode while the mask is learnt
    (batch statistics, as the reference code); its running statistics are restored afterwards.
    Neurons whose mask falls below `threshold` are pruned (weight or batch-norm scale zeroed, bias
    kept, as the reference's pruning), or, with `prune_fraction` above 0, that fraction of the
    neurons with the smallest masks. No fine-tuning afterwards (as the paper).

    Parameters: eps (default 0.4), anp_steps (default 1), alpha (default 0.2), mask_lr (default 0.2),
    iterations (default 2000), batch_size (default 128, sampled with replacement), threshold (default
    0.2), prune_fraction (default 0: prune by threshold).
    """

    spec_type = AnpMethod
    spec: AnpMethod
    paper: ClassVar[str] = "Wu and Wang, NeurIPS 2021 (ANP)"

    def units_of_work(self, n: int) -> float:
        """One unit per iteration."""
        return float(self.spec.iterations)

    def repair(self, context: RepairContext) -> RepairResult:
        """Learn the neuron masks under adversarial perturbations, then prune the low ones."""
        units = perturbed_units(context.graph)
        masks = self.learn_masks(context, units)
        pruned = self.select(units, masks)
        for unit, channels in pruned.items():
            prune(context.graph, unit, channels)
        values = torch.cat([masks[u.value] for u in units])
        return RepairResult(
            pruned=pruned,
            details={
                "iterations": int(self.spec.iterations),
                "neurons": [u.value for u in units],
                "mask_min": float(values.min()),
                "masks_below_threshold": int((values < float(self.spec.threshold)).sum()),
            },
        )

    def learn_masks(self, context: RepairContext, units: list[Unit]) -> dict[str, Tensor]:
        """The learnt mask of every perturbed unit (detached, in [0, 1])."""
        device, eps, n = context.device, float(self.spec.eps), len(context.x)
        tensors = context.graph.onnx_tensors()
        shift = {u.value: _shift(tensors, u, device) for u in units}
        masks = {u.value: torch.ones(u.channels, device=device, requires_grad=True) for u in units}
        weight_noise = {u.value: torch.zeros(u.channels, device=device, requires_grad=True) for u in units}
        bias_noise = {u.value: torch.zeros(u.channels, device=device, requires_grad=True) for u in units}
        noise = [*weight_noise.values(), *bias_noise.values()]
        perturbed = [False]

        def gate(value_name: str, value: Tensor) -> Tensor:
            b = channel_view(shift[value_name], value)
            weight = masks[value_name] + (weight_noise[value_name] if perturbed[0] else 0.0)
            bias = 1.0 + bias_noise[value_name] if perturbed[0] else None
            out = channel_view(weight, value) * (value - b)
            return out + (b if bias is None else channel_view(bias, value) * b)

        def loss(xb: Tensor, yb: Tensor, noisy: bool) -> Tensor:
            perturbed[0] = noisy
            return functional.cross_entropy(model(xb), yb)

        model = context.model()
        optimizer = torch.optim.SGD(list(masks.values()), lr=float(self.spec.mask_lr), momentum=0.9)
        generator = seeded_generator(device, context.seed, 59)
        x_all = torch.as_tensor(context.x, device=device)
        y_all = torch.as_tensor(context.y, device=device, dtype=torch.long)
        with _frozen(model), hooked(context.graph, [u.value for u in units], gate):
            for iteration in range(int(self.spec.iterations)):
                pick = torch.randint(n, (int(self.spec.batch_size),), generator=generator, device=device)
                xb, yb = x_all[pick], y_all[pick]
                if eps > 0:
                    with torch.no_grad():
                        for value in noise:
                            value.uniform_(-eps, eps, generator=generator)
                    for _ in range(int(self.spec.anp_steps)):
                        grads = torch.autograd.grad(loss(xb, yb, True), noise)
                        with torch.no_grad():
                            for value, grad in zip(noise, grads, strict=True):
                                value.add_(eps / int(self.spec.anp_steps) * grad.sign())
                natural = loss(xb, yb, False)
                total = float(self.spec.alpha) * natural
                if eps > 0:
                    total = total + (1 - float(self.spec.alpha)) * loss(xb, yb, True)
                optimizer.zero_grad(set_to_none=True)
                total.backward()  # type: ignore[no-untyped-call]
                optimizer.step()
                with torch.no_grad():
                    for mask in masks.values():
                        mask.clamp_(0.0, 1.0)
                if context.progress is not None:
                    context.progress.advance(1.0, f"anp iteration {iteration + 1}/{self.spec.iterations}")
        return {name: mask.detach() for name, mask in masks.items()}

    def select(self, units: list[Unit], masks: dict[str, Tensor]) -> dict[Unit, list[int]]:
        """The neurons to prune: mask below the threshold, or the prune_fraction with the smallest masks."""
        if float(self.spec.prune_fraction) > 0:
            values = torch.cat([masks[u.value] for u in units])
            count = int(float(self.spec.prune_fraction) * len(values))
            chosen = set(torch.argsort(values, stable=True)[:count].tolist())
            out, offset = {}, 0
            for u in units:
                out[u] = [c for c in range(u.channels) if offset + c in chosen]
                offset += u.channels
            return out
        return {
            u: torch.nonzero(masks[u.value] < float(self.spec.threshold)).flatten().tolist() for u in units
        }


def perturbed_units(graph: OnnxGraphModule) -> list[Unit]:
    """ANP's neurons, each reduced to the slice pruning zeroes (weight or BN scale; the bias is kept):
    the batch-normalised channels when the model has batch norm, else all conv and hidden linear units."""
    units = find_units(graph)
    if not units:
        raise ValueError("the model has no convolutional or hidden linear neurons to prune")
    tensors = graph.onnx_tensors()
    normed = [u for u in units if u.kind == "conv" and tensors[u.zero[0][0]].dim() == 1]
    return [
        dataclasses.replace(u, zero=u.zero[:1], bias=u.zero[1][0] if len(u.zero) > 1 else None)
        for u in (normed or units)
    ]


def _shift(tensors: dict[str, Tensor], unit: Unit, device: torch.device) -> Tensor:
    """The unit's per-channel bias (batch-norm shift, conv or linear bias), zeros when it has none."""
    if unit.bias is None:
        return torch.zeros(unit.channels, device=device)
    return tensors[unit.bias].detach().to(device).reshape(-1)


@contextmanager
def _frozen(model: nn.Module) -> Iterator[None]:
    """Training mode with frozen parameters; running statistics and modes restored afterwards."""
    params = list(model.parameters())
    flags = [p.requires_grad for p in params]
    buffers = {name: b.detach().clone() for name, b in model.named_buffers()}
    modes = {name: m.training for name, m in model.named_modules()}
    for p in params:
        p.requires_grad_(False)
    model.train()
    try:
        yield
    finally:
        for p, flag in zip(params, flags, strict=True):
            p.requires_grad_(flag)
        with torch.no_grad():
            for name, b in model.named_buffers():
                b.copy_(buffers[name])
        for name, m in model.named_modules():
            m.training = modes[name]
