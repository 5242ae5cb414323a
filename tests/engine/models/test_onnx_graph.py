"""Tests for the ONNX-to-PyTorch graph builder: onnxruntime parity, gradients, dynamic batch, refusals."""

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper

from tests.engine.onnx_fixtures import (
    EXPORTED_CASES,
    export_onnx,
    linear_head,
    make_model,
    ort_run,
    seeded_model,
)
from worker.engine.models.onnx_graph import (
    CONVERTERS,
    SUPPORTED_OPS,
    GraphBuildError,
    UnsupportedAttributeError,
    UnsupportedOpsError,
    build_torch_module,
)

REQUIRED_OPS = {
    "Conv", "Gemm", "MatMul", "Add", "Relu", "MaxPool", "AveragePool", "GlobalAveragePool", "Flatten",
    "Reshape", "BatchNormalization", "Softmax", "Identity", "Dropout", "Constant",
}  # fmt: skip


def _rand(*shape: int, seed: int = 0) -> np.ndarray:
    """Uniform float32 test input."""
    return np.random.default_rng(seed).uniform(-1, 1, size=shape).astype(np.float32)


def _assert_matches_ort(model: onnx.ModelProto, x: np.ndarray, atol: float = 1e-5) -> torch.Tensor:
    """Build the module, compare with onnxruntime on x, return the torch output."""
    got = build_torch_module(model)(torch.from_numpy(x))
    expected = ort_run(model, x)
    assert tuple(got.shape) == expected.shape
    np.testing.assert_allclose(got.detach().numpy(), expected, atol=atol, rtol=1e-5)
    return got


@pytest.fixture(scope="module", params=sorted(EXPORTED_CASES))
def exported(request: pytest.FixtureRequest) -> tuple[str, torch.nn.Module, bytes, tuple[int, ...]]:
    """Each exported architecture: (name, torch model, ONNX bytes, input shape)."""
    factory, shape, _ = EXPORTED_CASES[request.param]
    model = seeded_model(factory)
    return request.param, model, export_onnx(model, shape), shape


def test_registry_covers_the_allowlist() -> None:
    """Every required op has a converter, listed in SUPPORTED_OPS."""
    assert set(CONVERTERS) >= REQUIRED_OPS
    assert list(SUPPORTED_OPS) == sorted(CONVERTERS)
    assert all(callable(fn) for fn in CONVERTERS.values())


def test_exported_graph_has_expected_ops(exported: tuple) -> None:
    """The exporter produced the ops each case is meant to exercise."""
    name, _, data, _ = exported
    ops = {node.op_type for node in onnx.load_from_string(data).graph.node}
    assert EXPORTED_CASES[name][2] <= ops


@pytest.mark.parametrize("batch", [1, 2, 7])
def test_exported_matches_ort_and_torch(exported: tuple, batch: int) -> None:
    """The built module equals onnxruntime and the original model for several batch sizes."""
    _, model, data, shape = exported
    x = _rand(batch, *shape, seed=batch)
    module = build_torch_module(onnx.load_from_string(data)).eval()
    got = module(torch.from_numpy(x)).detach()
    np.testing.assert_allclose(got.numpy(), ort_run(data, x), atol=1e-5, rtol=1e-5)
    with torch.no_grad():
        torch.testing.assert_close(got, model(torch.from_numpy(x)), atol=1e-5, rtol=1e-5)


def test_gradients_flow(exported: tuple) -> None:
    """Input gradients match the original torch model's."""
    name, model, data, shape = exported
    module = build_torch_module(onnx.load_from_string(data)).eval()
    x = torch.from_numpy(_rand(3, *shape)).requires_grad_(True)
    x_ref = x.detach().clone().requires_grad_(True)
    weights = torch.arange(1.0, 1.0 + module(x).shape[1])  # a non-constant loss, even after Softmax
    (module(x) * weights).sum().backward()
    (model(x_ref) * weights).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0, name
    torch.testing.assert_close(x.grad, x_ref.grad, atol=1e-5, rtol=1e-4)


