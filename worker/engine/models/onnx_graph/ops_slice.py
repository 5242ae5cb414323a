"""Converters for per-axis windows: Slice (onnxruntime clamping rules) and Pad (constant/reflect/edge).

Starts, ends, steps and pads are read from int64 tensors at run time, so they may be computed
from the input's shape. Negative steps and reflect/edge padding gather with index tensors, which
keeps them differentiable.
"""

import torch
import torch.nn.functional as F

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

PAD_MODES = ("constant", "reflect", "edge")
_END_SENTINELS = (2**31 - 1, 2**63 - 1)


def _slice_axis(x: Tensor, dim: int, start: int, end: int, step: int) -> Tensor:
    """Slice one dim after clamping start/end the way onnxruntime does (huge or negative values allowed).

    As in onnxruntime (and unlike a literal reading of the spec), an end of INT32_MAX or INT64_MAX
    means "to the last element in the step's direction", so it also runs to the front for a
    negative step.
    """
    size = x.shape[dim]
    start = start + size if start < 0 else start
    if end in _END_SENTINELS:
        end = -1 if step < 0 else size
    elif end < 0:
        end += size
    if step > 0:
        start, end = min(max(start, 0), size), min(max(end, 0), size)
        index: list[slice] = [slice(None)] * dim + [slice(start, end, min(step, max(size, 1)))]
        return x[tuple(index)]
    start, end = min(max(start, 0), size - 1), min(max(end, -1), size - 1)
    picked = torch.tensor(list(range(start, end, step)), dtype=torch.int64, device=x.device)
    return x.index_select(dim, picked)


def slice_(node: NodeSpec) -> OpFn:
    """Slice: starts/ends/axes as attributes before opset 10, starts/ends/axes/steps inputs after."""
    node.require_outputs(1)
    legacy = node.opset < 10
    attr_starts, attr_ends, attr_axes = (node.ints_attr(k) for k in ("starts", "ends", "axes"))
    if legacy and (attr_starts is None or attr_ends is None):
        node.fail("missing 'starts' or 'ends' attribute")
    if not legacy and (attr_starts is not None or attr_ends is not None or attr_axes is not None):
        node.fail(f"starts/ends/axes are inputs in opset {node.opset}, not attributes")

    def run(inputs: Inputs) -> tuple[Tensor]:
        """Slice each named axis in turn."""
        x = required(inputs, 0)
        if legacy:
            starts, ends, axes, steps = attr_starts or [], attr_ends or [], attr_axes, None
        else:
            starts, ends = int_list(required(inputs, 1)), int_list(required(inputs, 2))
            axes_in, steps_in = optional(inputs, 3), optional(inputs, 4)
            axes = None if axes_in is None else int_list(axes_in)
            steps = None if steps_in is None else int_list(steps_in)
        axes = list(range(len(starts))) if axes is None else axes
        steps = [1] * len(starts) if steps is None else steps
        dims = [axis_index(a, x.dim()) for a in axes]
        if not len(starts) == len(ends) == len(dims) == len(steps) or len(set(dims)) != len(dims):
            node.fail(f"starts {starts}, ends {ends}, axes {axes} and steps {steps} do not line up")
        if 0 in steps:
            node.fail("a step of 0 is invalid")
        for dim, start, end, step in zip(dims, starts, ends, steps, strict=True):
            x = _slice_axis(x, dim, start, end, step)
        return (x,)

    return run


def _pad_index(node: NodeSpec, size: int, begin: int, end: int, mode: str, device: torch.device) -> Tensor:
    """Source indices along one dim for reflect (mirror, edge not repeated) or edge (repeat) padding."""
    if begin < 0 or end < 0:
        node.fail(f"negative pads are only supported in constant mode, got {begin}, {end}")
    if mode == "reflect" and max(begin, end) > size - 1:
        node.fail(f"reflect pads {begin}, {end} must be smaller than the dim ({size})")
    if mode == "edge" and size == 0:
        node.fail("edge padding of an empty dim is undefined")
    index = torch.arange(-begin, size + end, dtype=torch.int64, device=device)
    if mode == "edge":
        return index.clamp(0, size - 1)
    index = index.abs()
    return torch.where(index > size - 1, 2 * (size - 1) - index, index)


def _pad(
    x: Tensor, node: NodeSpec, pads: list[int], axes: list[int] | None, mode: str, value: float
) -> Tensor:
    """Pad (or, with negative constant pads, crop) the named axes of x."""
    dims = list(range(x.dim())) if axes is None else [axis_index(a, x.dim()) for a in axes]
    if len(pads) != 2 * len(dims) or len(set(dims)) != len(dims):
        node.fail(f"pads {pads} do not match the {len(dims)} padded axes")
    begins = dict(zip(dims, pads[: len(dims)], strict=True))
    ends = dict(zip(dims, pads[len(dims) :], strict=True))
    if mode == "constant":
        torch_pads: list[int] = []
        for dim in reversed(range(x.dim())):
            torch_pads += [begins.get(dim, 0), ends.get(dim, 0)]
        return F.pad(x, torch_pads, value=value) if any(torch_pads) else x
    for dim in dims:
        if begins[dim] or ends[dim]:
            x = x.index_select(dim, _pad_index(node, x.shape[dim], begins[dim], ends[dim], mode, x.device))
    return x


def pad(node: NodeSpec) -> OpFn:
    """Pad: pads/value attributes before opset 11; pads, constant_value and axes (18+) inputs after."""
    node.require_outputs(1)
    mode = node.str_attr("mode", "constant")
    if mode not in PAD_MODES:
        node.fail(f"mode={mode!r} is not supported (use one of {', '.join(PAD_MODES)})")
    legacy = node.opset < 11
    attr_pads = node.ints_attr("pads")
    attr_value = node.float_attr("value", 0.0)
    if legacy and attr_pads is None:
        node.fail("missing 'pads' attribute")
    if not legacy and (attr_pads is not None or "value" in node.attrs):
        node.fail(f"pads and value are inputs in opset {node.opset}, not attributes")

    def run(inputs: Inputs) -> tuple[Tensor]:
        """Read the pads and pad."""
        x = required(inputs, 0)
        if legacy:
            return (_pad(x, node, attr_pads or [], None, mode, attr_value),)
        value_in = optional(inputs, 2)
        axes_in = optional(inputs, 3) if node.opset >= 18 else None
        value = 0.0 if value_in is None else value_in.reshape(()).item()
        axes = None if axes_in is None else int_list(axes_in)
        return (_pad(x, node, int_list(required(inputs, 1)), axes, mode, value),)

    return run
