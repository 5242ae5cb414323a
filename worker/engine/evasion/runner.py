"""Evasion evaluation: run configured attacks over a dataset in batches and build the report.

The work splits along whole batches: `evaluate_slice` attacks a slice (per-sample outcomes only) and
`merge_evasion` joins the slices and computes metrics, the worst case and every check once; one call
of `run_evasion` is both over all samples. The report does not depend on the split.
"""

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from app.schemas.evasion import AttackParamsBase, EvasionAttackSpec
from worker.engine.batching import BatchFit, batch_bounds
from worker.engine.evasion.attack_eval import attack_slice
from worker.engine.evasion.attacks.base import Attack
from worker.engine.evasion.attacks.registry import as_spec
from worker.engine.evasion.data import EvaluationData
from worker.engine.evasion.merge import build_attacks, merge_evasion
from worker.engine.evasion.outcome import EvasionOutcome
from worker.engine.evasion.patch_eval import physical_units
from worker.engine.evasion.sanity_runs import sanity_run_units
from worker.engine.evasion.slices import EvasionSlice
from worker.engine.interrupt import Interruptible, progress_check
from worker.engine.progress import ProgressCallback, ProgressTracker
from worker.engine.sample_streams import sample_batch

__all__ = ["EvasionOutcome", "ProgressCallback", "evaluate_slice", "finish_evasion", "run_evasion"]

# What the runners take per attack: a typed spec (a plain mapping is validated into one first).
AttackEntry = EvasionAttackSpec | Mapping[str, Any]
# Sample-batch key of the clean pass, apart from the attacks' (index, eps) keys.
CLEAN_KEY = 1 << 24


def typed_specs(attacks: Sequence[AttackEntry]) -> list[EvasionAttackSpec]:
    """The attack specs typed (library callers may pass their JSON form)."""
    return [as_spec(spec) for spec in attacks]


@torch.no_grad()
def _clean_logits(
    model: nn.Module,
    x: Tensor,
    batches: list[tuple[int, int]],
    device: torch.device,
    progress: ProgressTracker,
    offset: int = 0,
) -> Tensor:
    """Clean logits of every sample, on the CPU (a device out-of-memory halves the batch); `offset` is the
    position of x's first sample in the evaluated set (a randomized model's draws are keyed by it)."""
    chunks: list[Tensor] = []
    fit = BatchFit(max((stop - start for start, stop in batches), default=1))

    def clean(a: int, b: int) -> None:
        with sample_batch(range(offset + a, offset + b), CLEAN_KEY):
            chunks.append(model(x[a:b].to(device)).float().cpu())

    for index, (start, stop) in enumerate(batches):
        fit.run(start, stop, clean)
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


def slice_units(n: int, attacks: Sequence[EvasionAttackSpec], built: Mapping[int, Attack]) -> int:
    """Work units of the clean pass and the eps-bounded attacks on n samples, for progress weighting."""
    return n + sum(round(attacks[index].passes_per_sample() * attacks[index].runs() * n) for index in built)


def _prepared(
    model: nn.Module | None,
    black_box: nn.Module | None,
    attacks: Sequence[EvasionAttackSpec],
    tracker: ProgressTracker,
    judge: nn.Module | None = None,
) -> tuple[nn.Module | None, nn.Module | None, nn.Module, nn.Module | None]:
    """The models wrapped so cancellation reaches inside a batch, the one used for clean logits without a
    judge, and the judge (None: each attacked model judges itself)."""
    needs_gradients = [spec.name for spec in attacks if type(spec).white_box]
    if needs_gradients and model is None:
        raise ValueError(f"{needs_gradients[0]} needs gradients, but only a black-box model was given")
    check = progress_check(tracker)
    model = Interruptible(model, check) if model is not None else None
    black_box = Interruptible(black_box, check) if black_box is not None else None
    reference = model if model is not None else black_box
    if reference is None:
        raise ValueError("the evaluation needs a model or a black-box model")
    return model, black_box, reference, Interruptible(judge, check) if judge is not None else None