def test_initializers_are_float32_buffers() -> None:
    """Weights become float32 buffers (no parameters) and follow .to(dtype) like any buffer."""
    data = export_onnx(seeded_model(EXPORTED_CASES["batchnorm_cnn"][0]), (3, 8, 8))
    model = onnx.load_from_string(data)
    module = build_torch_module(model)
    buffers = dict(module.named_buffers())
    assert len(buffers) >= len(model.graph.initializer)
    assert all(b.dtype == torch.float32 for b in buffers.values())
    assert list(module.parameters()) == []


def test_float16_and_int_initializers_are_decoded() -> None:
    """float16 initializers are widened to float32; int64 shape tensors keep their dtype."""
    w = np.arange(6, dtype=np.float16).reshape(2, 3)
    nodes = [
        helper.make_node("Reshape", ["x", "shape"], ["flat"]),
        helper.make_node("MatMul", ["flat", "W"], ["y"]),
    ]
    model = make_model(nodes, ["N", 1, 2], {"W": w, "shape": np.array([0, -1], dtype=np.int64)})
    module = build_torch_module(model)
    dtypes = sorted(str(b.dtype) for b in module.buffers())
    assert dtypes == ["torch.float32", "torch.int64"]
    out = module(torch.ones(4, 1, 2))
    torch.testing.assert_close(out, torch.ones(4, 2) @ torch.from_numpy(w.astype(np.float32)))


@pytest.mark.parametrize(
    "attrs",
    [{}, {"transB": 1}, {"transA": 1}, {"alpha": 0.5, "beta": 2.0, "transB": 1}, {"alpha": 1.5, "beta": 0.0}],
)
def test_gemm_attributes(attrs: dict) -> None:
    """Gemm honours alpha, beta, transA and transB, checked against a numpy formula and onnxruntime."""
    rng = np.random.default_rng(1)
    k, n = 4, 3
    b = rng.normal(size=(n, k) if attrs.get("transB") else (k, n)).astype(np.float32)
    c = rng.normal(size=(n,)).astype(np.float32)
    shape = [k, "N"] if attrs.get("transA") else ["N", k]
    model = make_model([helper.make_node("Gemm", ["x", "B", "C"], ["y"], **attrs)], shape, {"B": b, "C": c})
    x = _rand(*((k, 5) if attrs.get("transA") else (5, k)))
    got = _assert_matches_ort(model, x).numpy()
    a = x.T if attrs.get("transA") else x
    bb = b.T if attrs.get("transB") else b
    np.testing.assert_allclose(got, attrs.get("alpha", 1.0) * a @ bb + attrs.get("beta", 1.0) * c, atol=1e-5)


def test_gemm_without_bias() -> None:
    """Gemm's C input is optional."""
    b = _rand(4, 3, seed=2)
    model = make_model([helper.make_node("Gemm", ["x", "B"], ["y"], alpha=2.0)], ["N", 4], {"B": b})
    np.testing.assert_allclose(
        _assert_matches_ort(model, _rand(2, 4)).numpy(), 2 * _rand(2, 4) @ b, atol=1e-5
    )


@pytest.mark.parametrize(
    ("target", "expected"), [([0, -1], (5, 24)), ([0, 3, -1], (5, 3, 8)), ([-1, 4], (30, 4))]
)
def test_constant_reshape_zero_and_minus_one(target: list[int], expected: tuple[int, ...]) -> None:
    """Reshape with a shape from a Constant node: 0 copies the input dim, -1 is inferred."""
    nodes = [
        helper.make_node(
            "Constant", [], ["shape"], value=helper.make_tensor("s", TensorProto.INT64, [len(target)], target)
        ),
        helper.make_node("Reshape", ["x", "shape"], ["y"]),
    ]
    model = make_model(nodes, ["N", 2, 3, 4])
    assert tuple(_assert_matches_ort(model, _rand(5, 2, 3, 4)).shape) == expected


