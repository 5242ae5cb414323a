"""Build a differentiable torch.nn.Module from an ONNX graph, one allowlisted op at a time."""

import re
from collections.abc import Collection, Sequence
from dataclasses import dataclass

import onnx
import torch
from torch import nn

from worker.engine.models.onnx_graph.errors import GraphBuildError, UnsupportedOpsError
from worker.engine.models.onnx_graph.ops import CONVERTERS, DEFAULT_DOMAINS, SUPPORTED_OPS
from worker.engine.models.onnx_graph.spec import FLOAT_TYPES, NodeSpec, OpFn, tensor_from_proto

MIN_OPSET = 7


@dataclass(frozen=True)
class _Step:
    """One node to run at forward time: its function, input and output names, and dead values."""

    fn: OpFn
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    release: tuple[str, ...]


class OnnxGraphModule(nn.Module):
    """Runs an ONNX graph's nodes in order with torch functions.

    Every graph value known before the input arrives (initializers, Constant nodes) is a tensor of the
    module: a float32/int buffer, or an nn.Parameter for the initializers named trainable at build
    time. Stateful ops (BatchNormalization, Dropout) are child modules, so they follow train()/eval().
    `source_onnx` holds the serialized graph the module was built from, when its builder kept it
    (the export writes trained weights back into it).
    """

    def __init__(
        self,
        input_name: str,
        output_name: str,
        constants: dict[str, torch.Tensor],
        steps: list[_Step],
        trainable: Collection[str] = (),
    ) -> None:
        """Register constants as buffers (the trainable ones as parameters) and keep the plan."""
        super().__init__()
        self.input_name = input_name
        self.output_name = output_name
        self.source_onnx: bytes | None = None
        self._tensor_names: dict[str, str] = {}
        for name, tensor in constants.items():
            attr = _unique_attr(name, set(self._tensor_names.values()))
            if name in trainable:
                self.register_parameter(attr, nn.Parameter(tensor))
            else:
                self.register_buffer(attr, tensor)
            self._tensor_names[name] = attr
        self._steps = steps
        self.ops = nn.ModuleList([step.fn for step in steps if isinstance(step.fn, nn.Module)])

    def onnx_tensors(self) -> dict[str, torch.Tensor]:
        """Every constant graph value by its ONNX name: the module's current parameters and buffers."""
        return {name: getattr(self, attr) for name, attr in self._tensor_names.items()}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Evaluate the graph on x and return its single output."""
        env: dict[str, torch.Tensor] = self.onnx_tensors()
        env[self.input_name] = x
        for step in self._steps:
            outputs = step.fn([env[name] if name else None for name in step.inputs])
            for name, value in zip(step.outputs, outputs, strict=False):
                if name:
                    env[name] = value
            for name in step.release:
                env.pop(name, None)
        return env[self.output_name]


def _unique_attr(name: str, taken: set[str]) -> str:
    """A valid, unused buffer attribute name derived from an ONNX value name."""
    base = "c_" + re.sub(r"\W", "_", name)
    attr, n = base, 1
    while attr in taken:
        attr, n = f"{base}_{n}", n + 1
    return attr


def default_opset(model: onnx.ModelProto) -> int | None:
    """The opset version imported for the default ONNX domain, if any."""
    for entry in model.opset_import:
        if entry.domain in DEFAULT_DOMAINS:
            return int(entry.version)
    return None


def missing_ops(model: onnx.ModelProto) -> list[str]:
    """Sorted unique ops the builder cannot convert (other domains are written as domain::Op)."""
    missing = set()
    for node in model.graph.node:
        if node.domain not in DEFAULT_DOMAINS:
            missing.add(f"{node.domain}::{node.op_type}")
        elif node.op_type not in CONVERTERS:
            missing.add(node.op_type)
    return sorted(missing)


def _interface(graph: onnx.GraphProto) -> tuple[str, str]:
    """Return the single non-initializer input name and the single output name."""
    initializer_names = {t.name for t in graph.initializer}
    inputs = [i.name for i in graph.input if i.name not in initializer_names]
    if len(inputs) != 1:
        raise GraphBuildError(f"the graph must have exactly one input, found {len(inputs)}: {inputs}")
    if len(graph.output) != 1:
        names = [o.name for o in graph.output]
        raise GraphBuildError(f"the graph must have exactly one output, found {len(names)}: {names}")
    return inputs[0], graph.output[0].name


def _release_plan(nodes: Sequence[onnx.NodeProto], keep: set[str]) -> list[tuple[str, ...]]:
    """For each node, the values no later node reads (freed after it runs)."""
    last_use: dict[str, int] = {}
    for index, node in enumerate(nodes):
        for name in (*node.input, *node.output):
            if name:
                last_use[name] = index
    plan: list[list[str]] = [[] for _ in nodes]
    for name, index in last_use.items():
        if name not in keep:
            plan[index].append(name)
    return [tuple(names) for names in plan]


def build_torch_module(model: onnx.ModelProto, *, trainable: Collection[str] = ()) -> OnnxGraphModule:
    """Convert an ONNX model into an OnnxGraphModule in eval mode.

    The initializers named in `trainable` become nn.Parameters (see worker.engine.training.trainable);
    raises UnsupportedOpsError or GraphBuildError.
    """
    graph = model.graph
    opset = default_opset(model)
    missing = missing_ops(model)
    if missing:
        raise UnsupportedOpsError(missing, SUPPORTED_OPS)
    if opset is None or opset < MIN_OPSET:
        raise GraphBuildError(f"ONNX opset {opset} is too old; export with opset {MIN_OPSET} or newer")
    if graph.sparse_initializer:
        raise GraphBuildError("sparse initializers are not supported")
    input_name, output_name = _interface(graph)
    floats = {t.name for t in graph.initializer if t.data_type in FLOAT_TYPES}
    not_float = sorted(set(trainable) - floats)
    if not_float:
        raise GraphBuildError(f"only float initializers can be trained, not {not_float}")
    constants = {t.name: tensor_from_proto(t) for t in graph.initializer}
    defined = {input_name, *constants}
    runtime_nodes: list[onnx.NodeProto] = []
    fns: list[OpFn] = []
    for node in graph.node:
        undefined = [name for name in node.input if name and name not in defined]
        if undefined:
            raise GraphBuildError(f"node {node.name!r} reads {undefined} before they are produced")
        spec = NodeSpec.from_proto(node, opset)
        fn = CONVERTERS[node.op_type](spec)
        defined.update(name for name in node.output if name)
        if not any(node.input):
            outputs = fn([])
            constants.update((name, value) for name, value in zip(node.output, outputs, strict=False) if name)
            continue
        runtime_nodes.append(node)
        fns.append(fn)
    if output_name not in defined:
        raise GraphBuildError(f"the graph output {output_name!r} is never produced")
    keep = {output_name, input_name, *constants}
    steps = [
        _Step(fn, tuple(node.input), tuple(node.output), release)
        for fn, node, release in zip(fns, runtime_nodes, _release_plan(runtime_nodes, keep), strict=True)
    ]
    return OnnxGraphModule(input_name, output_name, constants, steps, frozenset(trainable)).eval()
