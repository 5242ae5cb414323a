"""Converters for reductions: ReduceMean (axes as an attribute before opset 18, an input from 18)."""

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

AXES_INPUT_OPSET = 18


def reduce_mean(node: NodeSpec) -> OpFn:
    """ReduceMean over axes (all dims when none are given) with keepdims and noop_with_empty_axes."""
    node.require_outputs(1)
    keepdims = bool(node.int_attr("keepdims", 1))
    axes_as_input = node.opset >= AXES_INPUT_OPSET
    attr_axes = node.ints_attr("axes")
    if axes_as_input and attr_axes is not None:
        node.fail(f"the 'axes' attribute is not part of ReduceMean in opset {node.opset}; use the input")
    if not axes_as_input and "noop_with_empty_axes" in node.attrs:
        node.fail(f"noop_with_empty_axes needs opset {AXES_INPUT_OPSET} or newer")
    noop = bool(node.int_attr("noop_with_empty_axes", 0))

    def run(inputs: Inputs) -> tuple[Tensor]:
        """Average over the named dims, or pass through for empty axes with noop_with_empty_axes."""
        x = required(inputs, 0)
        axes_in = optional(inputs, 1) if axes_as_input else None
        axes = int_list(axes_in) if axes_in is not None else attr_axes or []
        if not axes and noop:
            return (x,)
        dims = [axis_index(a, x.dim()) for a in axes] if axes else list(range(x.dim()))
        if len(set(dims)) != len(dims):
            node.fail(f"axes {axes} name a dim twice")
        if not dims:
            return (x,)
        return (x.mean(dim=dims, keepdim=keepdims),)

    return run
