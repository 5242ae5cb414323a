"""Single-op semantics of the ONNX graph builder, each compared with onnxruntime."""

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper

from tests.engine.onnx_fixtures import make_model, ort_run
from worker.engine.models.onnx_graph import UnsupportedAttributeError, build_torch_module

# ---- single-op semantics, each compared with onnxruntime -------------------------------------------

BIG = int(np.iinfo(np.int64).max)
F32 = np.float32


def _i64(*values: int) -> np.ndarray:
    """An int64 vector initializer."""
    return np.array(values, dtype=np.int64)


def _node(op: str, inputs: list[str], outputs: tuple[str, ...] = ("y",), **attrs: object) -> onnx.NodeProto:
    """One ONNX node."""
    return helper.make_node(op, inputs, list(outputs), **attrs)


def _op_input(shape: list[int | str], scale: float = 3.0) -> np.ndarray:
    """A float32 input for a single-op graph, batch 2, spread over [-scale, scale]."""
    dims = [2 if d == "N" else int(d) for d in shape]
    return np.random.default_rng(1).uniform(-scale, scale, size=dims).astype(np.float32)


def _check_op(
    nodes: list[onnx.NodeProto],
    shape: list[int | str],
    inits: dict[str, np.ndarray] | None = None,
    opset: int = 13,
    *,
    grad: bool = False,
) -> None:
    """Compare a one-input graph with onnxruntime; with grad, also gradcheck it in float64."""
    model = make_model(nodes, shape, inits or {}, opset=opset)
    x = _op_input(shape)
    got = build_torch_module(model)(torch.from_numpy(x)).detach().numpy()
    expected = ort_run(model, x)
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
    if grad:
        module = build_torch_module(model).double()
        x64 = torch.from_numpy(_op_input(shape, scale=0.9)).double().requires_grad_(True)
        assert torch.autograd.gradcheck(module, (x64,), eps=1e-6, atol=1e-5)


@pytest.mark.parametrize(
    ("starts", "ends", "axes", "steps"),
    [
        ([1], [BIG], [1], None),
        ([-1], [-BIG], [2], [-1]),
        ([4, -2], [0, -100], [-2, 2], [-2, -3]),
        ([-100], [100], None, [2]),
        ([10], [20], [1], None),
        ([0, 2], [2**40, -1], None, None),
        ([3], [BIG], [1], [-1]),  # onnxruntime: an INT64_MAX end runs to the front for negative steps
        ([-BIG], [2**31 - 1], [1], [-BIG]),
        ([1], [4], [-1], [BIG]),
    ],
)
def test_slice(starts: list[int], ends: list[int], axes: list[int] | None, steps: list[int] | None) -> None:
    """Slice inputs: negative and huge starts/ends are clamped, negative steps walk backwards."""
    inits = {"s": _i64(*starts), "e": _i64(*ends)}
    optional = {"a": axes, "st": steps}
    inits |= {name: _i64(*values) for name, values in optional.items() if values is not None}
    names = ["x", "s", "e", *("" if optional[name] is None else name for name in ("a", "st"))]
    _check_op([_node("Slice", names)], ["N", 5, 6], inits, grad=True)


def test_slice_attributes_before_opset_10() -> None:
    """Before opset 10 starts/ends/axes are attributes."""
    _check_op([_node("Slice", ["x"], starts=[1, -4], ends=[-1, BIG], axes=[2, 1])], ["N", 5, 6], opset=9)


@pytest.mark.parametrize(
    ("mode", "pads", "axes", "value", "opset"),
    [
        ("constant", [0, 0, 1, 2, 0, 0, 2, -1], None, 1.5, 13),
        ("constant", [0, 1, 0, 0, 0, 0, 0, 3], None, None, 11),
        ("reflect", [0, 0, 2, 3, 0, 0, 1, 4], None, None, 13),
        ("edge", [0, 1, 3, 0, 0, 0, 0, 6], None, None, 13),
        ("reflect", [1, 2, 3, 0], [-1, 2], None, 18),
        ("constant", [0, 1, 1, 0], [1, -1], 0.5, 18),
    ],
)
def test_pad(mode: str, pads: list[int], axes: list[int] | None, value: float | None, opset: int) -> None:
    """Pad with pads, constant_value and (opset 18) axes inputs; negative constant pads crop."""
    inits = {"p": _i64(*pads)}
    if value is not None:
        inits["v"] = np.array(value, F32)
    if axes is not None:
        inits["a"] = _i64(*axes)
    names = ["x", "p", "v" if value is not None else "", *(["a"] if axes is not None else [])]
    _check_op([_node("Pad", names, mode=mode)], ["N", 2, 4, 5], inits, opset, grad=True)


