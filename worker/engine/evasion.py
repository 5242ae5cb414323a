"""Evasion evaluation: run configured attacks over a dataset in batches and build the report."""

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from worker.engine.attacks.base import Attack
from worker.engine.attacks.norms import perturbation_norm
from worker.engine.attacks.registry import attack_class
from worker.engine.attacks.targets import attackable, select_targets
from worker.engine.evasion_metrics import WorstCase, eps_result
from worker.engine.sanity_checks import run_checks

ProgressCallback = Callable[[float, str], None]

# Seed-sequence key of the random-target draw, apart from the per-eps keys 0..n_eps-1.
_TARGETS_KEY = 1 << 20


@dataclass
class EvasionOutcome:
    """The report (without kind, ids, versions and seed, which the caller adds) and adversarial arrays.

    `adversarial` maps an artifact name ("adversarial_<attack>_<norm>_<index>") to arrays for one
    .npz: x_adv [n_eps, N, ...] float32, eps [n_eps] float64, y [N] int64, success [n_eps, N]
    bool, attacked [N] bool, and targets [N] int64 for targeted attacks.
    """

    report: dict[str, Any]
    adversarial: dict[str, dict[str, np.ndarray]]


@dataclass(frozen=True)
class _Data:
    """The evaluated set on the CPU, its clean logits and correctness, and the batch bounds."""

    x: Tensor
    y: Tensor
    logits: Tensor
    clean_correct: Tensor
    batches: list[tuple[int, int]]


class _Progress:
    """Turns work units into a monotone fraction for the caller's callback."""

    def __init__(self, total: float, callback: ProgressCallback | None) -> None:
        """Start at zero of total units."""
        self.total, self.done, self.callback = max(total, 1.0), 0.0, callback

    def advance(self, units: float, stage: str) -> None:
        """Record finished units and report; exceptions from the callback propagate (cancellation)."""
        self.done = min(self.total, self.done + units)
        if self.callback is not None:
            self.callback(self.done / self.total, stage)


def _generator(device: torch.device, seed: int, *keys: int) -> torch.Generator:
    """A generator on device seeded from the run seed and a position, independent of other attacks."""
    state = np.random.SeedSequence([seed, *keys]).generate_state(2, dtype=np.uint32)
    return torch.Generator(device=device).manual_seed(int(state[0]) << 32 | int(state[1]))


def _batches(n: int, batch_size: int) -> list[tuple[int, int]]:
    """Start and stop of each batch."""
    return [(start, min(start + batch_size, n)) for start in range(0, n, batch_size)]


@torch.no_grad()
def _clean_logits(
    model: nn.Module, x: Tensor, batches: list[tuple[int, int]], device: torch.device, progress: _Progress
) -> Tensor:
    """Clean logits of every sample, on the CPU."""
    chunks = []
    for index, (start, stop) in enumerate(batches):
        chunks.append(model(x[start:stop].to(device)).float().cpu())
        progress.advance(stop - start, f"clean batch {index + 1}/{len(batches)}")
    return torch.cat(chunks)


def _model_device(model: nn.Module) -> torch.device:
    """Device of the model's first parameter or buffer; CPU for a stateless model."""
    for tensor in (*model.parameters(), *model.buffers()):
        return tensor.device
    return torch.device("cpu")


def _validate(x: np.ndarray, y: np.ndarray, input_range: tuple[float, float], batch_size: int) -> None:
    """Reject inputs the evaluation cannot be honest about."""
    if x.ndim < 2 or y.ndim != 1 or len(x) != len(y) or len(x) == 0:
        raise ValueError(f"need x [N, ...] and y [N] with N > 0, got {x.shape} and {y.shape}")
    if not np.issubdtype(y.dtype, np.integer) or (y < 0).any():
        raise ValueError("y must hold non-negative integer labels")
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    low, high = input_range
    if not np.isfinite(x).all() or x.min() < low - 1e-6 or x.max() > high + 1e-6:
        raise ValueError(f"x must be finite and inside the input range [{low}, {high}]")


