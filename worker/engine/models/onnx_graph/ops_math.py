"""Converters for elementwise, matrix and activation ops."""

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F

from worker.engine.models.onnx_graph.spec import Inputs, NodeSpec, OpFn, optional, required

Tensor = torch.Tensor


def _unary(fn: Callable[[Tensor], Tensor]) -> Callable[[NodeSpec], OpFn]:
    """Make a converter for a one-input, one-output elementwise op."""

    def convert(node: NodeSpec) -> OpFn:
        """Check the node and return its runtime function."""
        node.require_outputs(1)
        return lambda inputs: (fn(required(inputs, 0)),)

    return convert


def _binary(fn: Callable[[Tensor, Tensor], Tensor]) -> Callable[[NodeSpec], OpFn]:
    """Make a converter for a two-input op with numpy-style broadcasting."""

    def convert(node: NodeSpec) -> OpFn:
        """Check the node and return its runtime function."""
        node.require_outputs(1)
        return lambda inputs: (fn(required(inputs, 0), required(inputs, 1)),)

    return convert


def _div(a: Tensor, b: Tensor) -> Tensor:
    """ONNX Div: truncating for integer tensors, true division otherwise."""
    if not a.is_floating_point() and not b.is_floating_point():
        return torch.div(a, b, rounding_mode="trunc")
    return torch.div(a, b)


def _pow(base: Tensor, exponent: Tensor) -> Tensor:
    """ONNX Pow: the result keeps the base's element type (an integer base truncates)."""
    out = torch.pow(base, exponent)
    return out if out.dtype == base.dtype else out.to(base.dtype)


add = _binary(torch.add)
sub = _binary(torch.sub)
mul = _binary(torch.mul)
div = _binary(_div)
pow_ = _binary(_pow)
matmul = _binary(torch.matmul)
equal = _binary(torch.eq)
relu = _unary(F.relu)
sigmoid = _unary(torch.sigmoid)
tanh = _unary(torch.tanh)
sqrt = _unary(torch.sqrt)
erf = _unary(torch.erf)
identity = _unary(lambda x: x)


def mod(node: NodeSpec) -> OpFn:
    """Mod: fmod=0 takes the divisor's sign (integers only), fmod=1 the dividend's (C fmod)."""
    node.require_outputs(1)
    c_style = node.int_attr("fmod", 0)
    if c_style not in (0, 1):
        node.fail(f"fmod={c_style} is not supported (0 or 1)")

    def run(inputs: Inputs) -> tuple[Tensor]:
        """Compute the elementwise remainder."""
        a, b = required(inputs, 0), required(inputs, 1)
        if c_style:
            return (torch.fmod(a, b),)
        if a.is_floating_point() or b.is_floating_point():
            node.fail("fmod=0 is only defined for integer inputs")
        return (torch.remainder(a, b),)

    return run


def where(node: NodeSpec) -> OpFn:
    """Where: pick from X where the condition holds, else from Y, with numpy broadcasting."""
    node.require_outputs(1)

    def run(inputs: Inputs) -> tuple[Tensor]:
        """Select elementwise."""
        condition = required(inputs, 0)
        return (torch.where(condition.to(torch.bool), required(inputs, 1), required(inputs, 2)),)

    return run


def constant(node: NodeSpec) -> OpFn:
    """Constant: the value attribute as a tensor (floats as float32, ints as int64)."""
    node.require_outputs(1)
    attrs = node.attrs
    if len(attrs) != 1:
        node.fail("expected exactly one value attribute")
    ((kind, value),) = attrs.items()
    if kind == "value" and isinstance(value, Tensor):
        tensor = value
    elif kind in ("value_float", "value_floats"):
        tensor = torch.tensor(value, dtype=torch.float32)
    elif kind in ("value_int", "value_ints"):
        tensor = torch.tensor(value, dtype=torch.int64)
    else:
        node.fail(f"attribute {kind!r} is not supported")
    return lambda inputs: (tensor,)


def softmax(node: NodeSpec) -> OpFn:
    """Softmax; before opset 13 the input is coerced to 2-D around `axis` (default 1)."""
    node.require_outputs(1)
    legacy = node.opset < 13
    axis = node.int_attr("axis", 1 if legacy else -1)

    def run(inputs: Inputs) -> tuple[Tensor]:
        """Apply softmax along the axis (or the flattened trailing block)."""
        x = required(inputs, 0)
        if not legacy:
            return (torch.softmax(x, dim=axis),)
        dim = axis + x.dim() if axis < 0 else axis
        flat = x.reshape(math.prod(x.shape[:dim]), -1)
        return (torch.softmax(flat, dim=1).reshape(x.shape),)

    return run


def gemm(node: NodeSpec) -> OpFn:
    """Gemm: alpha * op(A) @ op(B) + beta * C, with op a transpose when transA/transB are set."""
    node.require_outputs(1)
    alpha = node.float_attr("alpha", 1.0)
    beta = node.float_attr("beta", 1.0)
    trans_a = bool(node.int_attr("transA", 0))
    trans_b = bool(node.int_attr("transB", 0))

    def run(inputs: Inputs) -> tuple[Tensor]:
        """Compute the general matrix multiply."""
        a, b, c = required(inputs, 0), required(inputs, 1), optional(inputs, 2)
        a = a.t() if trans_a else a
        b = b.t() if trans_b else b
        if c is None:
            product = a @ b
            return (product * alpha if alpha != 1.0 else product,)
        return (torch.addmm(c, a, b, beta=beta, alpha=alpha),)

    return run
