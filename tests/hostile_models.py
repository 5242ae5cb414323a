"""Small ONNX models that would hurt a worker: a run-time memory bomb and a graph that runs for minutes.

Both are valid classifiers of [batch, 1, 8, 8] inputs into 10 classes, within the intake's static
caps (their big tensors' sizes depend on the input values, or stay small), so only the limits the
kernel enforces at run time can stop them.
"""

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 13


def _classifier_nodes(extra: str) -> tuple[list[onnx.NodeProto], list[onnx.TensorProto]]:
    """Flatten -> MatMul -> + extra (a scalar) -> logits."""
    weight = numpy_helper.from_array(np.random.default_rng(0).normal(size=(64, 10)).astype(np.float32), "w")
    nodes = [
        helper.make_node("Flatten", ["input"], ["flat"], axis=1),
        helper.make_node("MatMul", ["flat", "w"], ["scores"]),
        helper.make_node("Add", ["scores", extra], ["logits"]),
    ]
    return nodes, [weight]


def _model(nodes: list[onnx.NodeProto], initializers: list[onnx.TensorProto]) -> bytes:
    """A model with a dynamic batch."""
    graph = helper.make_graph(
        nodes,
        "hostile",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 1, 8, 8])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 10])],
        initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    onnx.checker.check_model(model)
    return model.SerializeToString()


def _scalar(name: str, value: float) -> onnx.TensorProto:
    return numpy_helper.from_array(np.array(value, dtype=np.float32), name)


def memory_bomb(elements: int = 1_000_000_000) -> bytes:
    """A ConstantOfShape whose length is computed from the input (max(x) * 0 + elements): 4 GB at run time."""
    nodes, inits = _classifier_nodes("bomb_mean")
    nodes[:0] = [
        helper.make_node("ReduceMax", ["input"], ["peak"], keepdims=0),
        helper.make_node("Mul", ["peak", "zero"], ["nothing"]),
        helper.make_node("Add", ["nothing", "count"], ["length_f"]),
        helper.make_node("Cast", ["length_f"], ["length"], to=TensorProto.INT64),
        helper.make_node("Reshape", ["length", "one_dim"], ["shape"]),
        helper.make_node("ConstantOfShape", ["shape"], ["bomb"]),
        helper.make_node("ReduceMean", ["bomb"], ["bomb_mean"], keepdims=0),
    ]
    inits += [
        _scalar("zero", 0.0),
        _scalar("count", float(elements)),
        numpy_helper.from_array(np.array([1], dtype=np.int64), "one_dim"),
    ]
    return _model(nodes, inits)


def slow_graph(side: int = 2048, steps: int = 200) -> bytes:
    """`steps` chained [side, side] matrix products of a matrix built from the input: minutes of CPU."""
    nodes, inits = _classifier_nodes("slow_mean")
    nodes[:0] = [
        helper.make_node("ReduceMax", ["input"], ["peak"], keepdims=0),
        helper.make_node("Mul", ["peak", "zero"], ["nothing"]),
        helper.make_node("Add", ["nothing", "tiny"], ["seed"]),
        helper.make_node("Expand", ["seed", "square"], ["m0"]),
    ]
    for step in range(steps):
        nodes.insert(4 + step, helper.make_node("MatMul", [f"m{step}", f"m{step}"], [f"m{step + 1}"]))
    nodes.insert(4 + steps, helper.make_node("ReduceMean", [f"m{steps}"], ["slow_mean"], keepdims=0))
    inits += [
        _scalar("zero", 0.0),
        _scalar("tiny", 1e-3),
        numpy_helper.from_array(np.array([side, side], dtype=np.int64), "square"),
    ]
    return _model(nodes, inits)