@pytest.mark.parametrize("mode", ["constant", "reflect", "edge"])
def test_pad_attributes_before_opset_11(mode: str) -> None:
    """Before opset 11 pads and value are attributes."""
    node = _node("Pad", ["x"], pads=[0, 0, 1, 0, 0, 0, 2, 1], mode=mode, value=-2.0)
    _check_op([node], ["N", 2, 4, 5], opset=10)


@pytest.mark.parametrize(
    ("attrs", "axes", "opset"),
    [
        ({"axes": [1, -1]}, None, 13),
        ({"axes": [2], "keepdims": 0}, None, 13),
        ({"keepdims": 0}, None, 13),
        ({"keepdims": 0}, [-2, 1], 18),
        ({}, None, 18),
        ({"noop_with_empty_axes": 1}, [], 18),
        ({"noop_with_empty_axes": 1}, None, 18),
    ],
)
def test_reduce_mean(attrs: dict, axes: list[int] | None, opset: int) -> None:
    """ReduceMean: axes attribute before opset 18, input from 18; keepdims; noop_with_empty_axes."""
    inputs, inits = (["x"], {}) if axes is None else (["x", "a"], {"a": _i64(*axes)})
    _check_op([_node("ReduceMean", inputs, **attrs)], ["N", 3, 4, 5], inits, opset, grad=True)


@pytest.mark.parametrize(
    ("attrs", "sizes", "parts", "axis", "opset"),
    [
        ({"split": [2, 5]}, None, 2, 1, 11),
        ({}, [3, 1, 3], 3, 1, 13),
        ({}, None, 2, -1, 13),
        ({"num_outputs": 3}, None, 3, 1, 18),
        ({}, [1, 6], 2, 1, 18),
    ],
)
def test_split(attrs: dict, sizes: list[int] | None, parts: int, axis: int, opset: int) -> None:
    """Split by attribute, by input, equally, or into num_outputs ceil-sized chunks (last smaller)."""
    names = tuple(f"part{i}" for i in range(parts))
    inputs, inits = (["x"], {}) if sizes is None else (["x", "s"], {"s": _i64(*sizes)})
    nodes = [  # the pieces are concatenated in reverse order, so each one is checked
        _node("Split", inputs, names, axis=axis, **attrs),
        _node("Concat", list(reversed(names)), axis=axis),
    ]
    _check_op(nodes, ["N", 7, 4], inits, opset, grad=True)


@pytest.mark.parametrize(
    ("attrs", "bounds", "opset"),
    [
        ({"min": -1.0, "max": 0.5}, (), 10),
        ({"min": 0.0}, (), 10),
        ({}, (-0.5, 1.0), 11),
        ({}, (None, 0.2), 13),
        ({}, (1.0, -1.0), 13),
        ({}, (), 13),
    ],
)
def test_clip(attrs: dict, bounds: tuple[float | None, ...], opset: int) -> None:
    """Clip: attribute bounds before opset 11, optional scalar inputs after; min above max gives max."""
    inits = {f"b{i}": np.array(b, F32) for i, b in enumerate(bounds) if b is not None}
    inputs = ["x", *("" if b is None else f"b{i}" for i, b in enumerate(bounds))]
    _check_op([_node("Clip", inputs, **attrs)], ["N", 6], inits, opset, grad=True)


def test_clip_without_bounds_clamps_infinities_like_onnxruntime() -> None:
    """An absent Clip bound is the dtype's finite limit, so infinities are clamped as onnxruntime does."""
    model = make_model([_node("Clip", ["x", "", "hi"])], ["N", 3], {"hi": np.array(np.inf, F32)})
    x = np.array([[-np.inf, 0.5, np.inf]], F32)
    np.testing.assert_array_equal(build_torch_module(model)(torch.from_numpy(x)).numpy(), ort_run(model, x))


@pytest.mark.parametrize("approximate", ["none", "tanh"])
def test_gelu(approximate: str) -> None:
    """Gelu (opset 20), exact and tanh-approximated."""
    _check_op([_node("Gelu", ["x"], approximate=approximate)], ["N", 6], opset=20, grad=True)


