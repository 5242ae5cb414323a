"""Converters for reductions over axes: ReduceMean and ReduceSum.

Both take axes as an attribute in older opsets and as an optional input from a later one (ReduceSum
from opset 13, ReduceMean from 18), with keepdims and noop_with_empty_axes; only the reducer differs.
"""

from collections.abc import Callable

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
Reducer = Callable[[Tensor, list[int], bool], Tensor]

AXES_INPUT_OPSET = 18
REDUCE_SUM_AXES_INPUT_OPSET = 13


def _reduction(node: NodeSpec, op_name: str, axes_input_opset: int, reducer: Reducer) -> OpFn:
    """A reduction over axes (all dims when none are given) with keepdims and noop_with_empty_axes."""
    node.require_outputs(1)
    keepdims = bool(node.int_attr("keepdims", 1))
    axes_as_input = node.opset >= axes_input_opset
    attr_axes = node.ints_attr("axes")
    if axes_as_input and attr_axes is not None:
        node.fail(f"the 'axes' attribute is not part of {op_name} in opset {node.opset}; use the input")
    if not axes_as_input and "noop_with_empty_axes" in node.attrs:
        node.fail(f"noop_with_empty_axes needs opset {axes_input_opset} or newer")
    noop = bool(node.int_attr("noop_with_empty_axes", 0))

    def run(inputs: Inputs) -> tuple[Tensor]:
        """Reduce over the named dims, or pass through for empty axes with noop_with_empty_axes."""
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
        return (reducer(x, dims, keepdims),)

    return run


def reduce_mean(node: NodeSpec) -> OpFn:
    """ReduceMean: the average over the axes."""
    return _reduction(node, "ReduceMean", AXES_INPUT_OPSET, lambda x, d, k: x.mean(dim=d, keepdim=k))


def reduce_sum(node: NodeSpec) -> OpFn:
    """ReduceSum: the sum over the axes."""
    return _reduction(node, "ReduceSum", REDUCE_SUM_AXES_INPUT_OPSET, lambda x, d, k: x.sum(dim=d, keepdim=k))
