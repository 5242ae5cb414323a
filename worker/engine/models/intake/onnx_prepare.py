"""Everything ONNX intake does to an upload before anything runs it, shared by every entry point.

parse (safe format, protobuf, external data, checker) -> refuse control flow -> upgrade an old
opset -> check the interface -> static resource estimate -> squeeze a classifier output of
[N, C, 1, ..., 1] to [N, C] -> rewrite a fixed batch of 1 to a symbolic batch. The result carries
the model proto for the torch builder and the bytes for onnxruntime (the upload itself when nothing
was rewritten, so no copy is made).
"""

from collections.abc import Sequence
from dataclasses import dataclass, field

import onnx

from worker.engine.models.intake.classifier_output import squeeze_classifier_output
from worker.engine.models.intake.errors import ModelRejected
from worker.engine.models.intake.fixed_batch import fixed_batch, make_batch_symbolic
from worker.engine.models.intake.limits import IntakeLimits, check_input_elements, refuse_control_flow
from worker.engine.models.intake.onnx_parse import check_interface, parse_onnx
from worker.engine.models.intake.opset import upgrade_opset
from worker.engine.models.intake.resource_check import ResourceEstimate, check_resources


@dataclass
class PreparedOnnx:
    """A vetted ONNX model: proto, the bytes to give onnxruntime, its input and what intake changed."""

    model: onnx.ModelProto
    ort_bytes: bytes
    input_name: str
    fixed_batch: bool
    notes: list[str] = field(default_factory=list)
    estimate: ResourceEstimate | None = None


def _single_input(model: onnx.ModelProto) -> onnx.ValueInfoProto | None:
    """The only graph input that is not an initializer, if there is exactly one."""
    initializer_names = {t.name for t in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in initializer_names]
    return inputs[0] if len(inputs) == 1 else None


def _estimate(
    model: onnx.ModelProto,
    input_name: str,
    input_shape: Sequence[int],
    batch: int,
    fixed: bool,
    limits: IntakeLimits,
) -> ResourceEstimate:
    """The static resource check at the validation batch (and at batch 1 for a fixed-batch graph)."""
    estimate = check_resources(model, input_name, [batch, *input_shape], limits)
    if fixed:  # the graph may only be consistent at its declared batch; chunked runs use exactly that
        check_resources(model, input_name, [1, *input_shape], limits)
    return estimate


def prepare_onnx(
    data: bytes,
    limits: IntakeLimits,
    *,
    input_shape: Sequence[int] | None = None,
    batch: int = 1,
) -> PreparedOnnx:
    """Vet and normalise an ONNX upload without running it.

    With `input_shape` (validation) the interface is checked against it and the resource estimate
    runs at `batch`; without it (loading an already validated model) only the single input is
    required. Raises ModelRejected.
    """
    if input_shape is not None:
        check_input_elements(input_shape, limits)
    model = parse_onnx(data)
    refuse_control_flow(model, limits)
    model, upgrade_note = upgrade_opset(model)
    notes = [upgrade_note] if upgrade_note else []
    estimate = None
    if input_shape is not None:
        input_name, fixed = check_interface(model, input_shape)
        estimate = _estimate(model, input_name, input_shape, batch, fixed, limits)
        notes.append(estimate.note())
    else:
        value = _single_input(model)
        if value is None:
            raise ModelRejected("shape_mismatch", "The model must have exactly one input.")
        input_name, fixed = value.name, fixed_batch(value) == 1
    squeeze_note = squeeze_classifier_output(model)
    if squeeze_note:
        notes.append(squeeze_note)
    rewritten = upgrade_note is not None or squeeze_note is not None
    if fixed:
        make_batch_symbolic(model, input_name)
        rewritten = True
    ort_bytes = model.SerializeToString() if rewritten else data
    return PreparedOnnx(model, ort_bytes, input_name, fixed, notes, estimate)