def test_where_broadcasts_all_three_inputs() -> None:
    """Where broadcasts condition [1, 4], X [N, 3, 4] and Y [3, 1]; Equal feeds a computed condition."""
    inits = {"c": np.array([[True, False, True, False]]), "z": np.array([[1.0], [2.0], [3.0]], F32)}
    _check_op([_node("Where", ["c", "x", "z"])], ["N", 3, 4], inits, grad=True)
    nodes = [_node("Equal", ["x", "z"], ("c",)), _node("Where", ["c", "z", "x"])]
    _check_op(nodes, ["N", 3], {"z": np.array([0.0, 0.5, -2.0], F32)})


def _to_float(op: str, inputs: list[str], **attrs: object) -> list[onnx.NodeProto]:
    """An integer- or bool-valued node writing 'raw', cast to float 'y' (graph outputs are float)."""
    return [_node(op, inputs, ("raw",), **attrs), _node("Cast", ["raw"], to=TensorProto.FLOAT)]


TO_INT = _node("Cast", ["x"], ("i",), to=TensorProto.INT64)
FILL = helper.make_tensor("v", TensorProto.FLOAT, [1], [2.5])
DIVISORS = {"d": _i64(3, -3, 3, -3, 2, -2)}
FLOAT_DIVISORS = {"d": np.array([0.7, -0.7, 1.5, -1.5, 2.0, 9.0], F32)}
ADD_C = _node("Add", ["x", "c"])
# Remaining ops, one graph each: (nodes, input shape, initializers, opset).
OTHER_CASES = {
    "transpose-default": ([_node("Transpose", ["x"])], ["N", 3, 4], {}, 13),
    "transpose-perm": ([_node("Transpose", ["x"], perm=[2, 0, 1])], ["N", 3, 4], {}, 13),
    "shape-start-end": (_to_float("Shape", ["x"], start=1, end=-1), ["N", 1, 4, 3], {}, 15),
    "shape-start-negative": (_to_float("Shape", ["x"], start=-9), ["N", 1, 4, 3], {}, 15),
    "squeeze-attr": ([_node("Squeeze", ["x"], axes=[-1, 1])], ["N", 1, 4, 1], {}, 11),
    "squeeze-input": ([_node("Squeeze", ["x", "a"])], ["N", 1, 4, 1], {"a": _i64(3)}, 13),
    "squeeze-all": ([_node("Squeeze", ["x"])], ["N", 1, 4, 1], {}, 13),
    "squeeze-empty-axes": ([_node("Squeeze", ["x", "a"])], ["N", 1, 4, 1], {"a": _i64()}, 13),
    "expand": ([_node("Expand", ["x", "s"])], ["N", 1, 4], {"s": _i64(3, 1)}, 13),
    "cast-int": (_to_float("Cast", ["x"], to=TensorProto.INT32), ["N", 6], {}, 13),
    "cast-bool": (_to_float("Cast", ["x"], to=TensorProto.BOOL), ["N", 6], {}, 13),
    "constant-of-shape": (
        [_node("Shape", ["x"], ("s",)), _node("ConstantOfShape", ["s"], ("c",), value=FILL), ADD_C],
        ["N", 3], {}, 13,
    ),
    "mod-int": ([TO_INT, *_to_float("Mod", ["i", "d"])], ["N", 6], DIVISORS, 13),
    "mod-int-fmod": ([TO_INT, *_to_float("Mod", ["i", "d"], fmod=1)], ["N", 6], DIVISORS, 13),
    "mod-float": ([_node("Mod", ["x", "d"], fmod=1)], ["N", 6], FLOAT_DIVISORS, 13),
    "pow-float": ([_node("Pow", ["x", "e"])], ["N", 6], {"e": np.array(3.0, F32)}, 13),
    "pow-int-exponent": ([_node("Pow", ["x", "e"])], ["N", 6], {"e": _i64(2)}, 13),
    "sqrt": ([_node("Mul", ["x", "x"], ("sq",)), _node("Sqrt", ["sq"])], ["N", 6], {}, 13),
    "erf": ([_node("Erf", ["x"])], ["N", 6], {}, 13),
    "leaky-relu": ([_node("LeakyRelu", ["x"], alpha=0.2)], ["N", 6], {}, 13),
    "softplus": ([_node("Softplus", ["x"])], ["N", 6], {}, 13),
    "layernorm-axis": (
        [_node("LayerNormalization", ["x", "s"], axis=-2, epsilon=1e-3)],
        ["N", 3, 4], {"s": np.linspace(0.5, 2, 12, dtype=F32).reshape(3, 4)}, 17,
    ),
    "layernorm-broadcast": (
        [_node("LayerNormalization", ["x", "s", "b"], axis=1)],
        ["N", 3, 4], {"s": np.linspace(0.5, 2, 4, dtype=F32), "b": np.ones((3, 1), F32)}, 17,
    ),
}  # fmt: skip


