"""Converters for layout and type ops: Transpose, Squeeze, Expand, Split, Cast, ConstantOfShape.

Shape-like inputs (axes, target shapes, split sizes) are read from int64 tensors at run time, so
graphs that compute them from the input's shape work for any batch size.
"""

import math

import onnx
import torch

from worker.engine.models.onnx_graph.spec import (
    Inputs,
    NodeSpec,
    OpFn,
    axis_index,
    int_list,
    optional,
    required,
)

Tensor = torch.Tensor

# Cast targets the builder reproduces; floating types compute in float32 like every other value.
_CAST_TYPES: dict[int, torch.dtype] = {
    onnx.TensorProto.FLOAT: torch.float32,
    onnx.TensorProto.DOUBLE: torch.float32,
    onnx.TensorProto.INT8: torch.int8,
    onnx.TensorProto.INT16: torch.int16,
    onnx.TensorProto.INT32: torch.int32,
    onnx.TensorProto.INT64: torch.int64,
    onnx.TensorProto.UINT8: torch.uint8,
    onnx.TensorProto.BOOL: torch.bool,
}


def transpose(node: NodeSpec) -> OpFn:
    """Transpose by `perm` (default: reverse the dims)."""
    node.require_outputs(1)
    perm = node.ints_attr("perm")

    def run(inputs: Inputs) -> tuple[Tensor]:
        """Permute the dims."""
        x = required(inputs, 0)
        order = perm if perm is not None else list(reversed(range(x.dim())))
        if sorted(order) != list(range(x.dim())):
            node.fail(f"perm {order} is not a permutation of the {x.dim()} dims")
        return (x.permute(order),)

    return run


def _axes_source(node: NodeSpec, since: int) -> list[int] | None:
    """Axes given as an attribute, only valid before opset `since` (they are an input from then)."""
    attr_axes = node.ints_attr("axes")
    if attr_axes is not None and node.opset >= since:
        node.fail(f"the 'axes' attribute is not part of {node.op_type} in opset {node.opset}; use the input")
    return attr_axes


def squeeze(node: NodeSpec) -> OpFn:
    """Squeeze the size-1 dims named by axes (attribute before opset 13, input after), or all of them."""
    node.require_outputs(1)
    attr_axes = _axes_source(node, 13)

    def run(inputs: Inputs) -> tuple[Tensor]:
        """Drop the named size-1 dims; a named dim of another size is an error, as in ONNX."""
        x = required(inputs, 0)
        axes_input = optional(inputs, 1) if node.opset >= 13 else None
        axes = attr_axes if axes_input is None else int_list(axes_input)
        if not axes:  # absent or empty (as onnxruntime reads an empty axes input): every size-1 dim
            return (x.reshape([n for n in x.shape if n != 1]),)
        dims = {axis_index(a, x.dim()) for a in axes}
        if any(x.shape[d] != 1 for d in dims):
            node.fail(f"cannot squeeze axes {axes} of a tensor of shape {list(x.shape)}")
        return (x.reshape([n for d, n in enumerate(x.shape) if d not in dims]),)

    return run


def expand(node: NodeSpec) -> OpFn:
    """Expand: broadcast the input against a shape tensor (bidirectionally, like numpy)."""
    node.require_outputs(1)

    def run(inputs: Inputs) -> tuple[Tensor]:
        """Broadcast to the combined shape."""
        x, target = required(inputs, 0), int_list(required(inputs, 1))
        return (x.expand(torch.broadcast_shapes(tuple(x.shape), tuple(target))),)

    return run


def _split_sizes(node: NodeSpec, length: int, count: int, num_outputs: int | None) -> list[int]:
    """Chunk sizes when no split is given: ceil-sized chunks (num_outputs) or equal parts."""
    if num_outputs is None:
        if node.opset >= 18:
            node.fail("from opset 18 either the 'split' input or the 'num_outputs' attribute is required")
        if length % count:
            node.fail(f"a dim of {length} cannot be split into {count} equal parts")
        return [length // count] * count
    chunk = math.ceil(length / count)
    last = length - chunk * (count - 1)
    if last <= 0:
        node.fail(f"a dim of {length} cannot be split into {count} chunks of {chunk}")
    return [chunk] * (count - 1) + [last]


def split(node: NodeSpec) -> OpFn:
    """Split along `axis` by sizes (attribute before opset 13, input after) or into equal outputs."""
    count = len(node.outputs)
    axis = node.int_attr("axis", 0)
    attr_split = node.ints_attr("split")
    if attr_split is not None and node.opset >= 13:
        node.fail(f"the 'split' attribute is not part of Split in opset {node.opset}; use the input")
    num_outputs = node.int_attr("num_outputs", 0) if "num_outputs" in node.attrs else None
    if num_outputs is not None and (node.opset < 18 or num_outputs != count):
        node.fail(f"num_outputs={num_outputs} does not match the {count} outputs (or needs opset 18)")

    def run(inputs: Inputs) -> tuple[Tensor, ...]:
        """Cut the input into consecutive pieces."""
        x = required(inputs, 0)
        dim = axis_index(axis, x.dim())
        split_input = optional(inputs, 1) if node.opset >= 13 else None
        sizes = attr_split if split_input is None else int_list(split_input)
        if sizes is None:
            sizes = _split_sizes(node, x.shape[dim], count, num_outputs)
        if len(sizes) != count or sum(sizes) != x.shape[dim] or any(s < 0 for s in sizes):
            node.fail(f"split {sizes} does not cut a dim of {x.shape[dim]} into {count} outputs")
        return tuple(torch.split(x, sizes, dim=dim))

    return run


def cast(node: NodeSpec) -> OpFn:
    """Cast to a float (computed as float32), signed integer, uint8 or bool type."""
    node.require_outputs(1)
    to = node.int_attr("to", onnx.TensorProto.UNDEFINED)
    dtype = _CAST_TYPES.get(to)
    if dtype is None:
        names = ", ".join(onnx.TensorProto.DataType.Name(t) for t in _CAST_TYPES)
        node.fail(f"casting to {onnx.TensorProto.DataType.Name(to)} is not supported (only {names})")
    return lambda inputs: (required(inputs, 0).to(dtype),)


def constant_of_shape(node: NodeSpec) -> OpFn:
    """ConstantOfShape: a tensor of the run-time shape filled with `value` (default float 0)."""
    node.require_outputs(1)
    value = node.attrs.get("value", torch.zeros(1))
    if not isinstance(value, Tensor) or value.numel() != 1:
        node.fail("attribute 'value' should be a one-element tensor")
    fill = value.reshape(())

    def run(inputs: Inputs) -> tuple[Tensor]:
        """Fill a new tensor."""
        shape = required(inputs, 0)
        return (fill.to(shape.device).expand(int_list(shape)).clone(),)

    return run
