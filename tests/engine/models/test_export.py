"""Export of trained models: back into the uploaded graph, or through torch.onnx, verified by the intake."""

import copy

import numpy as np
import onnx
import pytest
import torch
from onnx import numpy_helper
from torch import nn

from tests.engine.onnx_fixtures import ort_run
from worker.engine.datasets import load_builtin
from worker.engine.models.catalog import build_architecture
from worker.engine.models.export import ExportError, export_onnx, verified_export
from worker.engine.models.intake import validate_onnx
from worker.engine.models.onnx_graph.ops_nn import BatchNormOp
from worker.engine.training.fit import fit
from worker.engine.training.recipe import TrainingRecipe
from worker.engine.training.trainable import trainable_from_onnx

SHAPE = (1, 8, 8)
RANGE = (0.0, 1.0)


@pytest.fixture(scope="module")
def train_subset() -> tuple[np.ndarray, np.ndarray]:
    """The first 300 samples of digits-train."""
    data = load_builtin("digits-train")
    return data.x[:300], data.y[:300]


def _initializers(model: onnx.ModelProto) -> dict[str, np.ndarray]:
    """Initializer values by name."""
    return {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}


def _eval_logits(module: nn.Module, x: np.ndarray) -> np.ndarray:
    """The module's eval-mode logits, leaving its mode as it was."""
    training = module.training
    with torch.no_grad():
        out = module.eval()(torch.from_numpy(x)).numpy()
    module.train(training)
    return out


def test_a_trained_graph_comes_back_as_its_own_graph(cnn_onnx: bytes, train_subset) -> None:
    module = trainable_from_onnx(cnn_onnx, init="pretrained")
    fit(module, *train_subset, recipe=TrainingRecipe(epochs=1, learning_rate=1e-3), seed=0)
    source, exported = (
        onnx.load_from_string(cnn_onnx),
        onnx.load_from_string(export_onnx(module, input_shape=SHAPE)),
    )
    assert list(exported.graph.node) == list(source.graph.node)
    assert (
        list(exported.opset_import) == list(source.opset_import) and exported.ir_version == source.ir_version
    )
    assert [i.name for i in exported.graph.input] == [i.name for i in source.graph.input] == ["input"]
    assert list(exported.graph.output) == list(source.graph.output)
    old, new = _initializers(source), _initializers(exported)
    assert list(new) == list(old)
    assert all(not np.array_equal(old[name], new[name]) for name in old)  # every weight trained
    tensors = module.onnx_tensors()
    for name, value in new.items():
        np.testing.assert_array_equal(value, tensors[name].detach().numpy())
    x = train_subset[0][:50]
    np.testing.assert_allclose(ort_run(exported, x), _eval_logits(module, x), atol=1e-5)


def test_a_batch_norm_graph_trained_and_exported_matches_the_module_in_eval_mode(train_subset) -> None:
    torch.manual_seed(0)
    source = export_onnx(build_architecture("bn-cnn", SHAPE, 10), input_shape=SHAPE)
    assert "BatchNormalization" in {n.op_type for n in onnx.load_from_string(source).graph.node}
    module = trainable_from_onnx(source, init="random", seed=1)
    fit(module, *train_subset, recipe=TrainingRecipe(epochs=2), seed=0)
    module.train()
    data, report = verified_export(module, input_shape=SHAPE, num_classes=10, input_range=RANGE)
    assert module.training and all(op.training for op in module.ops)  # the mode is restored
    assert report.white_box
    exported = onnx.load_from_string(data)
    values = _initializers(exported)
    stats = {n.input[3] for n in exported.graph.node if n.op_type == "BatchNormalization"}
    tensors = module.onnx_tensors()
    for name in stats:  # running statistics moved during training and were written back
        assert not np.allclose(values[name], 0.0)
        np.testing.assert_array_equal(values[name], tensors[name].numpy())
    x = load_builtin("digits-test").x[:64]
    expected = _eval_logits(module, x)
    np.testing.assert_allclose(ort_run(data, x), expected, atol=1e-4)
    with torch.no_grad():
        assert not np.allclose(module(torch.from_numpy(x)).numpy(), expected, atol=1e-3)  # train mode differs
    again = trainable_from_onnx(data, init="pretrained")  # the export trains on, BatchNorm and all
    assert sum(isinstance(op, BatchNormOp) for op in again.ops) == 2
    np.testing.assert_allclose(_eval_logits(again, x), expected, atol=1e-5)


@pytest.mark.parametrize("architecture", ["mlp", "small-cnn", "bn-cnn", "small-resnet"])
def test_catalog_modules_export_through_torch_onnx_and_pass_the_intake(architecture: str) -> None:
    torch.manual_seed(0)
    has_bn = architecture in ("bn-cnn", "small-resnet")
    module = build_architecture(architecture, SHAPE, 10).train(has_bn)
    with torch.no_grad():
        module(torch.rand(16, *SHAPE))  # moves the running statistics away from their defaults
    data, report = verified_export(module, input_shape=SHAPE, num_classes=10, input_range=RANGE)
    assert module.training == has_bn  # exported in eval mode, then restored
    assert report.white_box and report.max_abs_diff is not None
    model = onnx.load_from_string(data)
    assert [i.name for i in model.graph.input] == ["input"] and [o.name for o in model.graph.output] == [
        "logits"
    ]
    assert validate_onnx(data, SHAPE, 10).white_box
    ops = {n.op_type for n in model.graph.node}
    assert ("BatchNormalization" in ops) == has_bn


class ConstantFoldedMean(nn.Module):
    """A module whose python float() of the input becomes a constant in the traced export."""

    def __init__(self) -> None:
        """A linear layer."""
        super().__init__()
        self.fc = nn.Linear(64, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits shifted by the batch mean, read as a python number."""
        return self.fc(x.flatten(1)) + float(x.mean()) * 10


def test_verified_export_raises_when_the_export_does_not_reproduce_the_module() -> None:
    torch.manual_seed(0)
    with pytest.raises(ExportError, match="disagrees with the trained module") as info:
        verified_export(ConstantFoldedMean(), input_shape=SHAPE, num_classes=10, input_range=RANGE)
    assert info.value.max_abs_diff is not None and info.value.max_abs_diff > 1.0
    with pytest.raises(ExportError, match="fails intake \\(shape_mismatch\\)"):
        verified_export(
            build_architecture("mlp", SHAPE, 10), input_shape=SHAPE, num_classes=7, input_range=RANGE
        )


def test_writing_into_a_different_graph_is_refused(cnn_onnx: bytes) -> None:
    torch.manual_seed(0)
    other = export_onnx(build_architecture("mlp", SHAPE, 10), input_shape=SHAPE)
    module = trainable_from_onnx(cnn_onnx, init="pretrained")
    with pytest.raises(ExportError, match="has no tensor for initializer"):
        export_onnx(module, input_shape=SHAPE, source_onnx=other)


def test_export_of_a_graph_module_without_a_source_uses_torch_onnx(cnn_onnx: bytes) -> None:
    module = copy.deepcopy(trainable_from_onnx(cnn_onnx, init="pretrained"))
    module.source_onnx = None
    data, report = verified_export(module, input_shape=SHAPE, num_classes=10, input_range=RANGE)
    assert report.white_box
    assert [o.name for o in onnx.load_from_string(data).graph.output] == ["logits"]