def test_reshape_allowzero_keeps_a_literal_zero() -> None:
    """With allowzero=1 a 0 in the shape is a real zero-sized dim, not a copy."""
    nodes = [helper.make_node("Reshape", ["x", "shape"], ["y"], allowzero=1)]
    model = make_model(nodes, [2, 0, 4], {"shape": np.array([0, 5], dtype=np.int64)}, opset=14)
    out = _assert_matches_ort(model, np.zeros((2, 0, 4), dtype=np.float32))
    assert tuple(out.shape) == (0, 5)


def test_constant_value_attributes() -> None:
    """Constant's value_float / value_ints forms become tensors of the right dtype."""
    nodes = [
        helper.make_node("Constant", [], ["scale"], value_float=3.0),
        helper.make_node("Constant", [], ["shape"], value_ints=[-1, 6]),
        helper.make_node("Mul", ["x", "scale"], ["scaled"]),
        helper.make_node("Reshape", ["scaled", "shape"], ["y"]),
    ]
    x = _rand(2, 2, 3)
    model = make_model(nodes, ["N", 2, 3])
    buffers = dict(build_torch_module(model).named_buffers())
    assert buffers["c_scale"].dtype == torch.float32 and buffers["c_shape"].tolist() == [-1, 6]
    out = _assert_matches_ort(model, x)
    np.testing.assert_allclose(out.numpy(), 3.0 * x.reshape(-1, 6), atol=1e-6)


def test_unsupported_ops_are_all_listed() -> None:
    """Every unsupported op (and custom-domain op) is reported at once, sorted and unique."""
    nodes = [
        helper.make_node("TopK", ["x", "k"], ["v", "i"]),
        helper.make_node("LSTM", ["v", "W", "R"], ["h"]),
        helper.make_node("TopK", ["h", "k"], ["v2", "i2"]),
        helper.make_node("Relu", ["v2"], ["r"]),
        helper.make_node("Foo", ["r"], ["y"], domain="com.example"),
    ]
    with pytest.raises(UnsupportedOpsError) as info:
        build_torch_module(make_model(nodes, ["N", 4]))
    assert info.value.missing == ["LSTM", "TopK", "com.example::Foo"]
    message = str(info.value)
    assert "cannot differentiate through: LSTM, TopK, com.example::Foo" in message
    assert "Supported: Abs, Add, AveragePool" in message


def test_unsupported_ops_error_defaults() -> None:
    """The error can be raised with just the missing names; they come back sorted and unique."""
    error = UnsupportedOpsError(["TopK", "LSTM", "TopK"])
    assert error.missing == ["LSTM", "TopK"] and "Conv" in error.supported


def test_external_initializer_is_never_read() -> None:
    """The builder refuses tensors stored in external files instead of reading them."""
    model = make_model([helper.make_node("Add", ["x", "z"], ["y"])], ["N", 2], {"z": np.ones(2, np.float32)})
    tensor = model.graph.initializer[0]
    tensor.ClearField("raw_data")
    tensor.data_location = TensorProto.EXTERNAL
    tensor.external_data.add(key="location", value="/etc/hostname")
    with pytest.raises(GraphBuildError, match="external data"):
        build_torch_module(model)


def test_explicit_default_domain_is_accepted() -> None:
    """Nodes may spell the default domain 'ai.onnx'."""
    model = make_model([helper.make_node("Relu", ["x"], ["y"], domain="ai.onnx")], ["N", 3])
    out = build_torch_module(model)(torch.tensor([[-1.0, 0.5, 2.0]]))
    torch.testing.assert_close(out, torch.tensor([[0.0, 0.5, 2.0]]))


def test_interface_must_be_one_input_and_one_output() -> None:
    """Two runtime inputs or two outputs are refused; an initializer listed as an input is fine."""
    add = helper.make_node("Add", ["x", "z"], ["y"])
    with pytest.raises(GraphBuildError, match="exactly one input"):
        build_torch_module(make_model([add], ["N", 2], extra_inputs=("z",)))
    two_outputs = [helper.make_node("Relu", ["x"], ["y"]), helper.make_node("Identity", ["x"], ["y2"])]
    with pytest.raises(GraphBuildError, match="exactly one output"):
        build_torch_module(make_model(two_outputs, ["N", 2], outputs=("y", "y2")))
    legacy = make_model([add], ["N", 2], {"z": np.ones(2, np.float32)}, extra_inputs=("z",))
    torch.testing.assert_close(build_torch_module(legacy)(torch.zeros(1, 2)), torch.ones(1, 2))