def _slice(
    model: nn.Module | None,
    black_box: nn.Module | None,
    reference: nn.Module,
    x_all: Tensor,
    y_all: Tensor,
    attacks: Sequence[EvasionAttackSpec],
    built: Mapping[int, Attack],
    *,
    batch_size: int,
    seed: int,
    device: torch.device,
    tracker: ProgressTracker,
    span: tuple[int, int],
    judge: nn.Module | None = None,
) -> EvasionSlice:
    """Clean logits and each eps-bounded attack's per-sample outcomes on the slice (models prepared); with
    a judge, the clean logits (hence the attacked samples) and every verdict are the judge's."""
    batches = batch_bounds(len(x_all), batch_size)
    logits = _clean_logits(judge or reference, x_all, batches, device, tracker, span[0])
    if int(y_all.max()) >= logits.shape[1]:
        raise ValueError(f"labels go up to {int(y_all.max())} but the model has {logits.shape[1]} outputs")
    data = EvaluationData(x_all, y_all, logits, logits.argmax(dim=1) == y_all, batches)
    parts = {}
    for index, attack in built.items():
        target = model if attack.spec_type.white_box or black_box is None else black_box
        assert target is not None
        spec = attacks[index]
        assert isinstance(spec, AttackParamsBase)
        parts[index] = attack_slice(
            target, attack, spec, data, index=index, seed=seed, device=device, progress=tracker,
            span=span, judge=judge,
        )  # fmt: skip
    return EvasionSlice(start=span[0], logits=logits.numpy(), attacks=parts)


def _resolve_device(
    model: nn.Module | None, black_box: nn.Module | None, device: torch.device | None
) -> torch.device:
    """Move the reference model to device if given, else use its own device."""
    reference = model if model is not None else black_box
    if reference is None:
        raise ValueError("the evaluation needs a model or a black-box model")
    if device is not None:
        reference.to(device)
    return device or _model_device(reference)


def evaluate_slice(
    model: nn.Module | None,
    x: np.ndarray,
    y: np.ndarray,
    attacks: Sequence[AttackEntry],
    *,
    start: int,
    total: int,
    input_range: tuple[float, float] = (0.0, 1.0),
    batch_size: int = 256,
    seed: int = 0,
    device: torch.device | None = None,
    progress: ProgressCallback | None = None,
    black_box: nn.Module | None = None,
    judge: nn.Module | None = None,
) -> EvasionSlice:
    """Attack samples [start, start + len(x)) of an evaluated set of `total` samples (whole batches).

    Runs the clean pass and every eps-bounded attack; physical-world attacks are not sliced (a job with
    one runs in one piece). Same seed, same slice bounds: the same per-sample outcomes as that part
    of an evaluation over all samples.
    """
    _validate(x, y, input_range, batch_size)
    if start % batch_size or start + len(x) > total:
        raise ValueError("a slice starts at a whole batch and lies inside the evaluated set")
    device = _resolve_device(model, black_box, device)
    attacks = typed_specs(attacks)
    built = build_attacks(attacks, input_range)
    tracker = ProgressTracker(slice_units(len(x), attacks, built), progress)
    model, black_box, reference, judge = _prepared(model, black_box, attacks, tracker, judge)
    was_training = reference.training
    reference.eval()
    try:
        return _slice(
            model, black_box, reference, torch.as_tensor(np.ascontiguousarray(x, dtype=np.float32)),
            torch.as_tensor(y, dtype=torch.long), attacks, built, batch_size=batch_size, seed=seed,
            device=device, tracker=tracker, span=(start, total), judge=judge,
        )  # fmt: skip
    finally:
        reference.train(was_training)


