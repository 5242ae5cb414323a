"""Reading an ONNX graph's own interface, for uploads that leave out input_shape and num_classes."""

import io

import pytest
import torch

from worker.engine.models.catalog import build_architecture
from worker.engine.models.intake import ModelRejected
from worker.engine.models.intake.declared_interface import declared_interface


def _export(dynamic_axes: dict[str, dict[int, str]]) -> bytes:
    torch.manual_seed(0)
    module = build_architecture("small-cnn", (3, 8, 8), 7).eval()
    buffer = io.BytesIO()
    torch.onnx.export(
        module,
        (torch.rand(1, 3, 8, 8),),
        buffer,
        dynamo=False,
        input_names=["input"],
        output_names=["logits"],
        dynamic_axes=dynamic_axes,
    )
    return buffer.getvalue()


def test_a_graph_with_fixed_sample_dims_states_its_interface() -> None:
    graph = _export({"input": {0: "batch"}, "logits": {0: "batch"}})
    declared = declared_interface(graph)
    assert declared.input_shape == [3, 8, 8] and declared.num_classes == 7


def test_symbolic_sample_dims_are_refused_with_a_hint() -> None:
    graph = _export({"input": {0: "batch", 2: "height", 3: "width"}, "logits": {0: "batch"}})
    with pytest.raises(ModelRejected) as caught:
        declared_interface(graph)
    assert caught.value.code == "shape_unknown" and "input_shape" in caught.value.message