def test_old_opset_is_refused() -> None:
    """Opsets older than 7 (legacy broadcasting semantics) are refused."""
    with pytest.raises(GraphBuildError, match="opset 6"):
        build_torch_module(make_model([helper.make_node("Relu", ["x"], ["y"])], ["N", 2], opset=6))


@pytest.mark.parametrize(
    ("op", "attrs", "outputs"),
    [
        ("MaxPool", {"kernel_shape": [2, 2], "auto_pad": "SAME_UPPER", "dilations": [2, 2]}, ["y"]),
        ("MaxPool", {"kernel_shape": [2, 2]}, ["y", "indices"]),
        ("AveragePool", {"kernel_shape": [2, 2], "dilations": [2, 2]}, ["y"]),
        ("AveragePool", {"kernel_shape": [2, 2], "pads": [0, 0, 2, 0]}, ["y"]),
        ("Conv", {"auto_pad": "SAME_LOWER", "dilations": [2, 2]}, ["y"]),
    ],
)
def test_unsupported_attributes_are_refused(op: str, attrs: dict, outputs: list[str]) -> None:
    """Attribute values the builder cannot match exactly raise UnsupportedAttributeError naming the op."""
    inputs = ["x", "W"] if op == "Conv" else ["x"]
    model = make_model(
        [helper.make_node(op, inputs, outputs, **attrs)], ["N", 1, 6, 6], {"W": _rand(1, 1, 2, 2)}
    )
    with pytest.raises(UnsupportedAttributeError, match=op):
        build_torch_module(model)


def test_batchnorm_training_mode_is_refused() -> None:
    """BatchNormalization in training mode is refused."""
    node = helper.make_node("BatchNormalization", ["x", "s", "b", "m", "v"], ["y"], training_mode=1)
    params = {name: np.ones(2, np.float32) for name in "sbmv"}
    with pytest.raises(UnsupportedAttributeError, match="training_mode"):
        build_torch_module(make_model([node], ["N", 2, 3], params))


# Single-node cases checked against onnxruntime: (op, attributes, input shape, weight shape or None).
CONV_POOL_CASES = [
    ("Conv", {"pads": [0, 1, 2, 0]}, [2, 2, 7, 6], [3, 2, 3, 3]),
    ("Conv", {"auto_pad": "SAME_UPPER", "strides": [2, 2]}, [2, 2, 7, 6], [4, 2, 2, 3]),
    ("Conv", {"auto_pad": "SAME_LOWER", "strides": [2, 1]}, [2, 2, 7, 6], [4, 2, 2, 2]),
    ("Conv", {"auto_pad": "VALID", "group": 2, "dilations": [2, 1]}, [2, 4, 7, 6], [4, 2, 2, 3]),
    ("Conv", {"pads": [1, 2], "strides": [2]}, [2, 3, 9], [2, 3, 3]),
    ("MaxPool", {"kernel_shape": [3, 3], "pads": [0, 2, 2, 0]}, [2, 2, 7, 6], None),
    ("MaxPool", {"kernel_shape": [3, 2], "strides": [2, 2], "ceil_mode": 1}, [2, 2, 8, 7], None),
    ("MaxPool", {"kernel_shape": [2, 2], "dilations": [2, 1], "pads": [1, 1, 1, 1]}, [2, 2, 7, 6], None),
    ("MaxPool", {"kernel_shape": [3, 3], "strides": [2, 2], "auto_pad": "SAME_LOWER"}, [2, 2, 7, 6], None),
    ("MaxPool", {"kernel_shape": [3], "strides": [2], "pads": [2, 1], "ceil_mode": 1}, [2, 2, 9], None),
    (
        "AveragePool",
        {"kernel_shape": [3, 3], "pads": [1, 2, 2, 0], "count_include_pad": 0},
        [2, 2, 7, 6],
        None,
    ),
    (
        "AveragePool",
        {"kernel_shape": [3, 3], "pads": [1, 2, 2, 0], "count_include_pad": 1},
        [2, 2, 7, 6],
        None,
    ),
    ("AveragePool", {"kernel_shape": [3, 2], "strides": [2, 2], "ceil_mode": 1}, [2, 2, 8, 7], None),
    (
        "AveragePool",
        {
            "kernel_shape": [3, 3],
            "strides": [2, 2],
            "pads": [1, 1, 1, 1],
            "ceil_mode": 1,
            "count_include_pad": 1,
        },
        [2, 2, 8, 8],
        None,
    ),  # fmt: skip
    (
        "AveragePool",
        {"kernel_shape": [2, 2], "auto_pad": "SAME_UPPER", "count_include_pad": 1},
        [2, 2, 5, 5],
        None,
    ),
    ("AveragePool", {"kernel_shape": [3], "pads": [2, 0]}, [2, 2, 9], None),
    # ceil_mode with the last window starting in the right padding: ONNX drops that window
    ("MaxPool", {"kernel_shape": [3], "strides": [3], "pads": [0, 2], "ceil_mode": 1}, [2, 2, 5], None),
    ("AveragePool", {"kernel_shape": [3], "strides": [3], "pads": [0, 2], "ceil_mode": 1}, [2, 2, 5], None),
    ("GlobalAveragePool", {}, [2, 3, 5], None),
    ("GlobalAveragePool", {}, [2, 3, 4, 3, 2], None),
]


