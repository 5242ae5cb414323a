"""Which initializers of an ONNX graph are weights, what layer each belongs to, and PyTorch's init for it.

A float initializer is a weight when it feeds a layer's weight slot (Conv, ConvTranspose, Gemm, MatMul
weights and biases, normalization scale and shift, PRelu slopes, Gather tables) or, being more than one
value, any other slot that is not configuration. Configuration stays a buffer: shapes, indices, axes,
pads, clip bounds, dropout ratios, exponents, and operands of Sub and Div (input normalization
constants, scale factors). BatchNormalization's running mean and variance are buffers the module updates.
"""

import copy
import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

import onnx
import torch
from onnx import helper

from worker.engine.models.onnx_graph.spec import FLOAT_TYPES

RoleKind = Literal[
    "weight",
    "bias",
    "scale",
    "shift",
    "running_mean",
    "running_var",
    "slope",
    "table",
    "additive",
    "multiplier",
]

# (op, input index) -> role of a float initializer in that slot.
_LAYER_SLOTS: dict[tuple[str, int], RoleKind] = {
    ("Conv", 1): "weight",
    ("Conv", 2): "bias",
    ("ConvTranspose", 1): "weight",
    ("ConvTranspose", 2): "bias",
    ("Gemm", 0): "weight",
    ("Gemm", 1): "weight",
    ("Gemm", 2): "bias",
    ("MatMul", 0): "weight",
    ("MatMul", 1): "weight",
    ("BatchNormalization", 1): "scale",
    ("BatchNormalization", 2): "shift",
    ("BatchNormalization", 3): "running_mean",
    ("BatchNormalization", 4): "running_var",
    ("LayerNormalization", 1): "scale",
    ("LayerNormalization", 2): "shift",
    ("InstanceNormalization", 1): "scale",
    ("InstanceNormalization", 2): "shift",
    ("PRelu", 1): "slope",
    ("Gather", 0): "table",
}
_ALL = frozenset(range(16))
# Slots that hold configuration, never weights.
_CONFIG_SLOTS: dict[str, frozenset[int]] = {
    "Sub": _ALL,
    "Div": _ALL,
    "Pow": _ALL,
    "Range": _ALL,
    "Equal": _ALL,
    "Less": _ALL,
    "Greater": _ALL,
    "Max": _ALL,
    "Min": _ALL,
    "Clip": frozenset({1, 2}),
    "Pad": frozenset({1, 2, 3}),
    "Dropout": frozenset({1, 2}),
    "Resize": frozenset({1, 2, 3}),
    "Reshape": frozenset({1}),
    "Expand": frozenset({1}),
    "Slice": frozenset({1, 2, 3, 4}),
    "Unsqueeze": frozenset({1}),
    "Squeeze": frozenset({1}),
    "Split": frozenset({1}),
    "Tile": frozenset({1}),
    "TopK": frozenset({1}),
    "ReduceMean": frozenset({1}),
    "ConstantOfShape": frozenset({0}),
    "Where": frozenset({0}),
    "Shape": frozenset({0}),
}
_LAYER_OPS = frozenset({"Conv", "ConvTranspose", "Gemm", "MatMul"})


@dataclass(frozen=True)
class ParamRole:
    """What a graph tensor is for: its kind and, for layer weights and biases, the layer's fan-in."""

    kind: RoleKind
    fan_in: int | None = None

    @property
    def trainable(self) -> bool:
        """Running statistics are updated by the module, not by the optimizer."""
        return self.kind not in ("running_mean", "running_var")


def _fan_in(node: onnx.NodeProto, shapes: dict[str, tuple[int, ...]]) -> int | None:
    """The fan-in PyTorch uses for this layer's weight (None when the weight is not an initializer)."""
    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    inputs = list(node.input)
    if node.op_type in ("Conv", "ConvTranspose") and len(inputs) > 1 and inputs[1] in shapes:
        shape = shapes[inputs[1]]
        return shape[1] * math.prod(shape[2:])  # torch's fan-in, for ConvTranspose too
    if node.op_type == "Gemm":
        if len(inputs) > 1 and inputs[1] in shapes:
            shape = shapes[inputs[1]]
            return shape[1] if attrs.get("transB", 0) else shape[0]
        if inputs[0] in shapes:
            shape = shapes[inputs[0]]
            return shape[0] if attrs.get("transA", 0) else shape[1]
    if node.op_type == "MatMul":
        if len(inputs) > 1 and inputs[1] in shapes:
            shape = shapes[inputs[1]]
            return shape[-2] if len(shape) > 1 else shape[0]
        if inputs[0] in shapes:
            return shapes[inputs[0]][-1]
    return None


