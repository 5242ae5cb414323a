"""Trained weights back into ONNX, verified through the intake before anything stores them.

A module built from an uploaded graph (worker.engine.training.trainable) is written back into its own
source graph: the same nodes, names, opset, input and output; only the initializer values change
(BatchNormalization's running statistics included). Any other module (a catalog architecture, a
wrapper) is exported with torch.onnx (TorchScript exporter, dynamic batch, input "input", output
"logits"). verified_export runs the result through validate_onnx and compares onnxruntime with the
module, so a model that would come back different from what was trained is never stored.
"""

import io
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import numpy as np
import onnx
import torch
from onnx import helper, numpy_helper
from torch import nn

from worker.engine.errors import EngineError
from worker.engine.models.intake import IntakeReport, ModelRejected, validate_onnx
from worker.engine.models.intake.onnx_intake import PARITY_RTOL
from worker.engine.models.intake.onnx_parse import make_session
from worker.engine.models.onnx_graph import OnnxGraphModule
from worker.engine.models.onnx_graph.spec import FLOAT_TYPES

EXPORT_OPSET = 17
INPUT_NAME, OUTPUT_NAME = "input", "logits"
_CHECK_SAMPLES = 16


class ExportError(EngineError):
    """An export that failed or does not reproduce the module; `max_abs_diff` when outputs disagree."""

    default_code = "export_failed"

    def __init__(self, message: str, max_abs_diff: float | None = None) -> None:
        """Keep the message and the measured disagreement."""
        super().__init__(message)
        self.max_abs_diff = max_abs_diff


@contextmanager
def _eval_mode(module: nn.Module) -> Iterator[None]:
    """Put every submodule in eval mode, then restore each one's own mode."""
    modes = [(m, m.training) for m in module.modules()]
    module.eval()
    try:
        yield
    finally:
        for m, training in modes:
            m.training = training


def _write_back(module: OnnxGraphModule, source: bytes) -> bytes:
    """The source graph with every float initializer replaced by the module's current value."""
    model = onnx.load_model_from_string(source)
    tensors = module.onnx_tensors()
    for initializer in model.graph.initializer:
        if initializer.data_type not in FLOAT_TYPES:
            continue
        value = tensors.get(initializer.name)
        if value is None:
            raise ExportError(
                f"the module has no tensor for initializer {initializer.name!r} of the source graph"
            )
        if tuple(value.shape) != tuple(initializer.dims):
            raise ExportError(
                f"initializer {initializer.name!r} is {list(initializer.dims)} in the source graph but "
                f"{list(value.shape)} in the module"
            )
        dtype = helper.tensor_dtype_to_np_dtype(initializer.data_type)
        array = value.detach().to("cpu", torch.float32).numpy().astype(dtype)
        initializer.CopyFrom(numpy_helper.from_array(array, initializer.name))
    return model.SerializeToString()


def _torch_export(module: nn.Module, input_shape: tuple[int, ...]) -> bytes:
    """torch.onnx.export (dynamo=False) with a dynamic batch axis."""
    device = next((p.device for p in module.parameters()), torch.device("cpu"))
    buffer = io.BytesIO()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                module,
                (torch.zeros((2, *input_shape), device=device),),
                buffer,
                dynamo=False,
                opset_version=EXPORT_OPSET,
                input_names=[INPUT_NAME],
                output_names=[OUTPUT_NAME],
                dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
                training=torch.onnx.TrainingMode.PRESERVE,  # eval mode, BatchNormalization kept unfused
            )
    except Exception as exc:
        raise ExportError(f"torch.onnx.export failed: {exc}") from exc
    return buffer.getvalue()


def export_onnx(module: nn.Module, *, input_shape: Sequence[int], source_onnx: bytes | None = None) -> bytes:
    """Serialized ONNX for `module`, exported in eval mode (its modes are restored afterwards).

    A graph module is written back into `source_onnx`, or into the graph it was built from; anything
    else goes through torch.onnx.export.
    """
    shape = tuple(int(d) for d in input_shape)
    with _eval_mode(module), torch.no_grad():
        if isinstance(module, OnnxGraphModule):
            source = source_onnx if source_onnx is not None else module.source_onnx
            if source is not None:
                return _write_back(module, source)
        return _torch_export(module, shape)


@torch.no_grad()
def _max_abs_diff(
    module: nn.Module, data: bytes, input_shape: tuple[int, ...], input_range: tuple[float, float], seed: int
) -> tuple[float, float]:
    """Max abs diff between onnxruntime and the module (eval mode) on random inputs, and the tolerance."""
    session = make_session(data)
    name = session.get_inputs()[0].name
    low, high = input_range
    x = np.random.default_rng(seed).uniform(low, high, size=(_CHECK_SAMPLES, *input_shape)).astype(np.float32)
    expected = np.asarray(session.run(None, {name: x})[0], dtype=np.float32)
    device = next((p.device for p in module.parameters()), torch.device("cpu"))
    with _eval_mode(module):
        got = module(torch.from_numpy(x).to(device)).detach().to("cpu", torch.float32).numpy()
    if got.shape != expected.shape:
        raise ExportError(f"the export returns shape {list(expected.shape)}, the module {list(got.shape)}")
    diff = float(np.abs(got - expected).max())
    return diff, PARITY_RTOL * max(1.0, float(np.abs(got).max()))


def verified_export(
    module: nn.Module,
    *,
    input_shape: Sequence[int],
    num_classes: int,
    input_range: tuple[float, float],
    source_onnx: bytes | None = None,
    seed: int = 0,
) -> tuple[bytes, IntakeReport]:
    """Export `module`, vet the bytes with validate_onnx and require onnxruntime to match the module.

    Raises ExportError when the export fails, the intake refuses it, or onnxruntime's logits differ
    from the module's (eval mode) by more than the intake's parity tolerance on random inputs drawn
    from `input_range`.
    """
    shape = tuple(int(d) for d in input_shape)
    data = export_onnx(module, input_shape=shape, source_onnx=source_onnx)
    low, high = float(input_range[0]), float(input_range[1])
    try:
        report = validate_onnx(data, shape, num_classes, (low, high), seed=seed)
    except ModelRejected as exc:
        raise ExportError(f"the exported model fails intake ({exc.code}): {exc}") from exc
    diff, tolerance = _max_abs_diff(module, data, shape, (low, high), seed)
    if not diff <= tolerance:
        raise ExportError(
            f"the exported model disagrees with the trained module: max abs diff {diff:.3g} exceeds "
            f"the tolerance {tolerance:.3g}",
            max_abs_diff=diff,
        )
    report.notes.append(f"Export matches the trained module in onnxruntime (max abs diff {diff:.3g}).")
    return data, report