@pytest.mark.parametrize("name", sorted(OTHER_CASES))
def test_other_ops(name: str) -> None:
    """Transpose, Shape, Squeeze, Expand, Cast, ConstantOfShape, Mod, Pow, unary ops, LayerNormalization."""
    nodes, shape, inits, opset = OTHER_CASES[name]
    _check_op(nodes, shape, inits, opset)


@pytest.mark.parametrize(
    ("node", "opset", "message"),
    [
        (_node("Gelu", ["x"], approximate="fast"), 20, "approximate"),
        (_node("Pad", ["x", "p"], mode="wrap"), 19, "mode"),
        (_node("Cast", ["x"], to=TensorProto.FLOAT16), 13, "FLOAT16"),
        (_node("LayerNormalization", ["x", "s"], stash_type=0), 17, "stash_type"),
        (_node("Clip", ["x"], min=0.0), 11, "inputs"),
        (_node("Split", ["x"], ("a", "b"), num_outputs=3), 18, "num_outputs"),
        (_node("Split", ["x"], ("a", "b"), split=[1, 1]), 13, "split"),
        (_node("ReduceMean", ["x"], axes=[1]), 18, "axes"),
        (_node("ReduceMean", ["x"], noop_with_empty_axes=1), 13, "noop_with_empty_axes"),
        (_node("Slice", ["x", "s", "e"], axes=[0]), 13, "attributes"),
        (_node("Squeeze", ["x"], axes=[0]), 13, "axes"),
        (_node("Mod", ["x", "s"], fmod=2), 13, "fmod"),
    ],
)
def test_unsupported_attributes_are_refused(node: onnx.NodeProto, opset: int, message: str) -> None:
    """Attribute values the builder cannot reproduce exactly are refused when the module is built."""
    inits = {"p": _i64(0, 1, 0, 1), "s": np.ones(2, F32), "e": _i64(1)}
    with pytest.raises(UnsupportedAttributeError, match=message):
        build_torch_module(make_model([node], ["N", 2], inits, opset=opset))


@pytest.mark.parametrize(
    ("node", "inits", "message"),
    [
        (_node("Mod", ["x", "d"]), {"d": np.ones(2, F32)}, "integer"),
        (_node("Pad", ["x", "p"], mode="reflect"), {"p": _i64(0, 2, 0, 0)}, "smaller than the dim"),
        (_node("Pad", ["x", "p"], mode="edge"), {"p": _i64(0, -1, 0, 0)}, "negative pads"),
        (_node("Squeeze", ["x", "a"]), {"a": _i64(1)}, "cannot squeeze"),
    ],
)
def test_unreproducible_runtime_values_are_refused(node: onnx.NodeProto, inits: dict, message: str) -> None:
    """Values only known at run time that the builder cannot reproduce raise instead of guessing."""
    module = build_torch_module(make_model([node], ["N", 2], inits))
    with pytest.raises(UnsupportedAttributeError, match=message):
        module(torch.ones(3, 2))


def test_split_without_sizes_is_refused_from_opset_18() -> None:
    """From opset 18 a Split needs the split input or num_outputs (onnxruntime refuses it too)."""
    nodes = [_node("Split", ["x"], ("a", "b"), axis=1), _node("Concat", ["b", "a"], axis=1)]
    module = build_torch_module(make_model(nodes, ["N", 6], opset=18))
    with pytest.raises(UnsupportedAttributeError, match="num_outputs"):
        module(torch.ones(3, 6))


# ---- ops of classic architectures (AlexNet, GoogLeNet, SqueezeNet, DenseNet, style transfer) ----------

