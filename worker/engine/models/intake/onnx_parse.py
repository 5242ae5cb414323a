"""Safe parsing of ONNX uploads: format refusal, protobuf parse, external data, checker, interface."""

from collections.abc import Iterator, Sequence

import onnx
import onnxruntime as ort

from worker.engine.models.intake.errors import ModelRejected
from worker.engine.models.intake.formats import ONNX_EXPORT_HINT, refuse_unsafe_format
from worker.engine.models.intake.limits import DEFAULT_LIMITS, IntakeLimits

DYNAMIC_BATCH_HINT = (
    "Export with a dynamic batch axis: torch.onnx.export(..., dynamo=False, input_names=['input'], "
    "output_names=['logits'], dynamic_axes={'input': {0: 'batch'}})."
)


def _graph_tensors(graph: onnx.GraphProto) -> Iterator[onnx.TensorProto]:
    """Every tensor stored in a graph: initializers, sparse parts and node attributes, recursively."""
    yield from graph.initializer
    for sparse in graph.sparse_initializer:
        yield sparse.values
        yield sparse.indices
    for node in graph.node:
        yield from _node_tensors(node)


def _node_tensors(node: onnx.NodeProto) -> Iterator[onnx.TensorProto]:
    """Tensors held in a node's attributes, including those of subgraphs."""
    for attr in node.attribute:
        if attr.HasField("t"):
            yield attr.t
        yield from attr.tensors
        if attr.HasField("sparse_tensor"):
            yield attr.sparse_tensor.values
            yield attr.sparse_tensor.indices
        if attr.HasField("g"):
            yield from _graph_tensors(attr.g)
        for subgraph in attr.graphs:
            yield from _graph_tensors(subgraph)


def _model_tensors(model: onnx.ModelProto) -> Iterator[onnx.TensorProto]:
    """Every tensor in the model, including local functions and training graphs."""
    yield from _graph_tensors(model.graph)
    for function in model.functions:
        for node in function.node:
            yield from _node_tensors(node)
    for info in model.training_info:
        yield from _graph_tensors(info.initialization)
        yield from _graph_tensors(info.algorithm)


def _is_external(tensor: onnx.TensorProto) -> bool:
    """True when the tensor's bytes live outside the model file."""
    return tensor.data_location == onnx.TensorProto.EXTERNAL or len(tensor.external_data) > 0


def parse_onnx(data: bytes) -> onnx.ModelProto:
    """Refuse unsafe formats, parse the protobuf, refuse external data and run the ONNX checker."""
    refuse_unsafe_format(data)
    try:
        model = onnx.load_model_from_string(data)
    except Exception as exc:
        raise ModelRejected(
            "onnx_invalid", f"The upload is not a valid ONNX model ({exc}). {ONNX_EXPORT_HINT}"
        ) from exc
    if not model.HasField("graph") or not model.graph.node:
        raise ModelRejected(
            "onnx_invalid", f"The upload is not an ONNX model with a graph. {ONNX_EXPORT_HINT}"
        )
    external = sorted({t.name or "<unnamed>" for t in _model_tensors(model) if _is_external(t)})
    if external:
        raise ModelRejected(
            "external_data",
            f"The ONNX model keeps tensors in external files ({', '.join(external[:5])}"
            f"{', ...' if len(external) > 5 else ''}); upload a single self-contained file: "
            "onnx.save_model(model, 'model.onnx', save_as_external_data=False).",
        )
    try:
        onnx.checker.check_model(data)  # the upload's bytes: no re-serialisation of a large model
    except Exception as exc:
        raise ModelRejected("onnx_invalid", f"The ONNX checker rejected the model: {exc}") from exc
    return model


def check_interface(model: onnx.ModelProto, input_shape: Sequence[int]) -> tuple[str, bool]:
    """Require one float input of shape [batch, *input_shape] and one output.

    Returns the input name and whether the batch dim is fixed to 1 (any other fixed batch is refused).
    """
    graph = model.graph
    initializer_names = {t.name for t in graph.initializer}
    inputs = [i for i in graph.input if i.name not in initializer_names]
    if len(inputs) != 1 or len(graph.output) != 1:
        raise ModelRejected(
            "shape_mismatch",
            f"The model must have exactly one input and one output (logits); it has {len(inputs)} "
            f"input(s) {[i.name for i in inputs]} and {len(graph.output)} output(s).",
        )
    value = inputs[0]
    if not value.type.HasField("tensor_type"):
        raise ModelRejected("unsupported_input_type", f"The input {value.name!r} is not a tensor.")
    tensor_type = value.type.tensor_type
    if tensor_type.elem_type != onnx.TensorProto.FLOAT:
        type_name = onnx.TensorProto.DataType.Name(tensor_type.elem_type)
        raise ModelRejected(
            "unsupported_input_type", f"The input {value.name!r} must be float32, not {type_name}."
        )
    if not tensor_type.HasField("shape"):
        return value.name, False
    return value.name, _check_dims(value.name, list(tensor_type.shape.dim), input_shape)


def _check_dims(name: str, dims: list[onnx.TensorShapeProto.Dimension], input_shape: Sequence[int]) -> bool:
    """Compare declared input dims with [batch, *input_shape]; True when the batch is fixed to 1."""
    declared = [d.dim_value if d.HasField("dim_value") else (d.dim_param or "?") for d in dims]
    expected = ["batch", *input_shape]
    if len(dims) != len(expected):
        raise ModelRejected(
            "shape_mismatch", f"The input {name!r} has shape {declared}; expected {expected}."
        )
    fixed = dims[0].HasField("dim_value")
    if fixed and dims[0].dim_value != 1:
        raise ModelRejected(
            "shape_mismatch",
            f"The input {name!r} has a fixed batch dimension of {dims[0].dim_value} (shape {declared}); "
            f"Gauntlet runs batches of any size (a fixed batch of 1 is also accepted). {DYNAMIC_BATCH_HINT}",
        )
    for dim, want in zip(dims[1:], input_shape, strict=True):
        if dim.HasField("dim_value") and dim.dim_value != want:
            raise ModelRejected(
                "shape_mismatch", f"The input {name!r} has shape {declared}; expected {expected}."
            )
    return fixed


def make_session(data: bytes, limits: IntakeLimits = DEFAULT_LIMITS) -> ort.InferenceSession:
    """An onnxruntime CPU session for already-vetted model bytes, with bounded threads and memory.

    intra_op_num_threads comes from the limits, inter-op is 1 with sequential execution, and the
    CPU memory arena is off so memory is returned after each run instead of pooled.
    """
    options = ort.SessionOptions()
    options.log_severity_level = 4  # failures surface as exceptions; batch probes are expected to fail
    options.intra_op_num_threads = max(1, int(limits.intra_op_threads))
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.enable_cpu_mem_arena = False
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    try:
        return ort.InferenceSession(data, sess_options=options, providers=["CPUExecutionProvider"])
    except Exception as exc:
        raise ModelRejected("onnx_invalid", f"onnxruntime cannot load the model: {exc}") from exc
