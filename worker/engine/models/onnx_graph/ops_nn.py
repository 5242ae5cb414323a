"""Converters for convolution, pooling, normalization and dropout."""

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from worker.engine.models.onnx_graph.errors import GraphBuildError
from worker.engine.models.onnx_graph.padding import (
    check_auto_pad,
    crop_to,
    native_padding,
    pad_input,
    pool_output_size,
    resolve_pads,
)
from worker.engine.models.onnx_graph.spec import Inputs, NodeSpec, OpFn, axis_index, optional, required

Tensor = torch.Tensor

_CONV: dict[int, Callable[..., Tensor]] = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}
_MAX_POOL: dict[int, Callable[..., Tensor]] = {1: F.max_pool1d, 2: F.max_pool2d, 3: F.max_pool3d}
_AVG_POOL: dict[int, Callable[..., Tensor]] = {2: F.avg_pool2d, 3: F.avg_pool3d}


def conv(node: NodeSpec) -> OpFn:
    """Conv (1-3 spatial dims) with group, strides, dilations, pads and auto_pad."""
    node.require_outputs(1)
    group = node.int_attr("group", 1)
    strides, dilations = node.ints_attr("strides"), node.ints_attr("dilations")
    auto_pad = check_auto_pad(node, dilations)
    pads, kernel_attr = node.ints_attr("pads"), node.ints_attr("kernel_shape")

    def run(inputs: Inputs) -> tuple[Tensor]:
        """Pad (asymmetrically if needed) and convolve."""
        x, weight, bias = required(inputs, 0), required(inputs, 1), optional(inputs, 2)
        kernel = list(weight.shape[2:])
        nd = len(kernel)
        if nd not in _CONV or (kernel_attr is not None and kernel_attr != kernel):
            node.fail(f"unsupported kernel {kernel} (kernel_shape attribute {kernel_attr})")
        step, dilate = strides or [1] * nd, dilations or [1] * nd
        begins, ends = resolve_pads(node, auto_pad, pads, x.shape[2:], kernel, step, dilate)
        if begins != ends:
            x, begins = pad_input(x, begins, ends, 0.0), [0] * nd
        return (_CONV[nd](x, weight, bias, step, begins, dilate, group),)

    return run


def _pool_geometry(node: NodeSpec, dims: tuple[int, ...]) -> tuple[list[int], list[int], list[int]]:
    """Read kernel_shape, strides and dilations of a pooling node."""
    kernel = node.ints_attr("kernel_shape")
    if kernel is None or len(kernel) not in dims:
        node.fail(f"kernel_shape {kernel} is not supported")
    nd = len(kernel)
    pads = node.ints_attr("pads") or []
    if any(p >= k for p, k in zip(pads, kernel + kernel, strict=False)):
        node.fail(f"pads {pads} must be smaller than the kernel {kernel}")
    return kernel, node.ints_attr("strides") or [1] * nd, node.ints_attr("dilations") or [1] * nd


def max_pool(node: NodeSpec) -> OpFn:
    """MaxPool with strides, pads (padded with -inf), dilations, ceil_mode and auto_pad."""
    node.require_outputs(1)
    kernel, strides, dilations = _pool_geometry(node, (1, 2, 3))
    auto_pad = check_auto_pad(node, dilations)
    pads = node.ints_attr("pads")
    ceil_mode = bool(node.int_attr("ceil_mode", 0))
    pool = _MAX_POOL[len(kernel)]

    def run(inputs: Inputs) -> tuple[Tensor]:
        """Max-pool, padding by hand when torch cannot express the pads."""
        x = required(inputs, 0)
        begins, ends = resolve_pads(node, auto_pad, pads, x.shape[2:], kernel, strides, dilations)
        native = native_padding(begins, ends, kernel)
        if native is not None:
            return (pool(x, kernel, strides, native, dilations, ceil_mode),)
        sizes = [
            pool_output_size(n, k, s, d, b, e, ceil_mode)
            for n, k, s, d, b, e in zip(x.shape[2:], kernel, strides, dilations, begins, ends, strict=True)
        ]
        padded = pad_input(x, begins, ends, float("-inf"))
        return (crop_to(pool(padded, kernel, strides, 0, dilations, ceil_mode), sizes),)

    return run


