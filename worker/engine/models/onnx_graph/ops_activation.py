"""Converters for parametrised activations: LeakyRelu, Softplus, Gelu and Clip."""

import torch
import torch.nn.functional as F

from worker.engine.models.onnx_graph.spec import Inputs, NodeSpec, OpFn, optional, required

Tensor = torch.Tensor

GELU_APPROXIMATIONS = ("none", "tanh")


def leaky_relu(node: NodeSpec) -> OpFn:
    """LeakyRelu: x for x >= 0, alpha * x otherwise (alpha defaults to 0.01)."""
    node.require_outputs(1)
    alpha = node.float_attr("alpha", 0.01)
    return lambda inputs: (F.leaky_relu(required(inputs, 0), alpha),)


def softplus(node: NodeSpec) -> OpFn:
    """Softplus: log(1 + exp(x)), computed stably (exact to float32 precision)."""
    node.require_outputs(1)
    return lambda inputs: (F.softplus(required(inputs, 0)),)


def gelu(node: NodeSpec) -> OpFn:
    """Gelu (opset 20): exact erf form, or the tanh approximation."""
    node.require_outputs(1)
    approximate = node.str_attr("approximate", "none")
    if approximate not in GELU_APPROXIMATIONS:
        choices = ", ".join(GELU_APPROXIMATIONS)
        node.fail(f"approximate={approximate!r} is not supported (use one of {choices})")
    return lambda inputs: (F.gelu(required(inputs, 0), approximate=approximate),)


def _limits(dtype: torch.dtype) -> tuple[float | int, float | int]:
    """The lowest and highest finite values of a dtype: Clip's bounds when none is given."""
    info = torch.finfo(dtype) if dtype.is_floating_point else torch.iinfo(dtype)
    return info.min, info.max


def _bound(node: NodeSpec, value: Tensor | None, default: float | int, x: Tensor) -> Tensor:
    """A Clip bound as a 0-d tensor like x (a missing input means the dtype's limit)."""
    if value is None:
        return torch.tensor(default, dtype=x.dtype, device=x.device)
    if value.numel() != 1:
        node.fail(f"min and max must be scalars, got shape {list(value.shape)}")
    return value.reshape(()).to(x.dtype)


def clip(node: NodeSpec) -> OpFn:
    """Clip: bounds are attributes before opset 11 and optional scalar inputs from opset 11.

    Like onnxruntime, an absent bound is the dtype's finite limit (so +-inf is clamped to it), and
    a min above the max sets every element to the max.
    """
    node.require_outputs(1)
    legacy = node.opset < 11
    if not legacy and ("min" in node.attrs or "max" in node.attrs):
        node.fail(f"min/max attributes are not part of Clip in opset {node.opset}; they are inputs")
    attr_min = node.float_attr("min", float("nan")) if "min" in node.attrs else None
    attr_max = node.float_attr("max", float("nan")) if "max" in node.attrs else None

    def run(inputs: Inputs) -> tuple[Tensor]:
        """Clamp x between the bounds."""
        x = required(inputs, 0)
        low_default, high_default = _limits(x.dtype)
        if legacy:
            low = low_default if attr_min is None else attr_min
            high = high_default if attr_max is None else attr_max
            lower, upper = _bound(node, None, low, x), _bound(node, None, high, x)
        else:
            lower = _bound(node, optional(inputs, 1), low_default, x)
            upper = _bound(node, optional(inputs, 2), high_default, x)
        return (torch.clamp(x, min=lower, max=upper),)

    return run
