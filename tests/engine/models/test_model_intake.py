"""Tests for model intake: unsafe formats refused unloaded, ONNX vetting, black-box fallback, safetensors."""

import functools
import io
import pickle
import zipfile
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper
from safetensors.torch import save as save_safetensors

from tests.engine.onnx_fixtures import (
    MLP,
    BatchNormCNN,
    export_onnx,
    linear_head,
    make_model,
    ort_run,
    seeded_model,
)
from worker.engine.models import intake as intake_pkg
from worker.engine.models.catalog import build_architecture
from worker.engine.models.intake import (
    IntakeReport,
    ModelRejected,
    OnnxRuntimeClassifier,
    detect_unsafe_format,
    load_onnx_module,
    load_safetensors_module,
    onnx_intake,
    refuse_unsafe_format,
    validate_onnx,
    validate_safetensors,
)

MLP_SHAPE = (3, 4)
_model = functools.partial(make_model, output_shape=["N", "C"])
CNN_SHAPE = (3, 8, 8)


class _Marker:
    """Unpickling this object would create a marker file (the classic __reduce__ payload)."""

    def __init__(self, path: Path) -> None:
        """Remember where the marker would be written."""
        self.path = path

    def __reduce__(self) -> tuple:
        """Ask the unpickler to call open(path, 'w')."""
        return (open, (str(self.path), "w"))