def average_pool(node: NodeSpec) -> OpFn:
    """AveragePool with strides, pads, ceil_mode, count_include_pad and auto_pad (no dilations)."""
    node.require_outputs(1)
    kernel, strides, dilations = _pool_geometry(node, (1, 2, 3))
    auto_pad = check_auto_pad(node, dilations)
    if any(d != 1 for d in dilations):
        node.fail("dilations other than 1 are not supported")
    pads = node.ints_attr("pads")
    ceil_mode = bool(node.int_attr("ceil_mode", 0))
    include_pad = bool(node.int_attr("count_include_pad", 0))
    lift = len(kernel) == 1
    kernel_nd, strides_nd = (kernel + [1], strides + [1]) if lift else (kernel, strides)
    pool = _AVG_POOL[len(kernel_nd)]

    def run(inputs: Inputs) -> tuple[Tensor]:
        """Average-pool; uncommon pads are handled as a padded sum over a padded count."""
        x = required(inputs, 0)
        x = x.unsqueeze(-1) if lift else x
        spatial = list(x.shape[2:])
        begins, ends = resolve_pads(node, auto_pad, pads, spatial[: len(kernel)], kernel, strides, dilations)
        begins, ends = (begins + [0], ends + [0]) if lift else (begins, ends)
        native = native_padding(begins, ends, kernel_nd)
        if native is not None:
            out = pool(x, kernel_nd, strides_nd, native, ceil_mode, include_pad)
        else:
            sizes = [
                pool_output_size(n, k, s, 1, b, e, ceil_mode)
                for n, k, s, b, e in zip(spatial, kernel_nd, strides_nd, begins, ends, strict=True)
            ]
            mask = torch.ones((1, 1, *spatial), dtype=x.dtype, device=x.device)
            sums = pool(pad_input(x, begins, ends, 0.0), kernel_nd, strides_nd, 0, ceil_mode, True, 1)
            mask = pad_input(mask, begins, ends, 1.0 if include_pad else 0.0)
            counts = pool(mask, kernel_nd, strides_nd, 0, ceil_mode, True, 1)
            out = crop_to(sums / counts, sizes)
        return (out.squeeze(-1) if lift else out,)

    return run


def global_average_pool(node: NodeSpec) -> OpFn:
    """GlobalAveragePool: mean over all spatial dims, kept as size-1 dims."""
    node.require_outputs(1)

    def run(inputs: Inputs) -> tuple[Tensor]:
        """Average over every dim after the channel dim."""
        x = required(inputs, 0)
        return (x.mean(dim=tuple(range(2, x.dim())), keepdim=True),)

    return run


class BatchNormOp(nn.Module):
    """BatchNormalization that follows the module's mode, like torch.nn.BatchNorm.

    In eval mode it normalises with the running mean and variance it is given. In train mode it
    normalises with the batch statistics and updates the running tensors in place (they are the graph
    module's buffers) with ONNX's momentum: running = momentum * running + (1 - momentum) * batch,
    the batch variance being the unbiased one, as torch does.
    """

    def __init__(self, eps: float, momentum: float) -> None:
        """Keep epsilon and ONNX's momentum."""
        super().__init__()
        self.eps, self.momentum = eps, momentum

    def forward(self, inputs: Inputs) -> tuple[Tensor]:
        """Normalise x with the batch (train) or running (eval) statistics."""
        x, scale, bias = required(inputs, 0), required(inputs, 1), required(inputs, 2)
        mean, var = required(inputs, 3), required(inputs, 4)
        if not self.training:
            return (F.batch_norm(x, mean, var, scale, bias, training=False, eps=self.eps),)
        return (F.batch_norm(x, mean, var, scale, bias, True, 1.0 - self.momentum, self.eps),)


