"""Evasion evaluation: run configured attacks over a dataset in batches and build the report."""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from worker.engine.batching import batch_bounds
from worker.engine.evasion.attack_eval import evaluate_attack
from worker.engine.evasion.attacks.registry import attack_class
from worker.engine.evasion.data import EvaluationData
from worker.engine.evasion.metrics import WorstCase
from worker.engine.evasion.patch_eval import PHYSICAL_ATTACKS, patch_units
from worker.engine.evasion.sanity_checks import run_checks
from worker.engine.evasion.sanity_runs import sanity_run_checks, sanity_run_units
from worker.engine.interrupt import Interruptible, progress_check
from worker.engine.progress import ProgressCallback, ProgressTracker

__all__ = ["EvasionOutcome", "ProgressCallback", "run_evasion"]


@dataclass
class EvasionOutcome:
    """The report (without kind, ids, versions and seed, which the caller adds) and adversarial arrays.

    `adversarial` maps an artifact name ("adversarial_<attack>_<norm>_<index>") to arrays for one
    .npz: x_adv [n_eps, N, ...] float32, eps [n_eps] float64, y [N] int64, success [n_eps, N]
    bool, attacked [N] bool, and targets [N] int64 for targeted attacks; a patch attack's entry
    ("patch_<index>") holds its patches and split indices. `images` maps a file name to PNG bytes (the
    patches, for people).
    """

    report: dict[str, Any]
    adversarial: dict[str, dict[str, np.ndarray]]
    images: dict[str, bytes] = field(default_factory=dict)


@torch.no_grad()
def _clean_logits(
    model: nn.Module,
    x: Tensor,
    batches: list[tuple[int, int]],
    device: torch.device,
    progress: ProgressTracker,
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
    model: nn.Module | None,
    x: np.ndarray,
    y: np.ndarray,
    attacks: Sequence[Mapping[str, Any]],
    *,
    input_range: tuple[float, float] = (0.0, 1.0),
    batch_size: int = 256,
    seed: int = 0,
    device: torch.device | None = None,
    progress: ProgressCallback | None = None,
    black_box: nn.Module | None = None,
    sanity_runs: bool = True,
) -> EvasionOutcome:
    """Evaluate the model under each attack spec at each eps; streams the data in batches.

    `model` is the differentiable module (None for a model usable black-box only); `black_box`, when
    given, is the same classifier with no gradient path (onnxruntime), and attacks that only query
    outputs run on it. The model is put in eval mode for the run (its previous mode is restored
    afterwards); with `device` given it is moved there, else the model's own device is used. Samples
    misclassified clean are not attacked (x_adv = x). Same seed, same inputs: same numbers (except
    seconds). With `sanity_runs`, the checks that need extra attack runs (an unbounded attack, a doubled
    iteration budget) run too.
    """
    _validate(x, y, input_range, batch_size)
    reference = model if model is not None else black_box
    if reference is None:
        raise ValueError("run_evasion needs a model or a black-box model")
    if device is not None:
        reference.to(device)
    device = device or _model_device(reference)
    x_all = torch.as_tensor(np.ascontiguousarray(x, dtype=np.float32))
    y_all = torch.as_tensor(y, dtype=torch.long)
    batches = batch_bounds(len(x_all), batch_size)
    built = {
        index: attack_class(spec["name"]).from_spec(spec, input_range=input_range)
        for index, spec in enumerate(attacks)
        if spec["name"] not in PHYSICAL_ATTACKS
    }
    units = [
        patch_units(spec)
        if index not in built
        else built[index].work_units * len(x_all) * (1 if built[index].minimum_norm else len(spec["eps"]))
        for index, spec in enumerate(attacks)
    ]
    total = len(x_all) + sum(units) + (sanity_run_units(len(x_all), attacks) if sanity_runs else 0)
    tracker = ProgressTracker(total, progress)
    needs_gradients = [a.name for a in built.values() if a.requires_gradients] + [
        spec["name"] for spec in attacks if spec["name"] in PHYSICAL_ATTACKS
    ]
    if needs_gradients and model is None:
        raise ValueError(f"{needs_gradients[0]} needs gradients, but only a black-box model was given")
    # Cancellation reaches inside a batch: every forward pass of any attack may check in.
    check = progress_check(tracker)
    model = Interruptible(model, check) if model is not None else None
    black_box = Interruptible(black_box, check) if black_box is not None else None
    reference = model if model is not None else black_box
    assert reference is not None
    was_training = reference.training
    reference.eval()
    try:
        logits = _clean_logits(reference, x_all, batches, device, tracker)
        if int(y_all.max()) >= logits.shape[1]:
            raise ValueError(
                f"labels go up to {int(y_all.max())} but the model has {logits.shape[1]} outputs"
            )
        clean_correct = logits.argmax(dim=1) == y_all
        data = EvaluationData(x_all, y_all, logits, clean_correct, batches)
        worst = WorstCase(len(x_all))
        entries, adversarial, per_attack, images = [], {}, [], {}
        for index, spec in enumerate(attacks):
            if index not in built:
                assert model is not None
                patch = PHYSICAL_ATTACKS[spec["name"]](
                    model,
                    x,
                    y,
                    spec,
                    index=index,
                    input_range=input_range,
                    seed=seed,
                    device=device,
                    progress=tracker,
                )
                entries.append(patch.entry)
                per_attack.append(patch.arrays)
                adversarial[f"patch_{index}"] = patch.arrays
                images |= {f"patch_{index}_{name}": png for name, png in patch.images.items()}
                continue
            attack = built[index]
            target = model if attack.requires_gradients or black_box is None else black_box
            entry, arrays = evaluate_attack(
                target,
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
            per_attack.append(arrays)
            adversarial[f"adversarial_{attack.name}_{attack.norm}_{index}"] = arrays
        extra_checks = []
        if sanity_runs:
            extra_checks = sanity_run_checks(
                model,
                data,
                attacks,
                per_attack,
                input_range=input_range,
                seed=seed,
                device=device,
                progress=tracker,
            )
    finally:
        reference.train(was_training)
    report: dict[str, Any] = {
        "n_samples": len(x_all),
        "clean_accuracy": float(clean_correct.double().mean()),
        "input_range": [float(input_range[0]), float(input_range[1])],
        "attacks": entries,
        "worst_case": worst.rows(),
    }
    report["checks"] = run_checks(report) + extra_checks
    return EvasionOutcome(report=report, adversarial=adversarial, images=images)
