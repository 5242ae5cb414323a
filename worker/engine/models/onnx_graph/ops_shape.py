"""Converters for ops that move data around: Flatten, Reshape, Shape, Gather, Unsqueeze, Concat.

Shape-like values stay tensors (int64) between nodes so graphs that compute shapes at run time,
such as `x.view(x.size(0), -1)` exported with a dynamic batch, keep working for any batch size.
"""

import math

import torch

from worker.engine.models.onnx_graph.spec import Inputs, NodeSpec, OpFn, required

Tensor = torch.Tensor


def _axis(axis: int, rank: int) -> int:
    """Normalise a possibly negative axis against a rank."""
    return axis + rank if axis < 0 else axis


def flatten(node: NodeSpec) -> OpFn:
    """Flatten to 2-D: dims before `axis` form the rows, the rest the columns."""
    node.require_outputs(1)
    axis = node.int_attr("axis", 1)

    def run(inputs: Inputs) -> tuple[Tensor]:
        """Reshape to (prod(shape[:axis]), prod(shape[axis:]))."""
        x = required(inputs, 0)
        dim = _axis(axis, x.dim())
        return (x.reshape(math.prod(x.shape[:dim]), math.prod(x.shape[dim:])),)

    return run


def reshape(node: NodeSpec) -> OpFn:
    """Reshape to a shape tensor: 0 copies the input dim (unless allowzero), -1 is inferred."""
    node.require_outputs(1)
    allowzero = bool(node.int_attr("allowzero", 0))

    def run(inputs: Inputs) -> tuple[Tensor]:
        """Resolve the target shape and reshape."""
        x, shape_tensor = required(inputs, 0), required(inputs, 1)
        shape = [int(v) for v in shape_tensor.reshape(-1).tolist()]
        if not allowzero:
            shape = [x.shape[i] if v == 0 else v for i, v in enumerate(shape)]
        return (x.reshape(shape),)

    return run


def shape(node: NodeSpec) -> OpFn:
    """Shape: the input's dims as an int64 tensor, sliced by start/end (opset 15+)."""
    node.require_outputs(1)
    start = node.int_attr("start", 0)
    end = node.attrs.get("end")
    if end is not None and not isinstance(end, int):
        node.fail("attribute 'end' should be an integer")

    def run(inputs: Inputs) -> tuple[Tensor]:
        """Read the dims of the input at run time."""
        x = required(inputs, 0)
        dims = list(x.shape)[start:end]
        return (torch.tensor(dims, dtype=torch.int64, device=x.device),)

    return run


def gather(node: NodeSpec) -> OpFn:
    """Gather along `axis` with (possibly negative, any-rank) integer indices."""
    node.require_outputs(1)
    axis = node.int_attr("axis", 0)

    def run(inputs: Inputs) -> tuple[Tensor]:
        """Index-select and restore the indices' shape."""
        data, indices = required(inputs, 0), required(inputs, 1).long()
        dim = _axis(axis, data.dim())
        size = data.shape[dim]
        indices = torch.where(indices < 0, indices + size, indices)
        picked = data.index_select(dim, indices.reshape(-1))
        out_shape = (*data.shape[:dim], *indices.shape, *data.shape[dim + 1 :])
        return (picked.reshape(out_shape),)

    return run


def unsqueeze(node: NodeSpec) -> OpFn:
    """Unsqueeze: axes from the attribute (opset < 13) or the second input (opset 13+)."""
    node.require_outputs(1)
    attr_axes = node.ints_attr("axes")
    if node.opset < 13 and attr_axes is None:
        node.fail("missing 'axes' attribute")

    def run(inputs: Inputs) -> tuple[Tensor]:
        """Insert size-1 dims at the output positions named by axes."""
        x = required(inputs, 0)
        axes = attr_axes if attr_axes is not None else required(inputs, 1).reshape(-1).tolist()
        rank = x.dim() + len(axes)
        for dim in sorted(_axis(int(a), rank) for a in axes):
            x = x.unsqueeze(dim)
        return (x,)

    return run


def concat(node: NodeSpec) -> OpFn:
    """Concat along `axis`."""
    node.require_outputs(1)
    if "axis" not in node.attrs:
        node.fail("missing 'axis' attribute")
    axis = node.int_attr("axis", 0)

    def run(inputs: Inputs) -> tuple[Tensor]:
        """Concatenate all present inputs."""
        return (torch.cat([t for t in inputs if t is not None], dim=axis),)

    return run