@pytest.mark.parametrize(("op", "attrs", "shape", "weight"), CONV_POOL_CASES)
def test_conv_and_pool_match_ort(op: str, attrs: dict, shape: list[int], weight: list[int] | None) -> None:
    """Conv and pooling agree with onnxruntime for asymmetric pads, auto_pad, ceil_mode, groups, 1-D."""
    inputs, inits = (
        (["x", "W", "B"], {"W": _rand(*weight, seed=3), "B": _rand(weight[0], seed=4)})
        if weight
        else (["x"], {})
    )
    model = make_model([helper.make_node(op, inputs, ["y"], **attrs)], ["N", *shape[1:]], inits)
    x = _rand(*shape, seed=5)
    out = _assert_matches_ort(model, x)
    x_grad = torch.from_numpy(x).requires_grad_(True)
    build_torch_module(model)(x_grad).sum().backward()
    assert torch.isfinite(x_grad.grad).all() and x_grad.grad.abs().sum() > 0
    assert out.shape[0] == shape[0]


def test_batchnorm_dropout_identity_flatten() -> None:
    """BatchNormalization (inference), Dropout with its mask output, Identity and Flatten(axis=2)."""
    rng = np.random.default_rng(7)
    params = {
        "s": rng.uniform(0.5, 1.5, 3),
        "b": rng.normal(size=3),
        "m": rng.normal(size=3),
        "v": rng.uniform(0.5, 2, 3),
    }
    nodes = [
        helper.make_node("BatchNormalization", ["x", "s", "b", "m", "v"], ["bn"], epsilon=1e-3),
        helper.make_node("Dropout", ["bn", "ratio"], ["drop", "mask"]),
        helper.make_node("Identity", ["drop"], ["ident"]),
        helper.make_node("Flatten", ["ident"], ["y"], axis=2),
    ]
    inits = {k: v.astype(np.float32) for k, v in params.items()} | {"ratio": np.array(0.5, np.float32)}
    x = _rand(2, 3, 4, 5)
    out = _assert_matches_ort(make_model(nodes, ["N", 3, 4, 5], inits), x)
    scale = params["s"] / np.sqrt(params["v"] + 1e-3)
    expected = (x - params["m"][:, None, None]) * scale[:, None, None] + params["b"][:, None, None]
    np.testing.assert_allclose(out.numpy(), expected.reshape(6, 20), atol=1e-5)


