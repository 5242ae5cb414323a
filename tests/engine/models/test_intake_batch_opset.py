"""Intake of models as people export them: a fixed batch of 1, and opsets older than 7."""

import numpy as np
import onnx
import pytest
import torch
import torch.nn.functional as F
from onnx import TensorProto, helper, numpy_helper

from tests.engine.onnx_fixtures import MLP, BatchNormCNN, ViewNet, export_onnx, make_model, seeded_model
from worker.engine.models.intake import (
    ModelRejected,
    OnnxRuntimeClassifier,
    load_onnx_module,
    validate_onnx,
)
from worker.engine.models.intake.fixed_batch import PerSampleModule

MLP_SHAPE, VIEW_SHAPE, CNN_SHAPE = (3, 4), (2, 6, 6), (3, 8, 8)


def _torch_logits(model: torch.nn.Module, x: np.ndarray) -> np.ndarray:
    """The original model's logits."""
    with torch.no_grad():
        return model(torch.from_numpy(x)).numpy()


def _inputs(shape: tuple[int, ...], batch: int = 5) -> np.ndarray:
    """Uniform [0, 1) float32 inputs."""
    return np.random.default_rng(7).random((batch, *shape), dtype=np.float32)


def test_fixed_batch_export_that_batches_runs_whole_batches() -> None:
    """An export without dynamic_axes (batch fixed to 1, Flatten) runs whole batches on both paths."""
    model = seeded_model(MLP)
    data = export_onnx(model, MLP_SHAPE, dynamic=False)
    declared = onnx.load_from_string(data).graph.input[0].type.tensor_type.shape.dim[0]
    assert declared.dim_value == 1
    report = validate_onnx(data, MLP_SHAPE, 4)
    assert report.white_box and report.batch_mode == "symbolic", report.notes
    assert report.max_abs_diff is not None and report.max_abs_diff < 1e-5
    x = _inputs(MLP_SHAPE)
    module = load_onnx_module(data)
    assert not isinstance(module, PerSampleModule)
    np.testing.assert_allclose(_torch_logits(module, x), _torch_logits(model, x), atol=1e-5)
    classifier = OnnxRuntimeClassifier(data)
    assert not classifier.chunked
    np.testing.assert_allclose(classifier(x), _torch_logits(model, x), atol=1e-5)
    assert classifier.queries == 5


def test_fixed_batch_export_with_baked_reshape_runs_in_chunks() -> None:
    """x.view(x.size(0), -1) exported at batch 1 bakes Reshape [1, -1]: both paths run per sample."""
    model = seeded_model(ViewNet)
    data = export_onnx(model, VIEW_SHAPE, dynamic=False)
    shapes = [n for n in onnx.load_from_string(data).graph.node if n.op_type == "Constant"]
    assert any(numpy_helper.to_array(n.attribute[0].t).tolist() == [1, -1] for n in shapes)
    report = validate_onnx(data, VIEW_SHAPE, 3)
    assert report.white_box and report.batch_mode == "chunked", report.notes
    assert any("one sample at a time" in note for note in report.notes)
    x = _inputs(VIEW_SHAPE, batch=4)
    module = load_onnx_module(data)
    assert isinstance(module, PerSampleModule)
    inputs = torch.from_numpy(x).requires_grad_(True)
    out = module(inputs)
    np.testing.assert_allclose(out.detach().numpy(), _torch_logits(model, x), atol=1e-5)
    out[:, 1].sum().backward()
    assert inputs.grad is not None and bool((inputs.grad.abs().sum(dim=(1, 2, 3)) > 0).all())
    classifier = OnnxRuntimeClassifier(data)
    assert classifier.chunked
    np.testing.assert_allclose(classifier(x), _torch_logits(model, x), atol=1e-5)
    assert classifier.queries == 4


def _batch_mixing_model() -> bytes:
    """A fixed-batch graph that subtracts the batch mean: any batch runs, but only batch 1 is right."""
    rng = np.random.default_rng(0)
    nodes = [
        helper.make_node("ReduceMean", ["x"], ["mean"], axes=[0]),
        helper.make_node("Sub", ["x", "mean"], ["centred"]),
        helper.make_node("Add", ["centred", "x"], ["h"]),
        helper.make_node("Gemm", ["h", "W", "B"], ["y"], transB=1),
    ]
    weights = {"W": rng.normal(size=(3, 6)).astype(np.float32), "B": rng.normal(size=3).astype(np.float32)}
    return make_model(nodes, [1, 6], weights, opset=13, output_shape=[1, 3]).SerializeToString()


def test_fixed_batch_graph_that_mixes_samples_runs_in_chunks() -> None:
    """A graph that runs on a larger batch but mixes samples there is detected and run per sample."""
    data = _batch_mixing_model()
    report = validate_onnx(data, (6,), 3)
    assert report.batch_mode == "chunked" and report.white_box, report.notes
    x = _inputs((6,), batch=3)
    model = onnx.load_from_string(data)
    weights = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    expected = x @ weights["W"].T + weights["B"]  # per sample the centred term is zero
    np.testing.assert_allclose(OnnxRuntimeClassifier(data)(x), expected, atol=1e-5)
    module = load_onnx_module(data)
    assert isinstance(module, PerSampleModule)
    np.testing.assert_allclose(_torch_logits(module, x), expected, atol=1e-5)