SLOPE = np.array([0.1, -0.5, 2.0], F32).reshape(3, 1, 1)
AXES = {"a": _i64(-2, 1)}
# (onnxruntime refuses LRN with an even size and inputs that are not 4-D, so those are not compared)
CLASSIC_CASES = {
    "lrn-odd": ([_node("LRN", ["x"], size=3, alpha=0.5, beta=0.75, bias=2.0)], ["N", 5, 3, 4], {}, 13),
    "lrn-five": ([_node("LRN", ["x"], size=5, alpha=1.0, beta=0.6)], ["N", 6, 3, 2], {}, 13),
    "lrn-wide-defaults": ([_node("LRN", ["x"], size=7)], ["N", 4, 2, 2], {}, 7),
    "sum-one": ([_node("Sum", ["x"])], ["N", 3], {}, 13),
    "sum-broadcast": ([_node("Sum", ["x", "a", "b"])], ["N", 2, 3],
                      {"a": np.linspace(-1, 1, 3, dtype=F32), "b": np.ones((2, 1), F32)}, 13),
    "max-broadcast": ([_node("Max", ["x", "a", "b"])], ["N", 2, 3],
                      {"a": np.linspace(-1, 1, 3, dtype=F32), "b": np.zeros((2, 1), F32)}, 13),
    "min-broadcast": ([_node("Min", ["x", "a"])], ["N", 2, 3], {"a": np.linspace(-1, 1, 3, dtype=F32)}, 8),
    "prelu-channel": ([_node("PRelu", ["x", "s"])], ["N", 3, 2, 2], {"s": SLOPE}, 9),
    "prelu-scalar": ([_node("PRelu", ["x", "s"])], ["N", 4], {"s": np.array([0.25], F32)}, 7),
    "neg": ([_node("Neg", ["x"])], ["N", 5], {}, 13),
    "exp": ([_node("Exp", ["x"])], ["N", 5], {}, 13),
    "abs": ([_node("Abs", ["x"])], ["N", 5], {}, 13),
    "selu-default": ([_node("Selu", ["x"])], ["N", 5], {}, 13),
    "selu-attrs": ([_node("Selu", ["x"], alpha=2.0, gamma=0.5)], ["N", 5], {}, 7),
    "elu": ([_node("Elu", ["x"], alpha=0.3)], ["N", 5], {}, 13),
    "log-softmax": ([_node("LogSoftmax", ["x"])], ["N", 3, 4], {}, 13),
    "log-softmax-axis": ([_node("LogSoftmax", ["x"], axis=1)], ["N", 3, 4], {}, 13),
    "log-softmax-legacy": ([_node("LogSoftmax", ["x"])], ["N", 3, 4], {}, 11),
    "log-softmax-legacy-axis": ([_node("LogSoftmax", ["x"], axis=2)], ["N", 3, 4, 2], {}, 9),
    "reduce-sum-attr": ([_node("ReduceSum", ["x"], axes=[1, -1])], ["N", 3, 4, 5], {}, 11),
    "reduce-sum-attr-all": ([_node("ReduceSum", ["x"], keepdims=0)], ["N", 3, 4], {}, 11),
    "reduce-sum-input": ([_node("ReduceSum", ["x", "a"], keepdims=0)], ["N", 3, 4, 5], AXES, 13),
    "reduce-sum-all": ([_node("ReduceSum", ["x"])], ["N", 3, 4], {}, 13),
    "reduce-sum-noop": (
        [_node("ReduceSum", ["x", "a"], noop_with_empty_axes=1)], ["N", 3], {"a": _i64()}, 13,
    ),
    "tile": ([_node("Tile", ["x", "r"])], ["N", 2, 3], {"r": _i64(2, 1, 3)}, 13),
    "tile-ones": ([_node("Tile", ["x", "r"])], ["N", 4], {"r": _i64(1, 1)}, 13),
    "instance-norm": (
        [_node("InstanceNormalization", ["x", "s", "b"], epsilon=1e-3)], ["N", 3, 4, 5],
        {"s": np.array([0.5, 1.0, 2.0], F32), "b": np.array([0.0, -1.0, 1.0], F32)}, 13,
    ),
    "instance-norm-1d": (
        [_node("InstanceNormalization", ["x", "s", "b"])], ["N", 2, 7],
        {"s": np.array([1.5, 1.0], F32), "b": np.array([0.2, 0.0], F32)}, 7,
    ),
}  # fmt: skip


@pytest.mark.parametrize("name", sorted(CLASSIC_CASES))
def test_classic_ops(name: str) -> None:
    """LRN, Sum/Max/Min, PRelu, unary ops, Selu/Elu, LogSoftmax, ReduceSum, Tile, InstanceNormalization."""
    nodes, shape, inits, opset = CLASSIC_CASES[name]
    _check_op(nodes, shape, inits, opset, grad=not name.startswith(("max", "min", "abs", "prelu")))


