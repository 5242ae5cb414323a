"""Converters for variadic, unary and reduction ops of classic architectures.

Sum, Max and Min (variadic, numpy broadcasting), PRelu, Neg, Exp, Abs, Selu, Elu, LogSoftmax,
ReduceSum (axes as an attribute before opset 13, an input from 13) and Tile.
"""

import math
from collections.abc import Callable
from functools import reduce

import torch
import torch.nn.functional as F

from worker.engine.models.onnx_graph.spec import (
    Inputs,
    NodeSpec,
    OpFn,
    axis_index,
    int_list,
    required,
)

Tensor = torch.Tensor

SELU_ALPHA = 1.67326319217681884765625
SELU_GAMMA = 1.05070102214813232421875
LOG_SOFTMAX_AXIS_OPSET = 13


def _variadic(fn: Callable[[Tensor, Tensor], Tensor]) -> Callable[[NodeSpec], OpFn]:
    """Make a converter folding a broadcasting binary function over one or more inputs."""

    def convert(node: NodeSpec) -> OpFn:
        """Check the node and return its runtime function."""
        node.require_outputs(1)
        if not any(node.inputs):
            node.fail("needs at least one input")

        def run(inputs: Inputs) -> tuple[Tensor]:
            """Fold the inputs left to right."""
            values = [value for value in inputs if value is not None]
            return (reduce(fn, values),)

        return run

    return convert


def _unary(fn: Callable[[Tensor], Tensor]) -> Callable[[NodeSpec], OpFn]:
    """Make a converter for a one-input, one-output elementwise op."""

    def convert(node: NodeSpec) -> OpFn:
        """Check the node and return its runtime function."""
        node.require_outputs(1)
        return lambda inputs: (fn(required(inputs, 0)),)

    return convert


sum_ = _variadic(torch.add)
max_ = _variadic(torch.maximum)
min_ = _variadic(torch.minimum)
neg = _unary(torch.neg)
exp = _unary(torch.exp)
abs_ = _unary(torch.abs)


def prelu(node: NodeSpec) -> OpFn:
    """PRelu: x for x >= 0, slope * x otherwise; the slope broadcasts to x."""
    node.require_outputs(1)

    def run(inputs: Inputs) -> tuple[Tensor]:
        """Scale the negative part by the slope."""
        x, slope = required(inputs, 0), required(inputs, 1)
        return (torch.where(x >= 0, x, x * slope),)

    return run


def elu(node: NodeSpec) -> OpFn:
    """Elu: x for x > 0, alpha * (exp(x) - 1) otherwise (alpha defaults to 1)."""
    node.require_outputs(1)
    alpha = node.float_attr("alpha", 1.0)
    return lambda inputs: (F.elu(required(inputs, 0), alpha),)


def selu(node: NodeSpec) -> OpFn:
    """Selu: gamma * x for x > 0, gamma * alpha * (exp(x) - 1) otherwise."""
    node.require_outputs(1)
    alpha = node.float_attr("alpha", SELU_ALPHA)
    gamma = node.float_attr("gamma", SELU_GAMMA)

    def run(inputs: Inputs) -> tuple[Tensor]:
        """Scaled exponential linear unit with the node's constants."""
        x = required(inputs, 0)
        return (gamma * torch.where(x > 0, x, alpha * torch.expm1(x)),)

    return run


def log_softmax(node: NodeSpec) -> OpFn:
    """LogSoftmax; before opset 13 the input is coerced to 2-D around `axis` (default 1)."""
    node.require_outputs(1)
    legacy = node.opset < LOG_SOFTMAX_AXIS_OPSET
    axis = node.int_attr("axis", 1 if legacy else -1)

    def run(inputs: Inputs) -> tuple[Tensor]:
        """Apply log-softmax along the axis (or the flattened trailing block)."""
        x = required(inputs, 0)
        if not legacy:
            return (torch.log_softmax(x, dim=axis),)
        dim = axis_index(axis, x.dim())
        flat = x.reshape(math.prod(x.shape[:dim]), -1)
        return (torch.log_softmax(flat, dim=1).reshape(x.shape),)

    return run


def tile(node: NodeSpec) -> OpFn:
    """Tile: repeat x `repeats[i]` times along each dim i (one repeat per dim)."""
    node.require_outputs(1)

    def run(inputs: Inputs) -> tuple[Tensor]:
        """Repeat the tensor."""
        x, repeats = required(inputs, 0), int_list(required(inputs, 1))
        if len(repeats) != x.dim() or any(r < 0 for r in repeats):
            node.fail(f"repeats {repeats} must give one non-negative count per dim of a rank-{x.dim()} input")
        return (x.repeat(*repeats) if repeats else x,)

    return run
