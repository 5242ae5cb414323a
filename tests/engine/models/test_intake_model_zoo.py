"""The model zoo's own SqueezeNet and DenseNet-121 files, shipped inside the onnx package, through intake.

Both are Caffe2-era exports (fixed batch 1, opset 9, input [1, 3, 224, 224]) whose last node yields
[1, 1000, 1, 1]; the "light" variants build their weights with ConstantOfShape, so their outputs
hardly vary, but the graphs are the zoo's. Each must be ready and white-box, and both paths must
return [N, 1000] equal to onnxruntime on the unmodified file.
"""

from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from tests.engine.onnx_fixtures import ort_run
from worker.engine.models.intake import OnnxRuntimeClassifier, load_onnx_module, validate_onnx
from worker.engine.models.intake.errors import IntakeReport

ZOO = Path(onnx.__file__).parent / "backend" / "test" / "data" / "light"
SHAPE, CLASSES = (3, 224, 224), 1000
pytestmark = pytest.mark.slow  # 224x224 graphs: DenseNet-121 takes about ten seconds on one core


@pytest.fixture(scope="module", params=["squeezenet", "densenet121"])
def zoo_model(request: pytest.FixtureRequest) -> tuple[bytes, IntakeReport]:
    """(the zoo file's bytes, its intake report at the smallest sample count)."""
    data = (ZOO / f"light_{request.param}.onnx").read_bytes()
    return data, validate_onnx(data, SHAPE, CLASSES, samples=1)


def _images(batch: int) -> np.ndarray:
    """Uniform [0, 1) float32 images."""
    return np.random.default_rng(0).random((batch, *SHAPE), dtype=np.float32)


def test_zoo_file_ends_in_a_unit_tail() -> None:
    """The premise: both files declare and return [1, 1000, 1, 1]."""
    for name in ("squeezenet", "densenet121"):
        model = onnx.load(ZOO / f"light_{name}.onnx")
        dims = [d.dim_value for d in model.graph.output[0].type.tensor_type.shape.dim]
        assert dims == [1, CLASSES, 1, 1] and model.opset_import[0].version == 9


def test_zoo_file_is_ready_white_box(zoo_model: tuple[bytes, IntakeReport]) -> None:
    """Intake accepts the file white-box within parity, batched, and says the output was squeezed."""
    _, report = zoo_model
    assert report.white_box and report.missing_ops == [], report.notes
    assert report.max_abs_diff is not None and report.onnx_opset == 9
    assert report.batch_mode == "symbolic", report.notes
    assert any("[1, 1000, 1, 1]" in note and "squeezed" in note for note in report.notes), report.notes


def test_zoo_file_returns_squeezed_logits_on_both_paths(zoo_model: tuple[bytes, IntakeReport]) -> None:
    """onnxruntime and the PyTorch module return [2, 1000], equal to the unmodified file per sample."""
    data, _ = zoo_model
    x = _images(2)
    expected = np.concatenate([ort_run(data, x[i : i + 1]).reshape(1, CLASSES) for i in range(2)])
    got = OnnxRuntimeClassifier(data)(x)
    assert got.shape == (2, CLASSES)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-6)
    module = load_onnx_module(data)
    with torch.no_grad():
        out = module(torch.from_numpy(x)).numpy()
    assert out.shape == (2, CLASSES)
    np.testing.assert_allclose(out, expected, rtol=1e-4, atol=1e-6)
