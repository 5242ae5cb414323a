"""ONNX intake: validation against onnxruntime, the white-box torch module and the black-box classifier."""

from collections.abc import Callable, Sequence

import numpy as np
import onnx
import torch

from worker.engine.models.intake.errors import IntakeReport, ModelRejected
from worker.engine.models.intake.fixed_batch import OrtRunner, PerSampleModule, runs_batched
from worker.engine.models.intake.limits import DEFAULT_LIMITS, IntakeLimits
from worker.engine.models.intake.onnx_parse import DYNAMIC_BATCH_HINT, make_session
from worker.engine.models.intake.onnx_prepare import prepare_onnx
from worker.engine.models.onnx_graph import UnsupportedOpsError, build_torch_module, default_opset

PARITY_RTOL = 1e-4
Batches = list[tuple[np.ndarray, np.ndarray]]


def _run(run: Callable[[np.ndarray], np.ndarray], x: np.ndarray, num_classes: int) -> np.ndarray:
    """Run onnxruntime on one batch and check the logits' shape and finiteness."""
    batch = x.shape[0]
    try:
        out = run(x)
    except Exception as exc:
        if batch == 1:
            raise ModelRejected(
                "onnx_invalid", f"onnxruntime failed on an input of shape {list(x.shape)}: {exc}"
            ) from exc
        raise ModelRejected(
            "shape_mismatch",
            f"The model runs on a batch of 1 but fails on a batch of {batch} ({exc}); the batch "
            f"dimension looks fixed. {DYNAMIC_BATCH_HINT}",
        ) from exc
    out = np.asarray(out)
    if out.shape != (batch, num_classes):
        raise ModelRejected(
            "shape_mismatch",
            f"For an input of shape {list(x.shape)} the model returned shape {list(out.shape)}; "
            f"expected [{batch}, {num_classes}] logits.",
        )
    if not np.issubdtype(out.dtype, np.floating) or not np.isfinite(out).all():
        raise ModelRejected("onnx_invalid", "The model's outputs are not finite floating-point logits.")
    return out.astype(np.float32)


def _per_sample(run: Callable[[np.ndarray], np.ndarray], x: np.ndarray, num_classes: int) -> np.ndarray:
    """The logits of each sample run alone, concatenated."""
    return np.concatenate([_run(run, x[i : i + 1], num_classes) for i in range(x.shape[0])])


def _torch_outputs(
    module: torch.nn.Module, batches: Batches, fixed: bool
) -> tuple[torch.nn.Module, list[np.ndarray]]:
    """The module to use (wrapped per sample when a fixed-batch graph does not batch) and its outputs."""
    with torch.no_grad():
        if fixed:

            def run(batch: np.ndarray) -> np.ndarray:
                """The module on a NumPy batch."""
                return module(torch.from_numpy(batch)).numpy()

            if not all(runs_batched(run, x, expected) for x, expected in batches):
                module = PerSampleModule(module).eval()
        return module, [module(torch.from_numpy(x)).numpy() for x, _ in batches]


def _white_box(
    model: onnx.ModelProto, batches: Batches, fixed: bool
) -> tuple[float | None, list[str], list[str]]:
    """Build the torch module and compare it with onnxruntime: (max abs diff, missing ops, notes)."""
    try:
        module, outputs = _torch_outputs(build_torch_module(model).eval(), batches, fixed)
    except UnsupportedOpsError as exc:
        return None, exc.missing, [f"Black-box only: {exc}"]
    except Exception as exc:  # the model still works black-box; the note says why white-box failed
        return None, [], [f"Black-box only: the graph could not be converted to PyTorch: {exc}"]
    worst, scale = 0.0, 1.0
    for (_, expected), got in zip(batches, outputs, strict=True):
        if got.shape != expected.shape:
            raise ModelRejected(
                "parity_failed",
                f"The PyTorch conversion returned shape {list(got.shape)}; "
                f"onnxruntime returned {list(expected.shape)}.",
            )
        worst = max(worst, float(np.abs(got.astype(np.float32) - expected).max()))
        scale = max(scale, float(np.abs(expected).max()))
    tolerance = PARITY_RTOL * scale
    if not worst <= tolerance:
        raise ModelRejected(
            "parity_failed",
            f"The PyTorch conversion disagrees with onnxruntime: max abs diff {worst:.3g} exceeds the "
            f"tolerance {tolerance:.3g}. Please report this model to the Gauntlet maintainers.",
        )
    notes = [f"White-box: the PyTorch graph matches onnxruntime (max abs diff {worst:.3g})."]
    if fixed:
        how = "one sample at a time" if isinstance(module, PerSampleModule) else "whole batches"
        notes.append(f"The PyTorch module runs {how}.")
    return worst, [], notes


