"""Intake safety limits: input size, intermediate tensor size, control flow and onnxruntime threads.

Every check here runs before any onnxruntime session or torch module exists, so an upload that
would allocate gigabytes or never finish is refused without running it.
"""

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import onnx

from worker.engine.models.intake.errors import ModelRejected

MiB = 1 << 20
CONTROL_FLOW_OPS = frozenset({"If", "Loop", "Scan", "SequenceMap"})


@dataclass(frozen=True)
class IntakeLimits:
    """Resource limits of ONNX intake (the worker passes them from its settings).

    max_input_elements: elements of one input sample (the product of the declared input shape).
    max_intermediate_bytes: bytes of any single tensor the graph would create at the validation batch,
        as far as shapes can be inferred before running it.
    allow_control_flow: accept Loop, Scan, If (and other ops with subgraphs), which can run unbounded.
    intra_op_threads: onnxruntime intra-op threads per session (inter-op is always 1, sequential).
    """

    max_input_elements: int = 4_000_000
    max_intermediate_bytes: int = 1 << 30
    allow_control_flow: bool = False
    intra_op_threads: int = 1


DEFAULT_LIMITS = IntakeLimits()


def check_input_elements(input_shape: Sequence[int], limits: IntakeLimits) -> None:
    """Refuse a declared input shape whose samples exceed max_input_elements (resource_limit)."""
    elements = math.prod(int(d) for d in input_shape)
    if elements > limits.max_input_elements:
        raise ModelRejected(
            "resource_limit",
            f"The declared input shape {list(input_shape)} has {elements} elements per sample; this "
            f"worker accepts at most {limits.max_input_elements} (setting max_input_elements).",
        )


def _subgraph_nodes(node: onnx.NodeProto) -> Iterator[onnx.NodeProto]:
    """The nodes of every subgraph held in a node's attributes, recursively."""
    for attr in node.attribute:
        graphs = [attr.g] if attr.HasField("g") else []
        for graph in [*graphs, *attr.graphs]:
            for inner in graph.node:
                yield inner
                yield from _subgraph_nodes(inner)


def _all_nodes(model: onnx.ModelProto) -> Iterator[onnx.NodeProto]:
    """Every node of the model: the main graph, subgraphs and model-local functions."""
    for node in model.graph.node:
        yield node
        yield from _subgraph_nodes(node)
    for function in model.functions:
        for node in function.node:
            yield node
            yield from _subgraph_nodes(node)


def refuse_control_flow(model: onnx.ModelProto, limits: IntakeLimits) -> None:
    """Refuse Loop, Scan, If and any node carrying a subgraph unless allow_control_flow is set."""
    if limits.allow_control_flow:
        return
    found = sorted(
        {
            node.op_type
            for node in _all_nodes(model)
            if node.op_type in CONTROL_FLOW_OPS
            or any(a.HasField("g") or len(a.graphs) for a in node.attribute)
        }
    )
    if found:
        raise ModelRejected(
            "control_flow_refused",
            f"The model uses control flow ({', '.join(found)}), which can run for an unbounded time; "
            "this worker refuses it (an operator can enable it with the setting allow_control_flow). "
            "Export the model without data-dependent loops or branches, e.g. torch.onnx.export of a "
            "model whose forward has no Python control flow on tensor values.",
        )