def graph_roles(model: onnx.ModelProto) -> dict[str, ParamRole]:
    """The role of every float initializer that is a weight or a running statistic, in graph order."""
    graph = model.graph
    floats = [t for t in graph.initializer if t.data_type in FLOAT_TYPES]
    shapes = {t.name: tuple(int(d) for d in t.dims) for t in floats}
    producer = {out: node for node in graph.node for out in node.output if out}
    found: dict[str, list[ParamRole]] = {name: [] for name in shapes}
    for node in graph.node:
        for index, name in enumerate(node.input):
            if name not in shapes:
                continue
            role = _LAYER_SLOTS.get((node.op_type, index))
            if role in ("weight", "bias"):
                found[name].append(ParamRole(role, _fan_in(node, shapes)))
            elif role is not None:
                found[name].append(ParamRole(role))
            elif index not in _CONFIG_SLOTS.get(node.op_type, frozenset()) and math.prod(shapes[name]) > 1:
                found[name].append(_generic_role(node, name, producer, shapes))
    roles = {}
    for name, candidates in found.items():
        specific = [r for r in candidates if r.kind not in ("additive", "multiplier")]
        if candidates:
            roles[name] = (specific or candidates)[0]
    return roles


def _generic_role(
    node: onnx.NodeProto, name: str, producer: dict[str, onnx.NodeProto], shapes: dict[str, tuple[int, ...]]
) -> ParamRole:
    """A weight in a slot with no layer meaning: a layer's bias added after it, a multiplier or an offset."""
    if node.op_type == "Mul":
        return ParamRole("multiplier")
    if node.op_type == "Add":
        for other in node.input:
            layer = producer.get(other)
            if other != name and layer is not None and layer.op_type in _LAYER_OPS:
                fan_in = _fan_in(layer, shapes)
                if fan_in is not None:
                    return ParamRole("bias", fan_in)
    return ParamRole("additive")


def _role_slots(model: onnx.ModelProto) -> dict[str, list[tuple[onnx.NodeProto, int]]]:
    """For each float initializer, the (node, input index) slots that give it a role, in node order."""
    roles = graph_roles(model)
    slots: dict[str, list[tuple[onnx.NodeProto, int]]] = {name: [] for name in roles}
    for node in model.graph.node:
        for index, name in enumerate(node.input):
            if name in slots and (
                (node.op_type, index) in _LAYER_SLOTS
                or index not in _CONFIG_SLOTS.get(node.op_type, frozenset())
            ):
                slots[name].append((node, index))
    return slots


def untie_initializers(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy of the model where each weight slot reads its own initializer.

    torch.onnx merges initializers of equal value (the fresh scales of two BatchNorms, a BatchNorm's
    scale and its running variance), sometimes through Identity nodes, which would tie tensors that
    train apart. An Identity of a float initializer becomes an initializer of its own (the node goes);
    then the first slot reading an initializer keeps it and every further slot gets a copy named
    `<name>__<k>` (declared as a graph input too when the original is one, as IR version < 4 requires).
    """
    model = copy.deepcopy(model)
    graph = model.graph
    initializers = {t.name: t for t in graph.initializer if t.data_type in FLOAT_TYPES}
    inputs = {i.name: i for i in graph.input}
    outputs = {o.name for o in graph.output}
    taken = set(initializers) | set(inputs) | {out for node in graph.node for out in node.output}

    def add_copy(name: str, fresh: str) -> None:
        """Append a copy of initializer `name` called `fresh`."""
        clone = graph.initializer.add()
        clone.CopyFrom(initializers[name])
        clone.name = fresh
        initializers[fresh] = clone
        if name in inputs:
            declared = graph.input.add()
            declared.CopyFrom(inputs[name])
            declared.name = fresh

    aliases = [
        node
        for node in graph.node
        if node.op_type == "Identity" and node.input[0] in initializers and node.output[0] not in outputs
    ]
    for node in aliases:  # in node order, so chains of aliases resolve
        add_copy(node.input[0], node.output[0])
        graph.node.remove(node)
    for name, slots in _role_slots(model).items():
        for number, (node, index) in enumerate(slots[1:], start=1):
            fresh = f"{name}__{number}"
            while fresh in taken:
                fresh += "_"
            taken.add(fresh)
            add_copy(name, fresh)
            node.input[index] = fresh
    return model


@torch.no_grad()
def reinitialize(tensors: Iterable[tuple[torch.Tensor, ParamRole]], generator: torch.Generator) -> None:
    """Initialise each tensor the way PyTorch initialises its layer type, drawing from `generator`.

    Layer weights: kaiming_uniform(a=sqrt(5)), i.e. uniform(+-1/sqrt(fan_in)); biases uniform(+-1/sqrt(
    fan_in)); normalization scale 1 and shift 0; running mean 0 and variance 1; PRelu slopes 0.25;
    Gather tables normal(0, 1); other multipliers 1 and other offsets 0.
    """
    for tensor, role in tensors:
        if role.kind in ("weight", "bias"):
            fan_in = role.fan_in or _default_fan_in(tensor)
            bound = 1.0 / math.sqrt(fan_in) if fan_in > 0 else 0.0
            tensor.uniform_(-bound, bound, generator=generator)
        elif role.kind == "table":
            tensor.normal_(0.0, 1.0, generator=generator)
        elif role.kind in ("scale", "running_var", "multiplier"):
            tensor.fill_(1.0)
        elif role.kind == "slope":
            tensor.fill_(0.25)
        else:
            tensor.zero_()


def _default_fan_in(tensor: torch.Tensor) -> int:
    """Fan-in of a weight whose layer is unknown: torch's rule for its shape."""
    if tensor.dim() < 2:
        return max(tensor.numel(), 1)
    return tensor.shape[1] * math.prod(tensor.shape[2:])