@pytest.fixture
def no_unsafe_loaders(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make every code-running loader fail the test if intake ever calls it."""

    def forbidden(*args: object, **kwargs: object) -> None:
        """Fail loudly."""
        raise AssertionError("intake called an unsafe loader")

    for owner, name in [
        (pickle, "load"), (pickle, "loads"), (pickle, "Unpickler"), (torch, "load"),
        (torch.jit, "load"), (torch.export, "load"), (np, "load"),
    ]:  # fmt: skip
        monkeypatch.setattr(owner, name, forbidden)


@pytest.fixture(scope="module")
def mlp() -> tuple[torch.nn.Module, bytes]:
    """An MLP and its dynamic-batch ONNX export."""
    model = seeded_model(MLP)
    return model, export_onnx(model, MLP_SHAPE)


def _rejected(code: str, fn: object, *args: object, **kwargs: object) -> ModelRejected:
    """Call fn, assert it raises ModelRejected with `code`, return the error."""
    with pytest.raises(ModelRejected) as info:
        fn(*args, **kwargs)
    assert info.value.code == code, info.value.message
    assert str(info.value) == info.value.message
    return info.value


def _torch_save_bytes() -> bytes:
    """A real torch.save file."""
    buffer = io.BytesIO()
    torch.save(seeded_model(MLP).state_dict(), buffer)
    return buffer.getvalue()


def _torchscript_bytes() -> bytes:
    """A real TorchScript archive."""
    buffer = io.BytesIO()
    torch.jit.save(torch.jit.script(seeded_model(MLP)), buffer)
    return buffer.getvalue()


def _torch_export_bytes() -> bytes:
    """A real torch.export archive."""
    buffer = io.BytesIO()
    torch.export.save(torch.export.export(seeded_model(MLP), (torch.rand(1, *MLP_SHAPE),)), buffer)
    return buffer.getvalue()


def _plain_zip_bytes() -> bytes:
    """A zip archive with an unrelated member."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("weights.txt", "1 2 3")
    return buffer.getvalue()


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_malicious_pickle_is_refused_and_never_loaded(
    protocol: int, tmp_path: Path, no_unsafe_loaders: None, mlp: tuple
) -> None:
    """A pickle with a __reduce__ payload is refused by every entry point and never executed."""
    marker = tmp_path / "pwned"
    payload = pickle.dumps(_Marker(marker), protocol=protocol)
    for entry in (refuse_unsafe_format, lambda d: validate_onnx(d, MLP_SHAPE, 4), load_onnx_module,
                  OnnxRuntimeClassifier, lambda d: validate_safetensors(d, "mlp", MLP_SHAPE, 4)):  # fmt: skip
        error = _rejected("refused_format", entry, payload)
        assert "pickle" in error.message and "torch.onnx.export(model.eval()" in error.message
    assert not marker.exists()


def test_raw_protocol_zero_opcodes_are_refused(tmp_path: Path) -> None:
    """Hand-written protocol-0 opcodes (GLOBAL os.system ... REDUCE) are recognised."""
    payload = f"cbuiltins\nopen\n(S'{tmp_path / 'pwned'}'\nS'w'\ntR.".encode()
    _rejected("refused_format", refuse_unsafe_format, payload)
    truncated = payload[: payload.index(b"S'w'")]  # GLOBAL, MARK, STRING and no STOP
    _rejected("refused_format", refuse_unsafe_format, truncated)
    assert not (tmp_path / "pwned").exists()


@pytest.fixture(scope="module")
def archives() -> dict[str, bytes]:
    """Real torch archives, made before any loader is patched out."""
    makers = {"a torch.save file": _torch_save_bytes, "a TorchScript archive": _torchscript_bytes,
              "a torch.export archive": _torch_export_bytes, "a zip archive": _plain_zip_bytes}  # fmt: skip
    return {kind: make() for kind, make in makers.items()}


@pytest.mark.parametrize(
    "kind", ["a torch.save file", "a TorchScript archive", "a torch.export archive", "a zip archive"]
)
def test_torch_archives_are_refused_unloaded(
    archives: dict[str, bytes], kind: str, no_unsafe_loaders: None
) -> None:
    """torch.save, TorchScript, torch.export and plain zips are named and refused from member names only."""
    error = _rejected("refused_format", validate_onnx, archives[kind], MLP_SHAPE, 4)
    assert kind in error.message
    assert "dynamic_axes={'input': {0: 'batch'}}" in error.message


def test_real_models_are_not_mistaken_for_unsafe_formats(mlp: tuple) -> None:
    """ONNX bytes and a safetensors file whose header length starts like a PROTO opcode pass the check."""
    assert detect_unsafe_format(mlp[1]) is None
    state = build_architecture("mlp", MLP_SHAPE, 4).state_dict()
    for pad in range(600):
        data = save_safetensors(state, metadata={"pad": "x" * pad})
        if data[:2] == b"\x80\x02":
            break
    assert data[:2] == b"\x80\x02"
    assert detect_unsafe_format(data) is None
    assert validate_safetensors(data, "mlp", MLP_SHAPE, 4).white_box


@pytest.mark.parametrize(
    "data", [b"", b"hello world", bytes(np.random.default_rng(0).integers(0, 256, 4096, np.uint8))]
)
def test_garbage_is_onnx_invalid(data: bytes) -> None:
    """Bytes that are not an ONNX model are rejected as onnx_invalid."""
    _rejected("onnx_invalid", validate_onnx, data, MLP_SHAPE, 4)


def test_valid_onnx_is_white_box(mlp: tuple) -> None:
    """A supported export passes with a tiny parity diff, the opset and notes recorded."""
    report = validate_onnx(mlp[1], MLP_SHAPE, 4, input_range=(-1.0, 1.0), samples=5)
    assert isinstance(report, IntakeReport)
    assert report.white_box and report.missing_ops == []
    assert report.max_abs_diff is not None and report.max_abs_diff < 1e-5
    assert report.onnx_opset == 17
    assert any("batches of 1, 3 and 5" in note for note in report.notes)


def test_cnn_onnx_validates_and_loads() -> None:
    """The BatchNorm CNN export validates white-box and loads as a module equal to the original."""
    model = seeded_model(BatchNormCNN)
    data = export_onnx(model, CNN_SHAPE)
    assert validate_onnx(data, CNN_SHAPE, 5).white_box
    module = load_onnx_module(data)
    assert not module.training
    x = torch.rand(4, *CNN_SHAPE, requires_grad=True)
    out = module(x)
    torch.testing.assert_close(out, model(x), atol=1e-5, rtol=1e-5)
    out[:, 0].sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


@pytest.mark.parametrize(("shape", "classes", "fragment"), [((4, 3), 4, "expected"), ((12,), 4, "expected"),
                                                            (MLP_SHAPE, 5, "expected [1, 5]")])  # fmt: skip
def test_shape_and_class_mismatch(mlp: tuple, shape: tuple, classes: int, fragment: str) -> None:
    """A wrong declared input shape or class count is a shape_mismatch."""
    assert fragment in _rejected("shape_mismatch", validate_onnx, mlp[1], shape, classes).message


def test_fixed_batch_other_than_one_is_refused() -> None:
    """A graph declared with a fixed batch of 2 is refused with advice to export a dynamic batch."""
    head, weights = linear_head(12, 4)
    nodes = [helper.make_node("Flatten", ["x"], ["h"], axis=1), *head[1:]]
    nodes[-1].input[0] = "h"
    data = _model(nodes, [2, 3, 4], weights).SerializeToString()
    message = _rejected("shape_mismatch", validate_onnx, data, MLP_SHAPE, 4).message
    assert "fixed batch dimension of 2" in message and "dynamic_axes" in message


def test_batch_baked_into_the_graph_is_refused() -> None:
    """A symbolic batch that the graph then hard-codes to 1 (Reshape [1, -1]) fails the batch check."""
    head, weights = linear_head(12, 4)
    nodes = [helper.make_node("Reshape", ["x", "one_row"], ["h"]), *head]
    weights["one_row"] = np.array([1, -1], np.int64)
    data = _model(nodes, ["N", 3, 4], weights).SerializeToString()
    message = _rejected("shape_mismatch", validate_onnx, data, MLP_SHAPE, 4).message
    assert "dynamic" in message


def test_external_data_is_refused(mlp: tuple) -> None:
    """Tensors pointing at external files are refused before onnxruntime could read them."""
    model = onnx.load_from_string(mlp[1])
    tensor = model.graph.initializer[0]
    tensor.ClearField("raw_data")
    tensor.ClearField("float_data")
    tensor.data_location = TensorProto.EXTERNAL
    tensor.external_data.add(key="location", value="../../../../etc/passwd")
    message = _rejected("external_data", validate_onnx, model.SerializeToString(), MLP_SHAPE, 4).message
    assert tensor.name in message
    _rejected("external_data", OnnxRuntimeClassifier, model.SerializeToString())


def _round_sign_model() -> bytes:
    """A classifier using Round and Sign, which onnxruntime runs but the builder does not support."""
    head, weights = linear_head(12, 4)
    nodes = [helper.make_node("Round", ["x"], ["r"]), helper.make_node("Sign", ["r"], ["h"]), *head]
    return _model(nodes, ["N", 3, 4], weights).SerializeToString()


def test_unsupported_ops_fall_back_to_black_box() -> None:
    """A model with unsupported ops is accepted black-box, listing every missing op."""
    report = validate_onnx(_round_sign_model(), MLP_SHAPE, 4)
    assert not report.white_box and report.max_abs_diff is None
    assert report.missing_ops == ["Round", "Sign"]
    assert any("Round, Sign" in note for note in report.notes)
    error = _rejected("unsupported_ops", load_onnx_module, _round_sign_model())
    assert "Round, Sign" in error.message


def test_unconvertible_attribute_falls_back_to_black_box() -> None:
    """An allowlisted op with an attribute the builder refuses also falls back to black-box."""
    head, weights = linear_head(2 * 2 * 2, 3)
    pool = helper.make_node("AveragePool", ["x"], ["h"], kernel_shape=[2, 2], dilations=[2, 2])
    data = _model([pool, *head], ["N", 2, 4, 4], weights, opset=19).SerializeToString()
    report = validate_onnx(data, (2, 4, 4), 3)
    assert not report.white_box and report.missing_ops == []
    assert any("dilations" in note for note in report.notes)


def test_parity_failure_is_rejected(mlp: tuple, monkeypatch: pytest.MonkeyPatch) -> None:
    """If the torch conversion drifts from onnxruntime the upload is rejected with the diff."""
    real = onnx_intake.build_torch_module

    def drifting(model: onnx.ModelProto) -> torch.nn.Module:
        """Wrap the real module and add a small offset."""
        return _Offset(real(model))

    monkeypatch.setattr(onnx_intake, "build_torch_module", drifting)
    message = _rejected("parity_failed", validate_onnx, mlp[1], MLP_SHAPE, 4).message
    assert "max abs diff 0.01" in message


class _Offset(torch.nn.Module):
    """Adds 0.01 to another module's output."""

    def __init__(self, inner: torch.nn.Module) -> None:
        """Wrap inner."""
        super().__init__()
        self.inner = inner

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Shifted output."""
        return self.inner(x) + 0.01


def test_interface_problems() -> None:
    """Double inputs, two outputs and non-finite logits are rejected with distinct codes."""
    head, weights = linear_head(12, 4)
    double = _model([helper.make_node("Identity", ["x"], ["h"]), *head], ["N", 3, 4], weights,
                        input_type=TensorProto.DOUBLE)  # fmt: skip
    assert (
        "float32"
        in _rejected(
            "unsupported_input_type", validate_onnx, double.SerializeToString(), MLP_SHAPE, 4
        ).message
    )
    nodes = [helper.make_node("Identity", ["x"], ["h"]), *head, helper.make_node("Identity", ["y"], ["y2"])]
    two = _model(nodes, ["N", 3, 4], weights, outputs=("y", "y2"))
    _rejected("shape_mismatch", validate_onnx, two.SerializeToString(), MLP_SHAPE, 4)
    weights["zero"] = np.zeros(1, np.float32)
    infinite = _model([helper.make_node("Div", ["x", "zero"], ["h"]), *head], ["N", 3, 4], weights)
    assert (
        "finite"
        in _rejected("onnx_invalid", validate_onnx, infinite.SerializeToString(), MLP_SHAPE, 4).message
    )


def test_onnxruntime_classifier_counts_queries(mlp: tuple) -> None:
    """The black-box classifier returns float32 logits equal to the model's and counts samples."""
    model, data = mlp
    classifier = OnnxRuntimeClassifier(data)
    x = np.random.default_rng(0).random((5, *MLP_SHAPE))  # float64 is accepted and converted
    logits = classifier(x)
    assert logits.dtype == np.float32 and logits.shape == (5, 4)
    with torch.no_grad():
        np.testing.assert_allclose(logits, model(torch.from_numpy(x).float()).numpy(), atol=1e-5)
    classifier(x[:3].astype(np.float32))
    assert classifier.queries == 8
    np.testing.assert_allclose(classifier(x[:1]), ort_run(data, x[:1].astype(np.float32)), atol=1e-6)
    assert classifier.queries == 9


@pytest.mark.parametrize(("architecture", "shape"), [("mlp", MLP_SHAPE), ("small-cnn", (1, 8, 8))])
def test_safetensors_round_trip(architecture: str, shape: tuple, no_unsafe_loaders: None) -> None:
    """Weights saved with safetensors load strictly into the catalog architecture and reproduce outputs."""
    torch.manual_seed(1)
    original = build_architecture(architecture, shape, 10).eval()
    data = save_safetensors(original.state_dict())
    report = validate_safetensors(data, architecture, shape, 10)
    assert report.white_box and report.onnx_opset is None and report.missing_ops == []
    assert architecture in report.notes[0]
    loaded = load_safetensors_module(data, architecture, shape, 10)
    assert not loaded.training
    x = torch.rand(3, *shape)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), original(x), atol=0, rtol=0)


