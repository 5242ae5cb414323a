"""Estimate, before anything runs, how large the tensors of an ONNX graph get, and refuse memory bombs.

The estimate runs on a weightless skeleton of the graph (large initializers and Constant values
become typed inputs, so nothing big is copied): onnx shape inference without data propagation,
plus the capped shape evaluator of shape_values, folded back in for a few rounds so shapes
computed from Shape(x) become static. Every tensor whose shape is then known is checked against
max_intermediate_bytes at the validation batch, and so is the output of every ConstantOfShape,
Expand, Tile and Range whose size follows from constants, even when onnx cannot infer it.
"""

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import onnx
from onnx import helper, numpy_helper

from worker.engine.models.intake.errors import ModelRejected
from worker.engine.models.intake.limits import IntakeLimits, MiB
from worker.engine.models.intake.shape_values import (
    Dims,
    Value,
    evaluate,
    known,
    range_count,
    small_array,
)

FOLD_ROUNDS = 4
_DEFAULT_DOMAINS = ("", "ai.onnx")


@dataclass(frozen=True)
class ResourceEstimate:
    """What the static estimate found: the largest known tensor and how many stayed unknown."""

    batch: int
    largest_bytes: int
    largest_name: str | None
    unknown: int

    def note(self) -> str:
        """A line for the intake report."""
        largest = f"{self.largest_bytes / MiB:.1f} MiB ({self.largest_name})" if self.largest_name else "none"
        return (
            f"Static memory estimate at a batch of {self.batch}: largest intermediate tensor {largest}; "
            f"{self.unknown} tensor(s) have shapes only known at run time."
        )


@dataclass
class _Info:
    """Element type and dims (None entries for unknown dims; None when the rank is unknown)."""

    elem_type: int
    dims: Dims | None


def _itemsize(elem_type: int) -> int:
    """Bytes per element of an ONNX element type (4 when unknown)."""
    try:
        return int(np.dtype(helper.tensor_dtype_to_np_dtype(elem_type)).itemsize)
    except (KeyError, TypeError, ValueError):
        return 4


def weightless_skeleton(
    model: onnx.ModelProto, input_name: str | None = None, dims: Sequence[int] | None = None
) -> onnx.ModelProto:
    """The graph without its large tensors (they become typed inputs); `input_name` gets `dims`.

    Without `input_name` the graph inputs keep their declared types. Nodes and small tensors are
    copied, large initializers and large Constant values are never copied or decoded.
    """
    source = model.graph
    skeleton = onnx.ModelProto(ir_version=model.ir_version)
    skeleton.opset_import.extend(model.opset_import)
    skeleton.functions.extend(model.functions)
    graph = skeleton.graph
    graph.name = source.name
    initializer_names = {t.name for t in source.initializer}
    if input_name is not None and dims is not None:
        graph.input.append(helper.make_tensor_value_info(input_name, onnx.TensorProto.FLOAT, list(dims)))
    else:
        graph.input.extend(i for i in source.input if i.name not in initializer_names)
    for tensor in source.initializer:
        if small_array(tensor) is not None:
            graph.initializer.append(tensor)
            if model.ir_version < 4:  # initializers must also be inputs before IR 4
                graph.input.append(helper.make_tensor_value_info(tensor.name, tensor.data_type, tensor.dims))
        else:
            graph.input.append(helper.make_tensor_value_info(tensor.name, tensor.data_type, tensor.dims))
    for sparse in source.sparse_initializer:
        name, data_type = sparse.values.name, sparse.values.data_type
        graph.input.append(helper.make_tensor_value_info(name, data_type, sparse.dims))
    for node in source.node:
        value = next((a.t for a in node.attribute if a.name == "value" and a.HasField("t")), None)
        if node.op_type == "Constant" and value is not None and small_array(value) is None:
            info = helper.make_tensor_value_info(node.output[0], value.data_type, value.dims)
            graph.input.append(info)
            continue
        graph.node.append(node)
    for output in source.output:
        elem_type = output.type.tensor_type.elem_type or onnx.TensorProto.FLOAT
        graph.output.append(helper.make_tensor_value_info(output.name, elem_type, None))
    return skeleton


def _infer(skeleton: onnx.ModelProto) -> dict[str, _Info]:
    """Types and dims of every value onnx shape inference (no data propagation) can tell."""
    try:
        inferred = onnx.shape_inference.infer_shapes(skeleton, check_type=False, strict_mode=False)
    except Exception:  # inference is best effort: unknown shapes are simply not checked here
        inferred = skeleton
    graph = inferred.graph
    infos: dict[str, _Info] = {}
    for value in (*graph.input, *graph.value_info, *graph.output):
        tensor_type = value.type.tensor_type
        dims: Dims | None = None
        if tensor_type.HasField("shape"):
            dims = [d.dim_value if d.HasField("dim_value") else None for d in tensor_type.shape.dim]
        infos[value.name] = _Info(tensor_type.elem_type, dims)
    for tensor in graph.initializer:
        infos[tensor.name] = _Info(tensor.data_type, [int(d) for d in tensor.dims])
    return infos


def _label(node: onnx.NodeProto) -> str:
    """How a message names a node."""
    return f"{node.op_type} node {node.name!r}" if node.name else f"unnamed {node.op_type} node"


def _refuse(
    node: onnx.NodeProto, output: str, dims: str, size: int, limits: IntakeLimits, batch: int
) -> None:
    """Raise resource_limit for a tensor of `size` bytes."""
    raise ModelRejected(
        "resource_limit",
        f"The {_label(node)} would create the tensor {output!r} {dims}, about "
        f"{size / MiB:.0f} MiB ({size} bytes) at a batch of {batch}; this worker allows at most "
        f"{limits.max_intermediate_bytes} bytes per tensor (setting max_intermediate_bytes).",
    )