def run_evasion(
    model: nn.Module | None,
    x: np.ndarray,
    y: np.ndarray,
    attacks: Sequence[AttackEntry],
    *,
    input_range: tuple[float, float] = (0.0, 1.0),
    batch_size: int = 256,
    seed: int = 0,
    device: torch.device | None = None,
    progress: ProgressCallback | None = None,
    black_box: nn.Module | None = None,
    sanity_runs: bool = True,
    judge: nn.Module | None = None,
) -> EvasionOutcome:
    """Evaluate the model under each attack spec at each eps; streams the data in batches.

    `model` is the differentiable module (None for a model usable black-box only); `black_box`, when
    given, is the same classifier with no gradient path (onnxruntime), and attacks that only query
    outputs run on it. The model is put in eval mode for the run (its previous mode is restored
    afterwards); with `device` given it is moved there, else the model's own device is used. Samples
    misclassified clean are not attacked (x_adv = x). Same seed, same inputs: same numbers (except
    seconds), however the samples are split into slices. With `sanity_runs`, the checks that need extra
    attack runs (an unbounded attack, a doubled iteration budget) run too. `judge`, when given, is the
    classifier every figure comes from (a defense's deployed model): its clean pass decides which samples
    are attacked and its verdict on each attack's projected output (inside the attack's verified call)
    gives the predictions; the attacks still search on `model` or `black_box`.
    """
    _validate(x, y, input_range, batch_size)
    device = _resolve_device(model, black_box, device)
    attacks = typed_specs(attacks)
    built = build_attacks(attacks, input_range)
    patch_total = physical_units(attacks)
    extra = sanity_run_units(len(x), attacks) if sanity_runs else 0
    tracker = ProgressTracker(slice_units(len(x), attacks, built) + patch_total + extra, progress)
    model, black_box, reference, judge = _prepared(model, black_box, attacks, tracker, judge)
    x_all = torch.as_tensor(np.ascontiguousarray(x, dtype=np.float32))
    y_all = torch.as_tensor(y, dtype=torch.long)
    was_training = reference.training
    reference.eval()
    try:
        part = _slice(
            model, black_box, reference, x_all, y_all, attacks, built, batch_size=batch_size, seed=seed,
            device=device, tracker=tracker, span=(0, len(x_all)), judge=judge,
        )  # fmt: skip
        return merge_evasion(
            model, x, y, attacks, [part], input_range=input_range, batch_size=batch_size, seed=seed,
            device=device, tracker=tracker, sanity_runs=sanity_runs, judge=judge,
        )  # fmt: skip
    finally:
        reference.train(was_training)


def finish_evasion(
    model: nn.Module | None,
    x: np.ndarray,
    y: np.ndarray,
    attacks: Sequence[AttackEntry],
    parts: Sequence[EvasionSlice],
    *,
    input_range: tuple[float, float] = (0.0, 1.0),
    batch_size: int = 256,
    seed: int = 0,
    device: torch.device | None = None,
    progress: ProgressCallback | None = None,
    black_box: nn.Module | None = None,
    sanity_runs: bool = True,
    judge: nn.Module | None = None,
) -> EvasionOutcome:
    """The report of an evaluation from the slices evaluate_slice returned (any split, any order)."""
    _validate(x, y, input_range, batch_size)
    device = _resolve_device(model, black_box, device)
    attacks = typed_specs(attacks)
    extra = sanity_run_units(len(x), attacks) if sanity_runs else 0
    patch_total = physical_units(attacks)
    tracker = ProgressTracker(patch_total + extra, progress)
    model, black_box, reference, judge = _prepared(model, black_box, attacks, tracker, judge)
    was_training = reference.training
    reference.eval()
    try:
        return merge_evasion(
            model, x, y, attacks, parts, input_range=input_range, batch_size=batch_size, seed=seed,
            device=device, tracker=tracker, sanity_runs=sanity_runs, judge=judge,
        )  # fmt: skip
    finally:
        reference.train(was_training)