def _onnxruntime_batches(
    ort_bytes: bytes,
    input_name: str,
    fixed: bool,
    xs: list[np.ndarray],
    num_classes: int,
    limits: IntakeLimits,
) -> tuple[Batches, str, list[str]]:
    """Run every input batch in onnxruntime: (input, logits) pairs, the batch mode and notes.

    A fixed-batch graph's reference logits are computed one sample at a time; it runs whole batches
    ("symbolic") only if that reproduces them, else "chunked".
    """
    runner = OrtRunner(make_session(ort_bytes, limits), input_name)
    if not fixed:
        return [(x, _run(runner.run_whole, x, num_classes)) for x in xs], "dynamic", []
    batches = [(x, _per_sample(runner.run_whole, x, num_classes)) for x in xs]
    runner.chunked = not all(runs_batched(runner.run_whole, x, expected) for x, expected in batches)
    how = "one sample at a time (the graph hard-codes its batch)" if runner.chunked else "whole batches"
    note = f"The input has a fixed batch of 1; onnxruntime runs it with a symbolic batch, {how}."
    return batches, "chunked" if runner.chunked else "symbolic", [note]


def validate_onnx(
    data: bytes,
    input_shape: Sequence[int],
    num_classes: int,
    input_range: tuple[float, float] = (0.0, 1.0),
    *,
    samples: int = 8,
    seed: int = 0,
    limits: IntakeLimits = DEFAULT_LIMITS,
) -> IntakeReport:
    """Vet an ONNX upload: format, limits, checker, interface, onnxruntime runs, batching, torch parity.

    Memory: at most one parsed copy of the model exists at a time; it is dropped while onnxruntime
    loads its own and parsed again (from the bytes onnxruntime ran) for the torch module.
    """
    if samples < 1 or num_classes < 1 or any(int(d) < 1 for d in input_shape):
        raise ValueError("samples, num_classes and every input dim must be positive")
    sizes = (1, samples, 3)
    prepared = prepare_onnx(data, limits, input_shape=input_shape, batch=max(sizes))
    opset, ir_version = default_opset(prepared.model), prepared.model.ir_version
    ort_bytes, input_name, fixed = prepared.ort_bytes, prepared.input_name, prepared.fixed_batch
    notes = [f"ONNX IR version {ir_version}, opset {opset}.", *prepared.notes]
    del prepared
    rng = np.random.default_rng(seed)
    low, high = input_range
    xs = [rng.uniform(low, high, size=(size, *input_shape)).astype(np.float32) for size in sizes]
    batches, batch_mode, runtime_notes = _onnxruntime_batches(
        ort_bytes, input_name, fixed, xs, num_classes, limits
    )
    notes += runtime_notes
    notes.append(
        f"onnxruntime ran batches of 1, 3 and {samples}; outputs are finite [batch, {num_classes}] logits."
    )
    model = onnx.load_model_from_string(ort_bytes)
    del ort_bytes
    diff, missing, white_box_notes = _white_box(model, batches, fixed)
    return IntakeReport(
        white_box=diff is not None,
        max_abs_diff=diff,
        missing_ops=missing,
        onnx_opset=opset,
        notes=notes + white_box_notes,
        batch_mode=batch_mode,
    )
