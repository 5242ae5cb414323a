"""Classifier outputs of shape [N, C, 1, 1] (a 1x1 conv or global pool never flattened) are taken squeezed.

The hand-built graphs here end in an AveragePool over the whole 4x4 map; the model zoo's own
SqueezeNet and DenseNet-121 files are in test_intake_model_zoo.py.
"""

import numpy as np
import onnx
import pytest
import torch

from tests.engine.onnx_fixtures import conv_pool_classifier, ort_run
from worker.engine.models.intake import (
    ModelRejected,
    OnnxRuntimeClassifier,
    load_onnx_module,
    validate_onnx,
)

SHAPE, CLASSES = (3, 4, 4), 5
# case -> conv_pool_classifier keywords: old opset (Squeeze axes as attribute) with a fixed batch of 1,
# opset 17 (axes as an input) with a dynamic batch, and an output declared with symbolic dims only
CASES: dict[str, dict[str, object]] = {
    "opset9-fixed-batch": {"opset": 9, "batch": 1},
    "opset17-dynamic": {"opset": 17, "batch": "N"},
    "symbolic-output": {"opset": 17, "batch": "N", "symbolic_output": True},
}


def _inputs(batch: int, seed: int = 3) -> np.ndarray:
    """Uniform [0, 1) float32 inputs."""
    return np.random.default_rng(seed).random((batch, *SHAPE), dtype=np.float32)


def _reference(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    """onnxruntime on the unmodified graph, one sample at a time, flattened to [N, C]."""
    return np.concatenate([ort_run(model, x[i : i + 1]).reshape(1, -1) for i in range(len(x))])


@pytest.fixture(params=sorted(CASES))
def pooled_model(request: pytest.FixtureRequest) -> onnx.ModelProto:
    """A classifier whose output is [N, CLASSES, 1, 1]."""
    return conv_pool_classifier(CLASSES, (1, 1), **CASES[request.param])  # type: ignore[arg-type]


def test_unsqueezed_output_is_accepted_white_box_and_reported(pooled_model: onnx.ModelProto) -> None:
    """validate_onnx accepts [N, C, 1, 1] white-box and its report says the output was squeezed."""
    assert ort_run(pooled_model, _inputs(1)).shape == (1, CLASSES, 1, 1)
    report = validate_onnx(pooled_model.SerializeToString(), SHAPE, CLASSES)
    assert report.white_box and report.missing_ops == [], report.notes
    assert report.max_abs_diff is not None and report.max_abs_diff < 1e-5
    squeezed = [note for note in report.notes if "squeezed" in note]
    assert len(squeezed) == 1 and f"[batch, {CLASSES}]" in squeezed[0], report.notes


def test_both_paths_return_the_squeezed_logits(pooled_model: onnx.ModelProto) -> None:
    """onnxruntime and the PyTorch module return [N, C] equal to the original graph's [N, C, 1, 1] values."""
    data, x = pooled_model.SerializeToString(), _inputs(4)
    expected = _reference(pooled_model, x)
    assert expected.std() > 0.1  # the logits differ between classes and samples
    classifier = OnnxRuntimeClassifier(data)
    got = classifier(x)
    assert got.shape == (4, CLASSES)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
    module = load_onnx_module(data)
    xt = torch.from_numpy(x).requires_grad_(True)
    out = module(xt)
    assert tuple(out.shape) == (4, CLASSES)
    np.testing.assert_allclose(out.detach().numpy(), expected, rtol=1e-5, atol=1e-5)
    (out * torch.linspace(-1.0, 2.0, CLASSES)).sum().backward()
    assert xt.grad is not None and float(xt.grad.abs().sum()) > 0


def test_the_output_keeps_its_name_and_declares_two_dims(pooled_model: onnx.ModelProto) -> None:
    """The rewritten graph's only output is still 'y', declared [batch, C] (symbolic batch)."""
    from worker.engine.models.intake.limits import DEFAULT_LIMITS
    from worker.engine.models.intake.onnx_prepare import prepare_onnx

    prepared = prepare_onnx(pooled_model.SerializeToString(), DEFAULT_LIMITS, input_shape=SHAPE)
    [output] = prepared.model.graph.output
    dims = output.type.tensor_type.shape.dim
    assert output.name == "y" and len(dims) == 2 and dims[1].dim_value == CLASSES
    assert not dims[0].HasField("dim_value")  # the batch stays symbolic (or becomes so for a fixed 1)
    assert onnx.load_from_string(prepared.ort_bytes).graph.output[0].name == "y"


@pytest.mark.parametrize("opset", [9, 17])
def test_a_non_unit_spatial_output_is_still_refused(opset: int) -> None:
    """[N, C, 2, 1] is not a classifier output: shape_mismatch, nothing squeezed or flattened."""
    model = conv_pool_classifier(CLASSES, (2, 1), opset=opset)
    assert ort_run(model, _inputs(1)).shape == (1, CLASSES, 2, 1)
    with pytest.raises(ModelRejected) as info:
        validate_onnx(model.SerializeToString(), SHAPE, CLASSES)
    assert info.value.code == "shape_mismatch" and "[1, 5, 2, 1]" in info.value.message


def test_a_unit_tail_with_the_wrong_class_count_is_refused() -> None:
    """A squeezed [N, 5] output declared for 6 classes is still a shape_mismatch."""
    model = conv_pool_classifier(CLASSES, (1, 1))
    with pytest.raises(ModelRejected) as info:
        validate_onnx(model.SerializeToString(), SHAPE, CLASSES + 1)
    assert info.value.code == "shape_mismatch"


def test_the_class_axis_itself_is_never_squeezed() -> None:
    """A one-class [N, 1, 1, 1] output becomes [N, 1], not [N]."""
    model = conv_pool_classifier(1, (1, 1))
    report = validate_onnx(model.SerializeToString(), SHAPE, 1)
    assert report.white_box, report.notes
    assert OnnxRuntimeClassifier(model.SerializeToString())(_inputs(3)).shape == (3, 1)
