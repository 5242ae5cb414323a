"""A small, memory-capped evaluator for the shape arithmetic of an ONNX graph (Shape, Gather, Concat...).

onnx's own data propagation (infer_shapes(data_prop=True)) materialises whatever it propagates: a
Range to 10**8 makes it allocate gigabytes. This evaluator computes only values of at most
MAX_VALUE_ELEMENTS elements, with NumPy, and leaves everything else unknown (None), so it is safe on
untrusted graphs. Its results feed the size estimates of worker.engine.models.intake.resource_check.
"""

import math
from collections.abc import Callable, Sequence
from functools import reduce

import numpy as np
import onnx
from onnx import helper, numpy_helper

MAX_VALUE_ELEMENTS = 1024
Dims = list[int | None]
Value = np.ndarray | None
_ERRORS = (ValueError, IndexError, TypeError, ZeroDivisionError, OverflowError, KeyError, AttributeError)


def known(dims: Dims | None) -> bool:
    """True when every dim is a known non-negative integer."""
    return dims is not None and all(isinstance(d, int) and d >= 0 for d in dims)


def tensor_elements(tensor: onnx.TensorProto) -> int:
    """Elements of a TensorProto from its dims alone (nothing is decoded)."""
    return math.prod(int(d) for d in tensor.dims)


def small_array(tensor: onnx.TensorProto) -> Value:
    """Decode a tensor only when it is small and stored in the file; otherwise None."""
    if tensor_elements(tensor) > MAX_VALUE_ELEMENTS or tensor.data_location == onnx.TensorProto.EXTERNAL:
        return None
    try:
        return np.asarray(numpy_helper.to_array(tensor))
    except _ERRORS:
        return None


def _attrs(node: onnx.NodeProto) -> dict[str, object]:
    """Node attributes as python values (tensors left as TensorProto)."""
    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def _ints(value: Value) -> list[int] | None:
    """A value as a list of python ints, or None."""
    return None if value is None else [int(v) for v in value.reshape(-1)]


def _axes(attrs: dict[str, object], inputs: Sequence[Value], index: int, opset: int, since: int) -> list[int]:
    """Axes from the attribute (before opset `since`) or the input at `index`."""
    if opset < since:
        return [int(a) for a in attrs.get("axes", [])]  # type: ignore[union-attr]
    if len(inputs) <= index:
        return []
    return _ints(inputs[index]) or []


def _constant(node: onnx.NodeProto, _inputs: Sequence[Value], _opset: int) -> Value:
    """The value attribute of a Constant node, when small."""
    attrs = _attrs(node)
    if "value" in attrs:
        return small_array(attrs["value"])  # type: ignore[arg-type]
    for key, dtype in (("value_int", np.int64), ("value_ints", np.int64), ("value_float", np.float32),
                       ("value_floats", np.float32)):  # fmt: skip
        if key in attrs:
            return np.asarray(attrs[key], dtype=dtype)
    return None


def _slice(node: onnx.NodeProto, inputs: Sequence[Value], opset: int) -> Value:
    """Slice with attributes (before opset 10) or inputs."""
    data = inputs[0]
    if opset < 10:
        attrs = _attrs(node)
        starts, ends = list(attrs["starts"]), list(attrs["ends"])  # type: ignore[call-overload]
        axes, steps = list(attrs.get("axes", range(len(starts)))), [1] * len(starts)  # type: ignore[call-overload]
    else:
        starts, ends = _ints(inputs[1]), _ints(inputs[2])
        axes = _ints(inputs[3]) if len(inputs) > 3 and inputs[3] is not None else list(range(len(starts)))
        steps = _ints(inputs[4]) if len(inputs) > 4 and inputs[4] is not None else [1] * len(starts)
    index = [slice(None)] * data.ndim
    for start, end, axis, step in zip(starts, ends, axes, steps, strict=True):
        index[axis] = slice(int(start), int(end), int(step))
    return data[tuple(index)]


def _reshape(node: onnx.NodeProto, inputs: Sequence[Value], _opset: int) -> Value:
    """Reshape with ONNX's 0 (copy the dim, unless allowzero) and -1 (infer) conventions."""
    data, shape = inputs[0], _ints(inputs[1])
    allowzero = bool(_attrs(node).get("allowzero", 0))
    dims = [data.shape[i] if d == 0 and not allowzero else d for i, d in enumerate(shape)]
    return data.reshape(dims)


def _unsqueeze(node: onnx.NodeProto, inputs: Sequence[Value], opset: int) -> Value:
    """Unsqueeze at axes of the output rank."""
    data, axes = inputs[0], _axes(_attrs(node), inputs, 1, opset, 13)
    rank = data.ndim + len(axes)
    return np.expand_dims(data, tuple(sorted(a + rank if a < 0 else a for a in axes)))


