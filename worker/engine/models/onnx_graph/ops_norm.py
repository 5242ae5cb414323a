"""Converters for LRN (AlexNet, GoogLeNet) and InstanceNormalization."""

import torch
import torch.nn.functional as F

from worker.engine.models.onnx_graph.spec import Inputs, NodeSpec, OpFn, required

Tensor = torch.Tensor


def lrn(node: NodeSpec) -> OpFn:
    """LRN across channels: x / (bias + alpha / size * sum of squares over `size` channels) ** beta.

    The window around channel c runs from c - floor((size - 1) / 2) to c + ceil((size - 1) / 2),
    as ONNX defines it (torch's local_response_norm centres even windows the other way).
    """
    node.require_outputs(1)
    size = node.int_attr("size", 0)
    if size < 1:
        node.fail(f"size must be a positive integer, got {size}")
    alpha = node.float_attr("alpha", 1e-4)
    beta = node.float_attr("beta", 0.75)
    bias = node.float_attr("bias", 1.0)
    front, back = (size - 1) // 2, size - 1 - (size - 1) // 2

    def run(inputs: Inputs) -> tuple[Tensor]:
        """Normalise each channel by its neighbourhood's squared activity."""
        x = required(inputs, 0)
        if x.dim() < 3:
            node.fail(f"expects an input of rank 3 or more, got rank {x.dim()}")
        n, c = x.shape[0], x.shape[1]
        squares = (x * x).reshape(n, 1, c, -1)
        padded = F.pad(squares, (0, 0, front, back))
        mean = F.avg_pool2d(padded, (size, 1), stride=1)
        return (x / (bias + alpha * mean.reshape(x.shape)).pow(beta),)

    return run


def instance_normalization(node: NodeSpec) -> OpFn:
    """InstanceNormalization: per-sample, per-channel normalisation over the spatial dims."""
    node.require_outputs(1)
    eps = node.float_attr("epsilon", 1e-5)

    def run(inputs: Inputs) -> tuple[Tensor]:
        """Normalise with the instance statistics, then scale and shift per channel."""
        x, scale, bias = required(inputs, 0), required(inputs, 1), required(inputs, 2)
        if x.dim() < 3:
            node.fail(f"expects an input of rank 3 or more, got rank {x.dim()}")
        return (F.instance_norm(x, weight=scale, bias=bias, eps=eps),)

    return run
