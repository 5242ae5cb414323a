"""An ONNX graph's own statement of its interface: input shape (without batch) and class count.

An upload may leave out `input_shape` and `num_classes` when the graph states them; validation reads
them here and checks the model against them exactly as against declared ones.
"""

from dataclasses import dataclass

from worker.engine.models.intake.classifier_output import _dims, _output_dims
from worker.engine.models.intake.errors import ModelRejected
from worker.engine.models.intake.onnx_parse import parse_onnx
from worker.engine.models.intake.onnx_prepare import _single_input

GIVE_THEM = "give input_shape (without the batch dimension) and num_classes with the upload"


@dataclass(frozen=True)
class DeclaredInterface:
    """What the graph states: the per-sample input shape and the number of classes."""

    input_shape: list[int]
    num_classes: int


def _static(dims: list[int | str] | None) -> list[int] | None:
    """The dims as positive ints, or None when any is symbolic or unknown."""
    if dims is None or not all(isinstance(d, int) and d > 0 for d in dims):
        return None
    return [int(d) for d in dims]


def declared_interface(data: bytes) -> DeclaredInterface:
    """The interface the graph states; `shape_unknown` when it leaves either part open."""
    model = parse_onnx(data)
    value = _single_input(model)
    if value is None:
        raise ModelRejected("shape_mismatch", "The model must have exactly one input.")
    sample = _static((_dims(value) or [])[1:])
    if not sample:
        raise ModelRejected(
            "shape_unknown", f"the graph does not state a fixed per-sample input shape: {GIVE_THEM}"
        )
    output = _output_dims(model)
    classes = _static(output[1:2]) if output is not None and len(output) >= 2 else None
    if classes is None or (output is not None and any(d != 1 for d in output[2:])):
        raise ModelRejected(
            "shape_unknown", f"the graph does not state a fixed [batch, classes] output: {GIVE_THEM}"
        )
    return DeclaredInterface(input_shape=sample, num_classes=classes[0])