def _squeeze(node: onnx.NodeProto, inputs: Sequence[Value], opset: int) -> Value:
    """Squeeze the named axes (every size-1 axis when none are named)."""
    data, axes = inputs[0], _axes(_attrs(node), inputs, 1, opset, 13)
    return np.squeeze(data, tuple(axes)) if axes else np.squeeze(data)


def _reduce(
    fn: Callable[..., np.ndarray], since: int
) -> Callable[[onnx.NodeProto, Sequence[Value], int], Value]:
    """A reduction whose axes become an input at opset `since`."""

    def run(node: onnx.NodeProto, inputs: Sequence[Value], opset: int) -> Value:
        """Reduce over the axes (all when none), honouring keepdims."""
        attrs = _attrs(node)
        axes = _axes(attrs, inputs, 1, opset, since)
        if not axes and attrs.get("noop_with_empty_axes"):
            return inputs[0]
        keep = bool(attrs.get("keepdims", 1))
        return fn(inputs[0], axis=tuple(axes) if axes else None, keepdims=keep)

    return run


def _cast(node: onnx.NodeProto, inputs: Sequence[Value], _opset: int) -> Value:
    """Cast to the `to` element type."""
    to = int(_attrs(node)["to"])  # type: ignore[call-overload]
    return inputs[0].astype(helper.tensor_dtype_to_np_dtype(to))


