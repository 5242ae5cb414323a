"""Activations of a model at a feature layer, read from its ONNX graph through onnxruntime.

Detectors read what the trained model computes on the training set at a layer a person would pick:
`last_conv`, the flattened output of the last convolutional block (the input of the first
Gemm/MatMul after the last Conv), or `penultimate`, the input of the last Gemm/MatMul; never the logits.
`auto` is last_conv when the graph has convolutions and penultimate otherwise. Any other value names a
graph value directly. The value is added as a second graph output, so the same bytes that are stored
and evaluated are the ones read.
"""

from collections.abc import Callable

import numpy as np
import onnx
from onnx import helper

from worker.engine.batching import batch_bounds
from worker.engine.models.intake.onnx_parse import make_session, parse_onnx

LAYER_RULES: tuple[str, ...] = ("auto", "last_conv", "penultimate")
_LINEAR_OPS = ("Gemm", "MatMul")
_CONV_OPS = ("Conv", "ConvTranspose")

Preprocess = Callable[[np.ndarray], np.ndarray]


def _data_input(node: onnx.NodeProto, constants: set[str]) -> str:
    """The input of a linear node that is not a weight (the activations it multiplies)."""
    for name in node.input:
        if name and name not in constants:
            return name
    raise ValueError(f"node {node.name or node.op_type} has no activation input")


def layer_candidates(model: onnx.ModelProto) -> dict[str, str | None]:
    """The graph value each rule picks: last_conv (None without convolutions) and penultimate."""
    constants = {t.name for t in model.graph.initializer}
    constants |= {out for node in model.graph.node if node.op_type == "Constant" for out in node.output}
    nodes = list(model.graph.node)
    linear = [i for i, node in enumerate(nodes) if node.op_type in _LINEAR_OPS]
    convs = [i for i, node in enumerate(nodes) if node.op_type in _CONV_OPS]
    penultimate = _data_input(nodes[linear[-1]], constants) if linear else None
    last_conv = None
    if convs:
        after = [i for i in linear if i > convs[-1]]
        last_conv = _data_input(nodes[after[0]], constants) if after else None
    graph_input = next(i.name for i in model.graph.input if i.name not in constants)
    if penultimate == graph_input:
        penultimate = None
    return {"last_conv": last_conv, "penultimate": penultimate}


def resolve_layer(model: onnx.ModelProto, layer: str) -> tuple[str, str]:
    """The graph value to read for a layer choice, and the rule that picked it; ValueError if none fits."""
    candidates = layer_candidates(model)
    if layer == "auto":
        for rule in ("last_conv", "penultimate"):
            if candidates[rule] is not None:
                return str(candidates[rule]), rule
        raise ValueError("the model has no linear layer after its input: no feature layer to read")
    if layer in candidates:
        value = candidates[layer]
        if value is None:
            raise ValueError(f"the model has no {layer} layer; use 'auto' or name a graph value")
        return value, layer
    produced = {out for node in model.graph.node for out in node.output if out}
    if layer not in produced:
        raise ValueError(f"the model computes no value named {layer!r}; use one of {', '.join(LAYER_RULES)}")
    if layer in {o.name for o in model.graph.output}:
        raise ValueError(f"{layer!r} is the model's output (the logits); pick a feature layer")
    return layer, "named"


class FeatureReader:
    """Logits and flattened activations at one layer of an ONNX model, on inputs in the input range."""

    def __init__(self, onnx_bytes: bytes, layer: str = "auto", preprocess: Preprocess | None = None) -> None:
        """Resolve the layer and open a session that also returns it."""
        model = parse_onnx(onnx_bytes)
        self.value, self.rule = resolve_layer(model, layer)
        model.graph.output.append(helper.make_tensor_value_info(self.value, onnx.TensorProto.FLOAT, None))
        self._session = make_session(model.SerializeToString())
        self._input = self._session.get_inputs()[0].name
        batch = self._session.get_inputs()[0].shape[0]
        self._batch = 1 if batch == 1 else 512
        self._preprocess = preprocess

    def describe(self) -> dict[str, str]:
        """Which layer was read and why, for the report."""
        return {"layer": self.value, "rule": self.rule}

    def __call__(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(logits [N, K], features [N, D]) for inputs x, in batches."""
        logits, features = [], []
        for start, stop in batch_bounds(len(x), self._batch):
            batch = np.ascontiguousarray(x[start:stop], dtype=np.float32)
            if self._preprocess is not None:
                batch = np.ascontiguousarray(self._preprocess(batch), dtype=np.float32)
            out, feature = self._session.run(None, {self._input: batch})
            logits.append(np.asarray(out, dtype=np.float32))
            features.append(np.asarray(feature, dtype=np.float32).reshape(len(batch), -1))
        return np.concatenate(logits), np.concatenate(features)
