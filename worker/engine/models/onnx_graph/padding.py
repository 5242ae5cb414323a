"""Padding arithmetic shared by Conv and the pooling ops (explicit pads and auto_pad)."""

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F

from worker.engine.models.onnx_graph.spec import NodeSpec

AUTO_PADS = ("NOTSET", "VALID", "SAME_UPPER", "SAME_LOWER")


def check_auto_pad(node: NodeSpec, dilations: Sequence[int] | None) -> str:
    """Read and validate auto_pad; SAME with dilations is refused (runtimes disagree on it)."""
    auto_pad = node.str_attr("auto_pad", "NOTSET")
    if auto_pad not in AUTO_PADS:
        node.fail(f"auto_pad={auto_pad} is not supported (use one of {', '.join(AUTO_PADS)})")
    if auto_pad.startswith("SAME") and any(d != 1 for d in dilations or ()):
        node.fail(f"auto_pad={auto_pad} with dilations is not supported; export with explicit pads")
    return auto_pad


def resolve_pads(
    node: NodeSpec,
    auto_pad: str,
    pads: Sequence[int] | None,
    spatial: Sequence[int],
    kernel: Sequence[int],
    strides: Sequence[int],
    dilations: Sequence[int],
) -> tuple[list[int], list[int]]:
    """Return (begin pads, end pads) per spatial dim, following the ONNX auto_pad rules."""
    nd = len(spatial)
    if auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        begins, ends = [], []
        for size, k, s, d in zip(spatial, kernel, strides, dilations, strict=True):
            total = (math.ceil(size / s) - 1) * s + (k - 1) * d + 1 - size
            if total < 0:
                node.fail(f"auto_pad={auto_pad} with a kernel smaller than the stride is not supported")
            small, large = total // 2, total - total // 2
            begins.append(small if auto_pad == "SAME_UPPER" else large)
            ends.append(large if auto_pad == "SAME_UPPER" else small)
        return begins, ends
    if auto_pad == "VALID" or pads is None:
        return [0] * nd, [0] * nd
    if len(pads) != 2 * nd:
        node.fail(f"pads has {len(pads)} values, expected {2 * nd}")
    if any(p < 0 for p in pads):
        node.fail("negative pads are not supported")
    return list(pads[:nd]), list(pads[nd:])


def pad_input(x: torch.Tensor, begins: Sequence[int], ends: Sequence[int], value: float) -> torch.Tensor:
    """Pad the spatial dims (all dims after the first two) with a constant."""
    torch_pads: list[int] = []
    for begin, end in zip(reversed(begins), reversed(ends), strict=True):
        torch_pads += [begin, end]
    return F.pad(x, torch_pads, value=value)


def native_padding(begins: Sequence[int], ends: Sequence[int], kernel: Sequence[int]) -> list[int] | None:
    """Symmetric pads torch pooling can apply itself (at most half the kernel), else None."""
    if list(begins) != list(ends) or any(p > k // 2 for p, k in zip(begins, kernel, strict=True)):
        return None
    return list(begins)


def pool_output_size(
    size: int, kernel: int, stride: int, dilation: int, begin: int, end: int, ceil_mode: bool
) -> int:
    """ONNX pooling output length; with ceil_mode the last window must start inside input or left pad."""
    span = size + begin + end - ((kernel - 1) * dilation + 1)
    out = (math.ceil(span / stride) if ceil_mode else span // stride) + 1
    if ceil_mode and (out - 1) * stride >= size + begin:
        out -= 1
    return out


def crop_to(x: torch.Tensor, sizes: Sequence[int]) -> torch.Tensor:
    """Crop the spatial dims of x to at most `sizes`."""
    index = (slice(None), slice(None), *(slice(0, n) for n in sizes))
    return x[index]
