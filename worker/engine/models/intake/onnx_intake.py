"""ONNX intake: validation against onnxruntime, the white-box torch module and the black-box classifier."""

from collections.abc import Sequence

import numpy as np
import onnx
import onnxruntime as ort
import torch

from worker.engine.models.intake.errors import IntakeReport, ModelRejected
from worker.engine.models.intake.onnx_parse import (
    DYNAMIC_BATCH_HINT,
    check_interface,
    make_session,
    parse_onnx,
)
from worker.engine.models.onnx_graph import (
    GraphBuildError,
    UnsupportedOpsError,
    build_torch_module,
    default_opset,
)

PARITY_RTOL = 1e-4


def _run(session: ort.InferenceSession, input_name: str, x: np.ndarray, num_classes: int) -> np.ndarray:
    """Run onnxruntime on one batch and check the logits' shape and finiteness."""
    batch = x.shape[0]
    try:
        out = session.run(None, {input_name: x})[0]
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


def _white_box(
    model: onnx.ModelProto, batches: list[tuple[np.ndarray, np.ndarray]]
) -> tuple[float | None, list[str], list[str]]:
    """Build the torch module and compare it with onnxruntime: (max abs diff, missing ops, notes)."""
    try:
        module = build_torch_module(model).eval()
        with torch.no_grad():
            outputs = [module(torch.from_numpy(x)).numpy() for x, _ in batches]
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
    return worst, [], [f"White-box: the PyTorch graph matches onnxruntime (max abs diff {worst:.3g})."]


def validate_onnx(
    data: bytes,
    input_shape: Sequence[int],
    num_classes: int,
    input_range: tuple[float, float] = (0.0, 1.0),
    *,
    samples: int = 8,
    seed: int = 0,
) -> IntakeReport:
    """Vet an ONNX upload: safe format, checker, interface, onnxruntime run, dynamic batch, torch parity."""
    if samples < 1 or num_classes < 1 or any(int(d) < 1 for d in input_shape):
        raise ValueError("samples, num_classes and every input dim must be positive")
    model = parse_onnx(data)
    input_name = check_interface(model, input_shape)
    session = make_session(data)
    rng = np.random.default_rng(seed)
    low, high = input_range
    batches = []
    for size in (1, samples, 3):
        x = rng.uniform(low, high, size=(size, *input_shape)).astype(np.float32)
        batches.append((x, _run(session, input_name, x, num_classes)))
    opset = default_opset(model)
    notes = [
        f"ONNX IR version {model.ir_version}, opset {opset}.",
        f"onnxruntime ran batches of 1, 3 and {samples}; outputs are finite [batch, {num_classes}] logits.",
    ]
    diff, missing, white_box_notes = _white_box(model, batches)
    return IntakeReport(
        white_box=diff is not None,
        max_abs_diff=diff,
        missing_ops=missing,
        onnx_opset=opset,
        notes=notes + white_box_notes,
    )


def load_onnx_module(data: bytes) -> torch.nn.Module:
    """The white-box PyTorch module for a vetted ONNX upload, in eval mode."""
    model = parse_onnx(data)
    try:
        return build_torch_module(model).eval()
    except GraphBuildError as exc:
        raise ModelRejected("unsupported_ops", str(exc)) from exc


class OnnxRuntimeClassifier:
    """Black-box access to an ONNX model through onnxruntime; counts every sample queried."""

    def __init__(self, data: bytes) -> None:
        """Vet the bytes and open an onnxruntime CPU session."""
        model = parse_onnx(data)
        initializer_names = {t.name for t in model.graph.initializer}
        inputs = [i.name for i in model.graph.input if i.name not in initializer_names]
        if len(inputs) != 1:
            raise ModelRejected("shape_mismatch", f"The model must have exactly one input, found {inputs}.")
        self._session = make_session(data)
        self._input_name = inputs[0]
        self.queries = 0

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """Return float32 logits for a float32 batch and add its size to `queries`."""
        batch = np.ascontiguousarray(x, dtype=np.float32)
        logits = self._session.run(None, {self._input_name: batch})[0]
        self.queries += int(batch.shape[0])
        return np.asarray(logits, dtype=np.float32)
