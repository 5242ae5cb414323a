"""Neurons of a trainable ONNX graph: channels of its convolutions and hidden linear layers, gated or pruned.

A unit is a graph value whose dimension 1 counts neurons: the output of a Conv (of the
BatchNormalization right after it, when there is one) or of a hidden Gemm. Gating multiplies each
channel of that value at forward time (ANP's perturbations, fine-pruning's trial cuts); pruning zeroes
the initializer slices that produce the channel (Conv weight and bias, BatchNormalization scale and
shift, Gemm weight row or column and bias), so the exported graph computes a zero channel.
"""

import dataclasses
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import onnx
import torch
from onnx import helper
from torch import Tensor

from worker.engine.models.onnx_graph import OnnxGraphModule

Hook = Callable[[str, Tensor], Tensor]


@dataclass(frozen=True)
class Unit:
    """A layer's neurons: the graph value, its channel count, the (initializer, axis) slices behind them;
    `bias` names the per-channel bias initializer when a method keeps it apart (ANP)."""

    value: str
    channels: int
    zero: tuple[tuple[str, int], ...]
    kind: str
    bias: str | None = None


def _consumers(graph: onnx.GraphProto) -> dict[str, list[onnx.NodeProto]]:
    """The nodes reading each value."""
    readers: dict[str, list[onnx.NodeProto]] = {}
    for node in graph.node:
        for name in node.input:
            readers.setdefault(name, []).append(node)
    return readers


def find_units(module: OnnxGraphModule) -> list[Unit]:
    """The units of a graph built by trainable_from_onnx, in graph order."""
    if module.source_onnx is None:
        raise ValueError("the module has no source graph to find its neurons in")
    graph = onnx.load_model_from_string(module.source_onnx).graph
    tensors = module.onnx_tensors()
    readers, outputs = _consumers(graph), {o.name for o in graph.output}
    units = []
    for node in graph.node:
        weights = [name for name in node.input[1:] if name in tensors]
        if node.op_type == "Conv" and node.input[1] in tensors:
            after = readers.get(node.output[0], [])
            if len(after) == 1 and after[0].op_type == "BatchNormalization":
                bn = after[0]
                units.append(
                    Unit(
                        bn.output[0],
                        int(tensors[bn.input[1]].shape[0]),
                        ((bn.input[1], 0), (bn.input[2], 0)),
                        "conv",
                    )
                )
            else:
                units.append(
                    Unit(
                        node.output[0],
                        int(tensors[node.input[1]].shape[0]),
                        tuple((w, 0) for w in weights),
                        "conv",
                    )
                )
        elif (
            node.op_type == "Gemm"
            and node.output[0] not in outputs
            and len(node.input) > 1
            and node.input[1] in tensors
        ):
            attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
            axis = 0 if attrs.get("transB", 0) else 1
            zero = [(node.input[1], axis)] + (
                [(node.input[2], 0)] if len(node.input) > 2 and node.input[2] in tensors else []
            )
            units.append(Unit(node.output[0], int(tensors[node.input[1]].shape[axis]), tuple(zero), "linear"))
    return units


def last_conv(units: list[Unit]) -> Unit:
    """The last convolutional unit (fine-pruning's layer); ValueError for a graph without one."""
    convs = [unit for unit in units if unit.kind == "conv"]
    if not convs:
        raise ValueError("the model has no convolutional layer to prune")
    return convs[-1]


@contextmanager
def hooked(module: OnnxGraphModule, values: list[str], hook: Hook) -> Iterator[None]:
    """Run `hook(value, tensor)` on each named value as the graph computes it; restored afterwards."""
    steps = list(module._steps)
    wanted = set(values)

    def wrap(fn: Any, name: str) -> Callable[[Sequence[Tensor | None]], Sequence[Tensor]]:
        def run(inputs: Sequence[Tensor | None]) -> Sequence[Tensor]:
            out = tuple(fn(inputs))
            return (hook(name, out[0]), *out[1:])

        return run

    module._steps = [
        dataclasses.replace(step, fn=wrap(step.fn, step.outputs[0]))
        if step.outputs and step.outputs[0] in wanted
        else step
        for step in steps
    ]
    try:
        yield
    finally:
        module._steps = steps


def channel_view(gate: Tensor, like: Tensor) -> Tensor:
    """A per-channel vector shaped to multiply a [B, C, ...] tensor."""
    return gate.view(1, -1, *([1] * (like.dim() - 2)))


@torch.no_grad()
def prune(module: OnnxGraphModule, unit: Unit, channels: list[int]) -> None:
    """Zero the weights that produce the given channels of the unit."""
    if not channels:
        return
    tensors = module.onnx_tensors()
    for name, axis in unit.zero:
        tensor = tensors[name]
        index = torch.as_tensor(channels, device=tensor.device)
        tensor.index_fill_(axis, index, 0.0)


@contextmanager
def frozen_zeros(module: OnnxGraphModule, pruned: dict[Unit, list[int]]) -> Iterator[None]:
    """Keep pruned slices at zero while training: their gradients are zeroed (Adam then leaves them)."""
    tensors = module.onnx_tensors()
    handles = []
    for unit, channels in pruned.items():
        if not channels:
            continue
        for name, axis in unit.zero:
            tensor = tensors[name]
            if not tensor.requires_grad:
                continue
            keep = torch.ones_like(tensor)
            keep.index_fill_(axis, torch.as_tensor(channels, device=tensor.device), 0.0)
            handles.append(tensor.register_hook(lambda grad, keep=keep: grad * keep))  # type: ignore[no-untyped-call]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()