def _div(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """ONNX Div: truncating for integers."""
    if np.issubdtype(a.dtype, np.integer) and np.issubdtype(b.dtype, np.integer):
        if np.any(b == 0):
            raise ZeroDivisionError("integer division by zero")
        return np.trunc(a / b).astype(a.dtype)
    return a / b


def _mod(node: onnx.NodeProto, inputs: Sequence[Value], opset: int) -> Value:
    """Mod: the divisor's sign (fmod=0) or the dividend's (fmod=1), only when small."""
    if _broadcast_size([v.shape for v in inputs]) > MAX_VALUE_ELEMENTS or np.any(inputs[1] == 0):  # type: ignore[union-attr]
        return None
    return (np.fmod if _attrs(node).get("fmod", 0) else np.mod)(inputs[0], inputs[1])


def _fill(node: onnx.NodeProto, inputs: Sequence[Value], _opset: int) -> Value:
    """ConstantOfShape, only when the result is small."""
    shape = _ints(inputs[0])
    if math.prod(shape) > MAX_VALUE_ELEMENTS:
        return None
    value = _attrs(node).get("value")
    fill = small_array(value) if value is not None else np.zeros(1, np.float32)  # type: ignore[arg-type]
    return np.full(shape, fill.reshape(-1)[0], dtype=fill.dtype)


def _range(_node: onnx.NodeProto, inputs: Sequence[Value], _opset: int) -> Value:
    """Range, only when the result is small."""
    count = range_count(inputs)
    if count is None or count > MAX_VALUE_ELEMENTS:
        return None
    start, _, delta = (v.reshape(()) for v in inputs)  # type: ignore[union-attr]
    return (start + delta * np.arange(count)).astype(start.dtype)


def range_count(inputs: Sequence[Value]) -> int | None:
    """Elements of Range(start, limit, delta) when all three are known scalars."""
    if len(inputs) != 3 or any(v is None or v.size != 1 for v in inputs):
        return None
    start, limit, delta = (float(v.reshape(-1)[0]) for v in inputs)  # type: ignore[union-attr]
    if delta == 0 or not all(math.isfinite(v) for v in (start, limit, delta)):
        return None
    return max(math.ceil((limit - start) / delta), 0)


def _broadcast_size(shapes: Sequence[Sequence[int]]) -> int:
    """Elements of the broadcast of the shapes (raises ValueError when they do not broadcast)."""
    return math.prod(np.broadcast_shapes(*(tuple(s) for s in shapes)))


def _binary(fn: Callable[[np.ndarray, np.ndarray], np.ndarray]) -> Callable[..., Value]:
    """An elementwise op folded over its inputs (variadic for Max, Min, Sum), only when small."""

    def run(_node: onnx.NodeProto, inputs: Sequence[Value], _opset: int) -> Value:
        """Refuse to compute a large broadcast, else apply the op."""
        if _broadcast_size([v.shape for v in inputs]) > MAX_VALUE_ELEMENTS:  # type: ignore[union-attr]
            return None
        return reduce(fn, inputs)  # type: ignore[arg-type]

    return run


def _unary(fn: Callable[[np.ndarray], np.ndarray]) -> Callable[..., Value]:
    """A one-input op."""
    return lambda _node, inputs, _opset: fn(inputs[0])


def _where(_node: onnx.NodeProto, inputs: Sequence[Value], _opset: int) -> Value:
    """Where, only when the broadcast result is small."""
    if _broadcast_size([v.shape for v in inputs]) > MAX_VALUE_ELEMENTS:  # type: ignore[union-attr]
        return None
    return np.where(*inputs)


def _expand(_node: onnx.NodeProto, inputs: Sequence[Value], _opset: int) -> Value:
    """Expand, only when the result is small."""
    data, shape = inputs[0], tuple(_ints(inputs[1]) or ())
    if _broadcast_size([data.shape, shape]) > MAX_VALUE_ELEMENTS:  # type: ignore[union-attr]
        return None
    return np.broadcast_to(data, np.broadcast_shapes(data.shape, shape)).copy()  # type: ignore[union-attr]


def _tile(_node: onnx.NodeProto, inputs: Sequence[Value], _opset: int) -> Value:
    """Tile, only when the result is small."""
    data, repeats = inputs[0], _ints(inputs[1]) or []
    if len(repeats) != data.ndim or data.size * math.prod(repeats) > MAX_VALUE_ELEMENTS:  # type: ignore[union-attr]
        return None
    return np.tile(data, repeats)


def _concat(node: onnx.NodeProto, inputs: Sequence[Value], _opset: int) -> Value:
    """Concat along the axis attribute."""
    return np.concatenate(inputs, axis=int(_attrs(node)["axis"]))  # type: ignore[call-overload]


def _gather(node: onnx.NodeProto, inputs: Sequence[Value], _opset: int) -> Value:
    """Gather along the axis attribute (default 0)."""
    return np.take(inputs[0], inputs[1], axis=int(_attrs(node).get("axis", 0)))  # type: ignore[call-overload]


_OPS: dict[str, Callable[[onnx.NodeProto, Sequence[Value], int], Value]] = {
    "Abs": _unary(np.abs),
    "Add": _binary(np.add),
    "Cast": _cast,
    "Ceil": _unary(np.ceil),
    "Concat": _concat,
    "Constant": _constant,
    "ConstantOfShape": _fill,
    "Div": _binary(_div),
    "Equal": _binary(np.equal),
    "Expand": _expand,
    "Floor": _unary(np.floor),
    "Gather": _gather,
    "Greater": _binary(np.greater),
    "Identity": _unary(lambda x: x),
    "Less": _binary(np.less),
    "Max": _binary(np.maximum),
    "Min": _binary(np.minimum),
    "Mod": _mod,
    "Mul": _binary(np.multiply),
    "Neg": _unary(np.negative),
    "Not": _unary(np.logical_not),
    "Range": _range,
    "ReduceProd": _reduce(np.prod, 18),
    "ReduceSum": _reduce(np.sum, 13),
    "Reshape": _reshape,
    "Slice": _slice,
    "Squeeze": _squeeze,
    "Sub": _binary(np.subtract),
    "Sum": _binary(np.add),
    "Tile": _tile,
    "Unsqueeze": _unsqueeze,
    "Where": _where,
}


def _shape_of(node: onnx.NodeProto, dims: Dims | None) -> Value:
    """Shape (with opset-15 start/end) or Size of an input whose dims are all known."""
    if not known(dims):
        return None
    if node.op_type == "Size":
        return np.asarray(math.prod(dims), dtype=np.int64)  # type: ignore[arg-type]
    attrs = _attrs(node)
    start, end = int(attrs.get("start", 0)), attrs.get("end")  # type: ignore[call-overload]
    return np.asarray(dims[start : None if end is None else int(end)], dtype=np.int64)  # type: ignore[call-overload]


def evaluate(
    node: onnx.NodeProto, inputs: Sequence[Value], input_dims: Sequence[Dims | None], opset: int
) -> Value:
    """The node's single output when it is small and computable from known inputs; otherwise None.

    `inputs` holds the known values of the node's inputs (None when unknown or unnamed) and
    `input_dims` their inferred dims (Shape and Size need only those).
    """
    if node.domain not in ("", "ai.onnx") or len(node.output) != 1:
        return None
    if node.op_type in ("Shape", "Size"):
        return _shape_of(node, input_dims[0] if input_dims else None)
    op = _OPS.get(node.op_type)
    named = [value for name, value in zip(node.input, inputs, strict=True) if name]
    if op is None or any(value is None for value in named):
        return None
    try:
        with np.errstate(all="ignore"):
            result = op(node, inputs, opset)
    except _ERRORS:
        return None
    if result is None:
        return None
    result = np.asarray(result)
    return result if result.size <= MAX_VALUE_ELEMENTS else None