@pytest.mark.parametrize(("opset", "axis"), [(11, 1), (11, -1), (13, 1), (13, -1)])
def test_softmax_follows_the_opset_semantics(opset: int, axis: int) -> None:
    """Before opset 13 Softmax normalises the flattened trailing block; from 13 a single axis."""
    model = make_model([helper.make_node("Softmax", ["x"], ["y"], axis=axis)], ["N", 3, 4], opset=opset)
    out = _assert_matches_ort(model, _rand(2, 3, 4) * 3)
    if opset == 11 and axis == 1:
        assert torch.allclose(out.sum(dim=(1, 2)), torch.ones(2))
    elif opset == 13 and axis == 1:
        assert torch.allclose(out.sum(dim=1), torch.ones(2, 4))


@pytest.mark.parametrize("op", ["Add", "Sub", "Mul", "Div", "MatMul"])
def test_binary_ops_broadcast(op: str) -> None:
    """Binary ops broadcast like numpy."""
    other = _rand(4, 2, seed=8) if op == "MatMul" else _rand(3, 1, seed=8) + 2.0
    model = make_model([helper.make_node(op, ["x", "z"], ["y"])], ["N", 3, 4], {"z": other})
    _assert_matches_ort(model, _rand(2, 3, 4))


@pytest.mark.parametrize("op", ["Relu", "Sigmoid", "Tanh", "Identity"])
def test_unary_ops(op: str) -> None:
    """Activation ops agree with onnxruntime."""
    _assert_matches_ort(make_model([helper.make_node(op, ["x"], ["y"])], ["N", 5]), _rand(3, 5) * 4)


@pytest.mark.parametrize("opset", [11, 13])
def test_shape_gather_unsqueeze_concat(opset: int) -> None:
    """Run-time shape arithmetic: Shape -> Gather(-1) -> Unsqueeze (attr or input) -> Concat -> Reshape."""
    axes_inputs = ["last"] if opset < 13 else ["last", "axes"]
    axes_attrs = {"axes": [0]} if opset < 13 else {}
    nodes = [
        helper.make_node("Shape", ["x"], ["shape"]),
        helper.make_node("Gather", ["shape", "idx"], ["last"], axis=0),
        helper.make_node("Unsqueeze", axes_inputs, ["last1"], **axes_attrs),
        helper.make_node("Concat", ["minus_one", "last1"], ["target"], axis=0),
        helper.make_node("Reshape", ["x", "target"], ["y"]),
    ]
    inits = {
        "idx": np.array(-1, np.int64),
        "axes": np.array([0], np.int64),
        "minus_one": np.array([-1], np.int64),
    }
    model = make_model(nodes, ["N", 2, 3], inits, opset=opset)
    for batch in (1, 4):
        assert tuple(_assert_matches_ort(model, _rand(batch, 2, 3)).shape) == (batch * 2, 3)


def test_gather_with_matrix_indices() -> None:
    """Gather keeps the indices' shape and accepts negative indices."""
    node = helper.make_node("Gather", ["x", "idx"], ["y"], axis=1)
    model = make_model([node], ["N", 5], {"idx": np.array([[0, -1], [2, 2]], np.int64)})
    assert tuple(_assert_matches_ort(model, _rand(3, 5)).shape) == (3, 2, 2)


def test_intermediate_values_are_released() -> None:
    """Values no later node reads are dropped from the environment (flat memory for deep graphs)."""
    module = build_torch_module(
        onnx.load_from_string(export_onnx(seeded_model(EXPORTED_CASES["mlp"][0]), (3, 4)))
    )
    released = {name for step in module._steps for name in step.release}
    produced = {name for step in module._steps for name in step.outputs}
    assert produced - released == {module.output_name}


def test_helper_graph_with_linear_head_has_dynamic_batch() -> None:
    """A helper-built conv graph with a symbolic batch runs for any batch size."""
    head, weights = linear_head(2 * 3 * 3, 4)
    nodes = [helper.make_node("Conv", ["x", "K"], ["h"], pads=[1, 1, 1, 1]), *head]
    model = make_model(nodes, ["N", 1, 3, 3], {"K": _rand(2, 1, 3, 3), **weights})
    for batch in (1, 6):
        assert tuple(_assert_matches_ort(model, _rand(batch, 1, 3, 3)).shape) == (batch, 4)