def test_opset_6_torch_export_is_upgraded_and_white_box() -> None:
    """An old-style export (opset 6, IR 3, fixed batch 1) is converted to opset 13 and is white-box."""
    model = seeded_model(BatchNormCNN)
    data = export_onnx(model, CNN_SHAPE, dynamic=False, opset=6)
    assert onnx.load_from_string(data).opset_import[0].version == 6
    report = validate_onnx(data, CNN_SHAPE, 5)
    assert report.white_box and report.onnx_opset == 13, report.notes
    assert any("Converted from ONNX opset 6 to opset 13" in note for note in report.notes)
    x = _inputs(CNN_SHAPE, batch=3)
    np.testing.assert_allclose(_torch_logits(load_onnx_module(data), x), _torch_logits(model, x), atol=1e-5)
    np.testing.assert_allclose(OnnxRuntimeClassifier(data)(x), _torch_logits(model, x), atol=1e-5)


def _opset_3_model() -> tuple[bytes, dict[str, np.ndarray]]:
    """A Caffe2-era graph: broadcast attributes, Reshape's shape attribute, BatchNorm consumed_inputs."""
    rng = np.random.default_rng(1)
    weights = {
        "b": rng.normal(size=3).astype(np.float32),
        "w": rng.normal(size=(4, 3, 3, 3)).astype(np.float32),
        "scale": rng.uniform(0.5, 1.5, 4).astype(np.float32),
        "shift": rng.normal(size=4).astype(np.float32),
        "mean": rng.normal(size=4).astype(np.float32),
        "var": rng.uniform(0.5, 2.0, 4).astype(np.float32),
        "W": rng.normal(size=(5, 4 * 16)).astype(np.float32),
        "B": rng.normal(size=5).astype(np.float32),
    }
    nodes = [
        helper.make_node("Add", ["x", "b"], ["a"], broadcast=1, axis=1),
        helper.make_node("Conv", ["a", "w"], ["c"], pads=[1, 1, 1, 1], kernel_shape=[3, 3]),
        helper.make_node(
            "BatchNormalization",
            ["c", "scale", "shift", "mean", "var"],
            ["n"],
            is_test=1,
            consumed_inputs=[0, 0, 0, 1, 1],
        ),  # fmt: skip
        helper.make_node("Relu", ["n"], ["r"]),
        helper.make_node("Reshape", ["r"], ["f"], shape=[1, 64]),
        helper.make_node("Gemm", ["f", "W", "B"], ["y"], transB=1, broadcast=1),
    ]
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 4, 4])]
    inputs += [helper.make_tensor_value_info(k, TensorProto.FLOAT, v.shape) for k, v in weights.items()]
    graph = helper.make_graph(
        nodes, "caffe2", inputs, [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 5])],
        [numpy_helper.from_array(v, k) for k, v in weights.items()],
    )  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 3)])
    model.ir_version = 3
    return model.SerializeToString(), weights


def _reference(x: np.ndarray, w: dict[str, np.ndarray]) -> np.ndarray:
    """The opset-3 graph computed directly with torch functions."""
    t = {k: torch.from_numpy(v) for k, v in w.items()}
    h = torch.from_numpy(x) + t["b"].reshape(1, 3, 1, 1)
    h = F.conv2d(h, t["w"], padding=1)
    h = F.batch_norm(h, t["mean"], t["var"], t["scale"], t["shift"], eps=1e-5)
    h = torch.relu(h).reshape(x.shape[0], -1)
    return (h @ t["W"].T + t["B"]).numpy()


def test_opset_3_model_is_converted_correctly() -> None:
    """A hand-built opset-3 model (onnxruntime cannot run it as is) converts to the same function."""
    data, weights = _opset_3_model()
    report = validate_onnx(data, (3, 4, 4), 5)
    assert report.white_box and report.onnx_opset == 13 and report.batch_mode == "chunked", report.notes
    x = _inputs((3, 4, 4), batch=3)
    expected = _reference(x, weights)
    np.testing.assert_allclose(OnnxRuntimeClassifier(data)(x), expected, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(_torch_logits(load_onnx_module(data), x), expected, rtol=1e-4, atol=1e-4)


def test_unconvertible_old_opset_is_refused_with_its_own_code() -> None:
    """An opset-1 op without a version adapter (Crop) is refused as unsupported_opset, with advice."""
    nodes = [helper.make_node("Crop", ["x"], ["y"], border=[0, 0, 0, 0])]
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 4, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, 4, 4])],
    )  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 1)])
    model.ir_version = 3
    for entry in (lambda d: validate_onnx(d, (3, 4, 4), 3), load_onnx_module, OnnxRuntimeClassifier):
        with pytest.raises(ModelRejected) as info:
            entry(model.SerializeToString())
        assert info.value.code == "unsupported_opset"
        assert "opset 1" in info.value.message and "opset_version=17" in info.value.message