def run_evasion(
    model: nn.Module,
    x: np.ndarray,
    y: np.ndarray,
    attacks: Sequence[Mapping[str, Any]],
    *,
    input_range: tuple[float, float] = (0.0, 1.0),
    batch_size: int = 256,
    seed: int = 0,
    device: torch.device | None = None,
    progress: ProgressCallback | None = None,
) -> EvasionOutcome:
    """Evaluate the model under each attack spec at each eps; streams the data in batches.

    The model is put in eval mode for the run (its previous mode is restored afterwards); with
    `device` given it is moved there, else the model's own device is used. Samples misclassified
    clean are not attacked (x_adv = x). Same seed, same inputs: same numbers (except seconds).
    """
    _validate(x, y, input_range, batch_size)
    if device is not None:
        model.to(device)
    device = device or _model_device(model)
    x_all = torch.as_tensor(np.ascontiguousarray(x, dtype=np.float32))
    y_all = torch.as_tensor(y, dtype=torch.long)
    batches = _batches(len(x_all), batch_size)
    built = [attack_class(spec["name"]).from_spec(spec, input_range=input_range) for spec in attacks]
    total = len(x_all) * (1 + sum(a.work_units * len(s["eps"]) for a, s in zip(built, attacks, strict=True)))
    tracker = _Progress(total, progress)
    was_training = model.training
    model.eval()
    try:
        logits = _clean_logits(model, x_all, batches, device, tracker)
        if int(y_all.max()) >= logits.shape[1]:
            raise ValueError(
                f"labels go up to {int(y_all.max())} but the model has {logits.shape[1]} outputs"
            )
        clean_correct = logits.argmax(dim=1) == y_all
        data = _Data(x_all, y_all, logits, clean_correct, batches)
        worst = WorstCase(len(x_all))
        entries, adversarial = [], {}
        for index, (attack, spec) in enumerate(zip(built, attacks, strict=True)):
            entry, arrays = _evaluate_attack(
                model,
                attack,
                spec,
                data,
                index=index,
                seed=seed,
                device=device,
                progress=tracker,
                worst=worst,
            )
            entries.append(entry)
            adversarial[f"adversarial_{attack.name}_{attack.norm}_{index}"] = arrays
    finally:
        model.train(was_training)
    report: dict[str, Any] = {
        "n_samples": len(x_all),
        "clean_accuracy": float(clean_correct.double().mean()),
        "input_range": [float(input_range[0]), float(input_range[1])],
        "attacks": entries,
        "worst_case": worst.rows(),
    }
    report["checks"] = run_checks(report)
    return EvasionOutcome(report=report, adversarial=adversarial)


def _evaluate_attack(
    model: nn.Module,
    attack: Attack,
    spec: Mapping[str, Any],
    data: "_Data",
    *,
    index: int,
    seed: int,
    device: torch.device,
    progress: _Progress,
    worst: WorstCase,
) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Run one attack spec at every eps; returns its report entry and artifact arrays."""
    x_all, y_all, logits, batches = data.x, data.y, data.logits, data.batches
    targets, attacked, target_mode = None, data.clean_correct.clone(), None
    if attack.targeted:
        target_mode = spec.get("target_mode") or "least_likely"
        targets = select_targets(
            target_mode,
            y_all,
            num_classes=logits.shape[1],
            clean_logits=logits,
            target_class=spec.get("target_class"),
            generator=_generator(torch.device("cpu"), seed, index, _TARGETS_KEY),
        )
        attacked &= attackable(y_all, targets)
    eps_values = [float(eps) for eps in spec["eps"]]
    x_np = x_all.numpy()
    x_adv = np.repeat(x_np[None], len(eps_values), axis=0)
    success = np.zeros((len(eps_values), len(x_all)), dtype=bool)
    results = []
    for eps_index, eps in enumerate(eps_values):
        generator = _generator(device, seed, index, eps_index)
        predictions = logits.argmax(dim=1)
        perturbation = torch.zeros(len(x_all))
        started = time.perf_counter()
        for number, (start, stop) in enumerate(batches):
            chosen = start + attacked[start:stop].nonzero()[:, 0]
            if chosen.numel():
                x_clean = x_all[chosen].to(device)
                outcome = attack.run(
                    model,
                    x_clean,
                    y_all[chosen].to(device),
                    eps=eps,
                    targets=None if targets is None else targets[chosen].to(device),
                    generator=generator,
                )
                x_adv[eps_index, chosen.numpy()] = outcome.x_adv.cpu().numpy()
                predictions[chosen] = outcome.predictions.cpu()
                success[eps_index, chosen.numpy()] = outcome.success.cpu().numpy()
                perturbation[chosen] = perturbation_norm(outcome.x_adv - x_clean, attack.norm).float().cpu()
            stage = f"{attack.name} {attack.norm} eps={eps:g} batch {number + 1}/{len(batches)}"
            progress.advance(attack.work_units * (stop - start), stage)
        robust = (predictions == y_all).numpy()
        worst.add(attack.norm, eps, robust)
        row = eps_result(
            eps,
            robust=robust,
            success=success[eps_index],
            perturbation=perturbation.numpy(),
            attacked=attacked.numpy(),
            seconds=time.perf_counter() - started,
        )
        results.append({**row, **attack.params_at(eps)})
    params = attack.params()
    if attack.targeted:
        params["target_class"] = spec.get("target_class") if target_mode == "fixed" else None
    entry = {
        "name": attack.name,
        "norm": attack.norm,
        "targeted": attack.targeted,
        "target_mode": target_mode,
        "params": params,
        "results": results,
    }
    arrays = {
        "x_adv": x_adv,
        "eps": np.asarray(eps_values, dtype=np.float64),
        "y": y_all.numpy().copy(),
        "success": success,
        "attacked": attacked.numpy().copy(),
    }
    if targets is not None:
        arrays["targets"] = targets.numpy().copy()
    return entry, arrays
