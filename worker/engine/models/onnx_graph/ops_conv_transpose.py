"""Converter for ConvTranspose (1-3 spatial dims): pads, output_padding, output_shape and auto_pad."""

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F

from worker.engine.models.onnx_graph.padding import AUTO_PADS
from worker.engine.models.onnx_graph.spec import Inputs, NodeSpec, OpFn, optional, required

Tensor = torch.Tensor

_CONV_TRANSPOSE: dict[int, Callable[..., Tensor]] = {
    1: F.conv_transpose1d,
    2: F.conv_transpose2d,
    3: F.conv_transpose3d,
}


def _split(total: int, head_gets_more: bool) -> tuple[int, int]:
    """Split a total padding between head and tail; the odd unit goes to the head or the tail."""
    small, large = total // 2, total - total // 2
    return (large, small) if head_gets_more else (small, large)


def _pads(
    node: NodeSpec,
    auto_pad: str,
    full: Sequence[int],
    spatial: Sequence[int],
    strides: Sequence[int],
) -> tuple[list[int], list[int]]:
    """(head, tail) crops of the full transposed-convolution output, per spatial dim.

    `full` is each dim's size before cropping (output_padding included). The crops follow
    onnxruntime, which is what parity is checked against: an explicit output_shape puts the odd unit
    of the total padding at the head (a negative total extends the output with zeros); without it,
    SAME_UPPER puts the odd unit at the tail, SAME_LOWER at the head, and a negative total is 0.
    """
    nd = len(full)
    output_shape = node.ints_attr("output_shape")
    if output_shape is not None:
        if len(output_shape) != nd:
            node.fail(f"output_shape {output_shape} must name {nd} spatial dims")
        target = list(output_shape)
    elif auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        target = [size * stride for size, stride in zip(spatial, strides, strict=True)]
    else:
        if auto_pad == "VALID":
            return [0] * nd, [0] * nd
        pads = node.ints_attr("pads") or [0] * (2 * nd)
        if len(pads) != 2 * nd or any(p < 0 for p in pads):
            node.fail(f"pads {pads} must be {2 * nd} non-negative values")
        return list(pads[:nd]), list(pads[nd:])
    heads, tails = [], []
    explicit = output_shape is not None
    for size, want in zip(full, target, strict=True):
        total = size - want if explicit else max(0, size - want)
        head, tail = _split(total, head_gets_more=explicit or auto_pad == "SAME_LOWER")
        heads.append(head)
        tails.append(tail)
    return heads, tails


def _crop(x: Tensor, heads: Sequence[int], tails: Sequence[int]) -> Tensor:
    """Remove `heads`/`tails` elements from each spatial dim (negative values pad with zeros)."""
    torch_pads: list[int] = []
    for head, tail in zip(reversed(heads), reversed(tails), strict=True):
        torch_pads += [-head, -tail]
    return F.pad(x, torch_pads) if any(torch_pads) else x


def conv_transpose(node: NodeSpec) -> OpFn:
    """ConvTranspose with group, strides, dilations, pads, output_padding, output_shape and auto_pad."""
    node.require_outputs(1)
    group = node.int_attr("group", 1)
    auto_pad = node.str_attr("auto_pad", "NOTSET")
    if auto_pad not in AUTO_PADS:
        node.fail(f"auto_pad={auto_pad} is not supported (use one of {', '.join(AUTO_PADS)})")
    strides_attr, dilations_attr = node.ints_attr("strides"), node.ints_attr("dilations")
    output_padding_attr, kernel_attr = node.ints_attr("output_padding"), node.ints_attr("kernel_shape")

    def run(inputs: Inputs) -> tuple[Tensor]:
        """Transposed-convolve without padding, add output_padding, crop the pads, add the bias."""
        x, weight, bias = required(inputs, 0), required(inputs, 1), optional(inputs, 2)
        kernel = list(weight.shape[2:])
        nd = len(kernel)
        if nd not in _CONV_TRANSPOSE or (kernel_attr is not None and kernel_attr != kernel):
            node.fail(f"unsupported kernel {kernel} (kernel_shape attribute {kernel_attr})")
        strides, dilations = strides_attr or [1] * nd, dilations_attr or [1] * nd
        extra = output_padding_attr or [0] * nd
        if len(strides) != nd or len(dilations) != nd or len(extra) != nd or any(p < 0 for p in extra):
            node.fail("strides, dilations and output_padding need one non-negative value per spatial dim")
        out = _CONV_TRANSPOSE[nd](x, weight, None, strides, 0, 0, group, dilations)
        full = [size + pad for size, pad in zip(out.shape[2:], extra, strict=True)]
        heads, tails = _pads(node, auto_pad, full, list(x.shape[2:]), strides)
        out = _crop(out, heads, [tail - pad for tail, pad in zip(tails, extra, strict=True)])
        if bias is not None:
            out = out + bias.reshape(1, -1, *([1] * nd))
        return (out,)

    return run