@pytest.mark.parametrize("name", ["max-broadcast", "min-broadcast", "abs", "prelu-channel"])
def test_kinked_ops_have_gradients_away_from_the_kinks(name: str) -> None:
    """Max, Min, Abs and PRelu are piecewise linear: gradcheck away from ties, zeros and kinks."""
    nodes, shape, inits, opset = CLASSIC_CASES[name]
    module = build_torch_module(make_model(nodes, shape, inits, opset=opset)).double()
    x = torch.from_numpy(_op_input(shape, scale=0.9)).double()
    x = (x + 0.05 * torch.sign(x)).requires_grad_(True)  # at least 0.05 from zero
    ties = {k: torch.from_numpy(v).double() for k, v in inits.items()}
    assert all((x - t).abs().min() > 1e-4 for t in ties.values() if t.dim() <= 1)
    assert torch.autograd.gradcheck(module, (x,), eps=1e-6, atol=1e-5)


CONV_TRANSPOSE_CASES = [
    ({}, (3, 5, 4), (3, 2, 3, 3), 1),
    ({"strides": [2, 3], "pads": [1, 0, 2, 1]}, (3, 5, 4), (3, 2, 3, 3), 1),
    ({"strides": [3, 2], "output_padding": [2, 1], "pads": [0, 1, 1, 0]}, (3, 5, 4), (3, 2, 3, 3), 1),
    ({"dilations": [2, 1], "strides": [1, 2]}, (3, 5, 4), (3, 2, 3, 3), 1),
    ({"strides": [2, 2]}, (4, 5, 4), (4, 2, 3, 3), 2),
    ({"strides": [3, 2], "output_shape": [10, 8]}, (3, 5, 4), (3, 2, 3, 3), 1),
    ({"strides": [3, 2], "output_shape": [16, 10]}, (3, 5, 4), (3, 2, 3, 3), 1),
    ({"strides": [2, 2], "auto_pad": "SAME_UPPER"}, (3, 5, 4), (3, 2, 3, 3), 1),
    ({"strides": [2, 2], "auto_pad": "SAME_LOWER"}, (3, 5, 4), (3, 2, 3, 3), 1),
    ({"strides": [3, 3], "auto_pad": "SAME_UPPER"}, (3, 5, 4), (3, 2, 2, 2), 1),
    ({"strides": [2, 2], "auto_pad": "SAME_LOWER", "output_shape": [9, 10]}, (3, 5, 4), (3, 2, 3, 3), 1),
    ({"strides": [2, 2], "auto_pad": "VALID"}, (3, 5, 4), (3, 2, 3, 3), 1),
    ({"strides": [2], "pads": [1, 2]}, (3, 6), (3, 2, 4), 1),
    ({"strides": [2, 1, 2]}, (3, 3, 4, 3), (3, 2, 2, 3, 2), 1),
]


@pytest.mark.parametrize(("attrs", "x_shape", "w_shape", "group"), CONV_TRANSPOSE_CASES)
@pytest.mark.parametrize("bias", [True, False])
def test_conv_transpose(attrs: dict, x_shape: tuple, w_shape: tuple, group: int, bias: bool) -> None:
    """ConvTranspose: strides, asymmetric pads, output_padding, dilations, groups, output_shape, auto_pad."""
    rng = np.random.default_rng(3)
    inits = {"w": rng.normal(size=w_shape).astype(F32)}
    if bias:
        inits["b"] = rng.normal(size=(w_shape[1] * group,)).astype(F32)
    node = _node("ConvTranspose", ["x", "w", *(["b"] if bias else [])], group=group, **attrs)
    _check_op([node], ["N", *x_shape], inits, grad=bias and len(x_shape) == 3)


@pytest.mark.parametrize(
    ("node", "message"),
    [
        (_node("LRN", ["x"], size=0), "size"),
        (_node("ConvTranspose", ["x", "w"], auto_pad="FULL"), "auto_pad"),
        (_node("ReduceSum", ["x"], axes=[1]), "axes"),
    ],
)
def test_classic_op_attributes_are_refused(node: onnx.NodeProto, message: str) -> None:
    """Attribute values outside the ops' definitions are refused when the module is built."""
    with pytest.raises(UnsupportedAttributeError, match=message):
        build_torch_module(make_model([node], ["N", 2], {"w": np.ones((2, 1, 1), F32)}, opset=13))
