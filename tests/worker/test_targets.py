"""Targets: one class per model source behind one interface, built from a model row by its format alone."""

import io
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from app.orm import ModelRecord
from app.settings import Settings
from worker.engine.models.catalog import build_architecture
from worker.services.job_state import JobFailure
from worker.services.targets import (
    ArchitectureTarget,
    DefendedTarget,
    OnnxTarget,
    RemoteTarget,
    SafetensorsTarget,
    build_target,
)

SHAPE, CLASSES = [1, 8, 8], 10
REPO = Path(__file__).resolve().parents[2]


def _record(fmt: str, **fields: object) -> ModelRecord:
    values: dict[str, object] = {
        "id": "mdl_t",
        "tenant_id": "ten_t",
        "name": "target",
        "format": fmt,
        "input_shape": SHAPE,
        "num_classes": CLASSES,
        "input_range": [0.0, 1.0],
        "status": "ready",
        "white_box": True,
    }
    return ModelRecord(**(values | fields))


@pytest.fixture(scope="module")
def small_cnn() -> torch.nn.Module:
    torch.manual_seed(0)
    return build_architecture("small-cnn", tuple(SHAPE), CLASSES).eval()


@pytest.fixture(scope="module")
def onnx_bytes(small_cnn: torch.nn.Module) -> bytes:
    buffer = io.BytesIO()
    torch.onnx.export(
        small_cnn,
        (torch.rand(1, *SHAPE),),
        buffer,
        dynamo=False,
        input_names=["input"],
        output_names=["logits"],
        dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
    )
    return buffer.getvalue()


def test_each_format_builds_its_own_target_class(onnx_bytes: bytes) -> None:
    settings = Settings()
    assert isinstance(build_target(_record("onnx"), onnx_bytes, settings), OnnxTarget)
    assert isinstance(
        build_target(_record("architecture", architecture="small-cnn"), None, settings), ArchitectureTarget
    )
    remote_row = _record("remote", endpoint_url="http://127.0.0.1:9/p", white_box=False)
    remote = build_target(remote_row, None, settings)
    assert isinstance(remote, RemoteTarget)
    bits = [{"name": "bit_depth", "bits": 4}]
    defended = build_target(_record("onnx", preprocessing=bits), onnx_bytes, settings)
    assert isinstance(defended, DefendedTarget) and defended.preprocessing == bits
    with pytest.raises(JobFailure) as caught:
        build_target(_record("onnx"), None, settings)
    assert caught.value.code == "model_invalid"


def test_an_onnx_target_agrees_on_both_paths(onnx_bytes: bytes, small_cnn: torch.nn.Module) -> None:
    target = build_target(_record("onnx"), onnx_bytes, Settings())
    x = np.random.default_rng(0).random((4, *SHAPE), dtype=np.float32)
    classify = target.classifier()
    assert classify is not None and target.onnx_bytes() == onnx_bytes
    with torch.no_grad():
        white = target.module()(torch.from_numpy(x)).numpy()
        reference = small_cnn(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(classify(x), reference, atol=1e-4)
    np.testing.assert_allclose(white, reference, atol=1e-4)


def test_a_black_box_onnx_target_has_no_gradient_path(onnx_bytes: bytes) -> None:
    target = build_target(_record("onnx", white_box=False), onnx_bytes, Settings())
    assert target.differentiable() is None and target.black_box_model() is not None
    with pytest.raises(JobFailure) as caught:
        target.module()
    assert caught.value.code == "needs_white_box"


def test_a_weightless_architecture_trains_but_cannot_be_attacked() -> None:
    target = build_target(_record("architecture", architecture="small-cnn"), None, Settings())
    assert not target.has_weights and target.classifier() is None
    assert sum(p.numel() for p in target.trainable("random", 0).parameters()) > 0
    with pytest.raises(JobFailure):
        target.graph_module()


def test_declared_normalization_is_applied_on_both_paths(onnx_bytes: bytes) -> None:
    norm = {"mean": [0.5], "std": [0.25]}
    plain = build_target(_record("onnx"), onnx_bytes, Settings())
    target = build_target(_record("onnx", normalization=norm), onnx_bytes, Settings())
    x = np.random.default_rng(1).random((3, *SHAPE), dtype=np.float32)
    expected = plain.classifier()((x - 0.5) / 0.25)  # type: ignore[misc]
    np.testing.assert_allclose(target.classifier()(x), expected, atol=1e-4)  # type: ignore[misc]
    with torch.no_grad():
        np.testing.assert_allclose(target.module()(torch.from_numpy(x)).numpy(), expected, atol=1e-4)


def test_safetensors_target_is_white_box_without_a_query_interface(small_cnn: torch.nn.Module) -> None:
    from safetensors.torch import save

    blob = save({k: v.contiguous() for k, v in small_cnn.state_dict().items()})
    target = build_target(_record("safetensors", architecture="small-cnn"), blob, Settings())
    assert isinstance(target, SafetensorsTarget) and target.classifier() is None
    x = torch.rand(2, *SHAPE)
    with torch.no_grad():
        torch.testing.assert_close(target.module()(x), small_cnn(x))


def test_no_format_comparison_outside_the_target_builder() -> None:
    pattern = re.compile(r"\.format\s*[!=]=")
    offenders = [
        str(path.relative_to(REPO))
        for folder in ("worker/services/kinds", "worker/engine")
        for path in (REPO / folder).rglob("*.py")
        if pattern.search(path.read_text())
    ]
    assert offenders == []