def test_safetensors_wrong_keys_and_shapes() -> None:
    """Missing, unexpected and mis-shaped tensors are each named in a safetensors_invalid message."""
    state = build_architecture("mlp", MLP_SHAPE, 4).state_dict()
    renamed = {("fc." + k if k.startswith("1.") else k): v for k, v in state.items()}
    message = _rejected(
        "safetensors_invalid", validate_safetensors, save_safetensors(renamed), "mlp", MLP_SHAPE, 4
    ).message
    assert (
        "missing keys: 1.bias, 1.weight" in message and "unexpected keys: fc.1.bias, fc.1.weight" in message
    )
    message = _rejected(
        "safetensors_invalid", validate_safetensors, save_safetensors(state), "mlp", MLP_SHAPE, 7
    ).message
    assert "5.weight is [4, 256], expected [7, 256]" in message
    state["1.bias"] = torch.full_like(state["1.bias"], float("nan"))
    assert (
        "NaN"
        in _rejected(
            "safetensors_invalid", load_safetensors_module, save_safetensors(state), "mlp", MLP_SHAPE, 4
        ).message
    )
    _rejected("safetensors_invalid", validate_safetensors, b"\x10\x00\x00\x00not json", "mlp", MLP_SHAPE, 4)


def test_safetensors_unknown_architecture_and_bad_shape() -> None:
    """An unknown architecture lists the catalog; an input shape it cannot take is a shape_mismatch."""
    data = save_safetensors(build_architecture("mlp", MLP_SHAPE, 4).state_dict())
    message = _rejected("unknown_architecture", validate_safetensors, data, "resnet50", MLP_SHAPE, 4).message
    assert "resnet50" in message and "mlp, small-cnn" in message
    _rejected("shape_mismatch", load_safetensors_module, data, "small-cnn", (3, 4), 4)


def test_public_api_names() -> None:
    """The package exports exactly the agreed API."""
    assert set(intake_pkg.__all__) >= {
        "ModelRejected", "refuse_unsafe_format", "IntakeReport", "validate_onnx", "load_onnx_module",
        "OnnxRuntimeClassifier", "validate_safetensors", "load_safetensors_module",
    }  # fmt: skip