def _generated(
    node: onnx.NodeProto, values: Sequence[Value], infos: Sequence[_Info | None]
) -> tuple[int, int] | None:
    """(elements, element type) a ConstantOfShape/Expand/Tile/Range creates, as far as constants tell."""
    op = node.op_type
    data = infos[0] if infos else None
    data_elems = math.prod(data.dims) if data is not None and known(data.dims) else 1  # type: ignore[arg-type]
    data_type = data.elem_type if data is not None else onnx.TensorProto.FLOAT
    if op == "ConstantOfShape" and values and values[0] is not None:
        value = next((a.t for a in node.attribute if a.name == "value"), None)
        fill_type = value.data_type if value is not None else onnx.TensorProto.FLOAT
        return math.prod(max(int(v), 0) for v in values[0].reshape(-1)), fill_type
    if op == "Expand" and len(values) > 1 and values[1] is not None:
        shape = [int(v) for v in values[1].reshape(-1)]
        dims = data.dims if data is not None and known(data.dims) else []
        rank = max(len(shape), len(dims or []))
        padded = [1] * (rank - len(shape)) + shape
        padded_dims = [1] * (rank - len(dims or [])) + list(dims or [])
        return math.prod(max(a, b) for a, b in zip(padded, padded_dims, strict=True)), data_type
    if op == "Tile" and len(values) > 1 and values[1] is not None:
        return data_elems * math.prod(max(int(v), 0) for v in values[1].reshape(-1)), data_type
    if op == "Range":
        count = range_count(values)
        start_type = infos[0].elem_type if infos and infos[0] is not None else onnx.TensorProto.INT64
        return (count, start_type) if count is not None else None
    return None


def _propagate(
    skeleton: onnx.ModelProto, infos: dict[str, _Info], limits: IntakeLimits, batch: int
) -> dict[str, np.ndarray]:
    """Evaluate small shape values node by node; refuse generators whose constant size is too large."""
    values: dict[str, np.ndarray] = {}
    for tensor in skeleton.graph.initializer:
        array = small_array(tensor)
        if array is not None:
            values[tensor.name] = array
    opset = next((int(o.version) for o in skeleton.opset_import if o.domain in _DEFAULT_DOMAINS), 0)
    for node in skeleton.graph.node:
        inputs = [values.get(name) if name else None for name in node.input]
        node_infos = [infos.get(name) if name else None for name in node.input]
        if node.domain in _DEFAULT_DOMAINS:
            generated = _generated(node, inputs, node_infos)
            if generated is not None:
                elements, elem_type = generated
                size = elements * _itemsize(elem_type)
                if size > limits.max_intermediate_bytes:
                    _refuse(node, node.output[0], f"of {elements} elements", size, limits, batch)
        value = evaluate(node, inputs, [info.dims if info else None for info in node_infos], opset)
        if value is not None:
            values[node.output[0]] = value
    return values


def _check_sizes(
    skeleton: onnx.ModelProto, infos: dict[str, _Info], limits: IntakeLimits, batch: int
) -> tuple[int, str | None, int]:
    """Refuse any node output with a known shape over the limit; return (largest, its name, unknown count)."""
    largest, largest_name, unknown = 0, None, 0
    for node in skeleton.graph.node:
        for output in node.output:
            info = infos.get(output)
            if not output:
                continue
            if info is None or not known(info.dims):
                unknown += 1
                continue
            size = math.prod(info.dims) * _itemsize(info.elem_type)  # type: ignore[arg-type]
            if size > limits.max_intermediate_bytes:
                _refuse(node, output, f"of shape {info.dims}", size, limits, batch)
            if size > largest:
                largest, largest_name = size, output
    return largest, largest_name, unknown


def _fold(skeleton: onnx.ModelProto, values: dict[str, np.ndarray]) -> bool:
    """Replace nodes whose outputs are all known small values by initializers; True if any was."""
    graph = skeleton.graph
    keep, folded = [], []
    for node in graph.node:
        outputs = [name for name in node.output if name]
        if outputs and all(name in values for name in outputs) and node.domain in _DEFAULT_DOMAINS:
            folded.extend(outputs)
        else:
            keep.append(node)
    if not folded:
        return False
    del graph.node[:]
    graph.node.extend(keep)
    for name in folded:
        tensor = numpy_helper.from_array(np.array(values[name], order="C"), name)  # keeps 0-d values 0-d
        graph.initializer.append(tensor)
        if skeleton.ir_version < 4:
            graph.input.append(helper.make_tensor_value_info(name, tensor.data_type, tensor.dims))
    return True


def check_resources(
    model: onnx.ModelProto, input_name: str, input_dims: Sequence[int], limits: IntakeLimits
) -> ResourceEstimate:
    """Refuse (resource_limit) graphs whose statically known tensors exceed max_intermediate_bytes.

    `input_dims` is the full input shape the graph will run with, batch first.
    """
    skeleton = weightless_skeleton(model, input_name, input_dims)
    batch = int(input_dims[0])
    for _ in range(FOLD_ROUNDS):
        infos = _infer(skeleton)
        values = _propagate(skeleton, infos, limits, batch)
        largest, name, unknown = _check_sizes(skeleton, infos, limits, batch)
        if not _fold(skeleton, values):
            break
    return ResourceEstimate(batch, largest, name, unknown)