def batch_normalization(node: NodeSpec) -> OpFn:
    """BatchNormalization: running statistics in eval mode, batch statistics and updates in train mode."""
    node.require_outputs(1)
    if node.int_attr("training_mode", 0):
        node.fail("training_mode=1 is not supported")
    if node.opset < 9 and node.int_attr("spatial", 1) != 1:
        node.fail("spatial=0 is not supported")
    momentum = node.float_attr("momentum", 0.9)
    if not 0.0 <= momentum <= 1.0:
        node.fail(f"momentum {momentum} is outside [0, 1]")
    return BatchNormOp(node.float_attr("epsilon", 1e-5), momentum)


class DropoutOp(nn.Module):
    """Dropout that follows the module's mode: identity in eval mode, inverted dropout in train mode.

    The drop mask comes from torch's global random generator (the fit loop seeds it). The ratio is
    the `ratio` input (opset 12 on) or attribute (before); the graph's training_mode input is ignored:
    the module's mode decides.
    """

    def __init__(self, ratio: float | None, wants_mask: bool) -> None:
        """Keep the attribute ratio (None: read it from input 1) and whether the mask is used."""
        super().__init__()
        self.ratio, self.wants_mask = ratio, wants_mask

    def forward(self, inputs: Inputs) -> tuple[Tensor, ...]:
        """Drop elements with probability ratio and rescale the rest (train), or pass x through."""
        x = required(inputs, 0)
        ratio = 0.0
        if self.training:
            ratio = self.ratio if self.ratio is not None else _ratio_input(optional(inputs, 1))
        if ratio == 0.0:
            return (x, torch.ones_like(x, dtype=torch.bool)) if self.wants_mask else (x,)
        keep = torch.rand_like(x) >= ratio
        out = x * keep / (1.0 - ratio) if ratio < 1.0 else torch.zeros_like(x)
        return (out, keep) if self.wants_mask else (out,)


def _ratio_input(value: Tensor | None) -> float:
    """Dropout's ratio input as a float in [0, 1] (0.5 when absent)."""
    if value is None:
        return 0.5
    if value.numel() != 1:
        raise GraphBuildError(f"Dropout ratio must be a scalar, got shape {list(value.shape)}")
    ratio = float(value.reshape(()))
    if not 0.0 <= ratio <= 1.0:
        raise GraphBuildError(f"Dropout ratio {ratio} is outside [0, 1]")
    return ratio


def dropout(node: NodeSpec) -> OpFn:
    """Dropout: identity in eval mode (with an all-true mask if used), inverted dropout in train mode."""
    node.require_outputs(2)
    ratio = node.float_attr("ratio", 0.5) if node.opset < 12 else None
    if ratio is not None and not 0.0 <= ratio <= 1.0:
        node.fail(f"ratio {ratio} is outside [0, 1]")
    return DropoutOp(ratio, node.num_outputs == 2)


def layer_normalization(node: NodeSpec) -> OpFn:
    """LayerNormalization (opset 17): normalise over dims axis.., then scale and optional bias."""
    node.require_outputs(1)
    axis = node.int_attr("axis", -1)
    eps = node.float_attr("epsilon", 1e-5)
    stash_type = node.int_attr("stash_type", 1)
    if stash_type != 1:
        node.fail(f"stash_type={stash_type} is not supported (only float32 statistics, 1)")

    def run(inputs: Inputs) -> tuple[Tensor]:
        """Normalise with biased variance; broadcast scale and bias when they are not full-shape."""
        x, scale, bias = required(inputs, 0), required(inputs, 1), optional(inputs, 2)
        shape = tuple(x.shape[axis_index(axis, x.dim()) :])
        if tuple(scale.shape) == shape and (bias is None or tuple(bias.shape) == shape):
            return (F.layer_norm(x, shape, scale, bias, eps),)
        out = F.layer_norm(x, shape, None, None, eps) * scale
        return (out if bias is None else out + bias,)

    return run
