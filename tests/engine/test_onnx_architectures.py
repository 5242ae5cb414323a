"""ResNet, WideResNet and ViT exports through the graph builder, plus single-op ONNX semantics checks."""

from collections.abc import Callable, Iterator

import numpy as np
import onnx
import pytest
import torch
import torch.nn.functional as F
from onnx import TensorProto, helper
from torch import nn

from tests.engine.onnx_fixtures import export_onnx, export_onnx_dynamo, make_model, ort_run
from worker.engine.model_intake import validate_onnx
from worker.engine.onnx_graph import UnsupportedAttributeError, build_torch_module

SHAPE = (3, 32, 32)
CLASSES = 10
RTOL = 1e-4


class BasicBlock(nn.Module):
    """ResNet basic block; a strided 1x1 conv + BatchNorm shortcut when the shape changes."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        """Create the layers."""
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout)
        self.conv2, self.bn2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout)
        self.shortcut = nn.Sequential()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """conv-bn-relu-conv-bn plus the shortcut, then relu."""
        out = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        return F.relu(out + self.shortcut(x))


class ResNet(nn.Module):
    """A two-block ResNet with an AdaptiveAvgPool head."""

    def __init__(self) -> None:
        """Create the layers."""
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, 1, 1, bias=False), nn.BatchNorm2d(8), nn.ReLU())
        self.blocks = nn.Sequential(BasicBlock(8, 8, 1), BasicBlock(8, 16, 2))
        self.pool, self.fc = nn.AdaptiveAvgPool2d(1), nn.Linear(16, CLASSES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return logits."""
        return self.fc(torch.flatten(self.pool(self.blocks(self.stem(x))), 1))


class WideBlock(nn.Module):
    """Pre-activation wide block (bn-relu-conv twice, dropout between), 1x1 conv shortcut if needed."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        """Create the layers."""
        super().__init__()
        self.bn1, self.conv1 = nn.BatchNorm2d(cin), nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn2, self.conv2 = nn.BatchNorm2d(cout), nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.drop = nn.Dropout(0.3)
        self.shortcut = None if cin == cout and stride == 1 else nn.Conv2d(cin, cout, 1, stride, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Residual sum of the pre-activated branch and the shortcut."""
        out = F.relu(self.bn1(x))
        shortcut = x if self.shortcut is None else self.shortcut(out)
        out = self.conv2(self.drop(F.relu(self.bn2(self.conv1(out)))))
        return out + shortcut


class WideResNet(nn.Module):
    """WRN-10-2 with tiny base widths: three groups of one block, widen factor 2."""

    def __init__(self, widen: int = 2) -> None:
        """Create the layers."""
        super().__init__()
        widths = [4, 4 * widen, 8 * widen, 16 * widen]
        self.conv = nn.Conv2d(3, widths[0], 3, 1, 1, bias=False)
        self.blocks = nn.Sequential(
            *(WideBlock(widths[i], widths[i + 1], 1 if i == 0 else 2) for i in range(3))
        )
        self.bn, self.fc = nn.BatchNorm2d(widths[3]), nn.Linear(widths[3], CLASSES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return logits."""
        out = F.relu(self.bn(self.blocks(self.conv(x))))
        return self.fc(F.adaptive_avg_pool2d(out, 1).flatten(1))


class ManualAttention(nn.Module):
    """Hand-written multi-head self-attention: fused qkv, unbind, scaled softmax."""

    def __init__(self, dim: int, heads: int) -> None:
        """Create the layers."""
        super().__init__()
        self.qkv, self.proj, self.heads = nn.Linear(dim, 3 * dim), nn.Linear(dim, dim), heads

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Attend over the tokens."""
        b, n, d = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4).unbind(0)
        weights = ((q @ k.transpose(-2, -1)) * (d // self.heads) ** -0.5).softmax(dim=-1)
        return self.proj((weights @ v).transpose(1, 2).reshape(b, n, d))


class TinyViT(nn.Module):
    """Patch embedding, class token, learned positions, two pre-norm blocks, LayerNorm + linear head."""

    def __init__(self, manual: bool = False, dim: int = 16, heads: int = 2, patch: int = 8) -> None:
        """Create the layers; manual=True uses ManualAttention and the tanh GELU."""
        super().__init__()
        self.manual = manual
        self.embed = nn.Conv2d(3, dim, patch, patch)
        self.cls = nn.Parameter(torch.randn(1, 1, dim) * 0.1)
        self.pos = nn.Parameter(torch.randn(1, (32 // patch) ** 2 + 1, dim) * 0.1)
        self.norms = nn.ModuleList(nn.LayerNorm(dim) for _ in range(4))
        attention = (
            (lambda: ManualAttention(dim, heads))
            if manual
            else (lambda: nn.MultiheadAttention(dim, heads, batch_first=True))
        )
        self.attn = nn.ModuleList(attention() for _ in range(2))
        gelu = nn.GELU("tanh" if manual else "none")
        self.mlps = nn.ModuleList(
            nn.Sequential(nn.Linear(dim, 2 * dim), gelu, nn.Linear(2 * dim, dim)) for _ in range(2)
        )
        self.norm, self.head = nn.LayerNorm(dim), nn.Linear(dim, CLASSES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return logits from the class token."""
        tokens = self.embed(x).flatten(2).transpose(1, 2)
        tokens = torch.cat([self.cls.expand(tokens.shape[0], -1, -1), tokens], dim=1) + self.pos
        for i, (attn, mlp) in enumerate(zip(self.attn, self.mlps, strict=True)):
            h = self.norms[2 * i](tokens)
            tokens = tokens + (attn(h) if self.manual else attn(h, h, h, need_weights=False)[0])
            tokens = tokens + mlp(self.norms[2 * i + 1](tokens))
        return self.head(self.norm(tokens)[:, 0])


class NormalizedCNN(nn.Module):
    """Normalises its input inside the graph, (x - mean) / std, before a small CNN."""

    def __init__(self) -> None:
        """Create the layers and the constant statistics."""
        super().__init__()
        self.register_buffer("mean", torch.tensor([0.49, 0.48, 0.45]).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor([0.25, 0.24, 0.26]).view(1, 3, 1, 1))
        self.net = nn.Sequential(
            nn.Conv2d(3, 4, 3, 2, 1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, CLASSES)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return logits."""
        return self.net((x - self.mean) / self.std)


@pytest.fixture(autouse=True, scope="module")
def _one_thread() -> Iterator[None]:
    """Run single-threaded: these tiny models are faster so, and 2 threads crawl on a busy shared CPU."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def _seeded(factory: Callable[[], nn.Module]) -> nn.Module:
    """A model with deterministic weights and non-trivial BatchNorm statistics, in eval mode."""
    torch.manual_seed(0)
    model = factory()
    with torch.no_grad():
        for bn in (m for m in model.modules() if isinstance(m, nn.BatchNorm2d)):
            bn.running_mean.uniform_(-0.3, 0.3)
            bn.running_var.uniform_(0.5, 2.0)
            bn.weight.uniform_(0.5, 1.5)
            bn.bias.uniform_(-0.2, 0.2)
    return model.eval()


VIT_OPS = {
    "LayerNormalization",
    "Softmax",
    "Transpose",
    "Slice",
    "Expand",
    "Where",
    "Equal",
    "Cast",
    "Squeeze",
}
# case id -> (model factory, exporter: an opset for dynamo=False or "dynamo", ops the graph must contain)
CASES: dict[str, tuple[Callable[[], nn.Module], int | str | None, set[str]]] = {
    "resnet-17": (ResNet, 17, {"Conv", "Relu", "Add", "GlobalAveragePool"}),
    "resnet-default": (ResNet, None, {"Conv", "Relu", "Add", "GlobalAveragePool"}),
    "resnet-dynamo": (ResNet, "dynamo", {"Conv", "Relu", "Add", "ReduceMean"}),
    "wide_resnet-17": (WideResNet, 17, {"BatchNormalization", "Conv", "Add", "Relu"}),
    "wide_resnet-default": (WideResNet, None, {"BatchNormalization", "Conv", "Add", "Relu"}),
    "vit-17": (TinyViT, 17, VIT_OPS | {"Erf", "Mod", "ConstantOfShape", "Sqrt"}),
    "vit-default": (TinyViT, None, VIT_OPS | {"Gelu", "Mod", "ConstantOfShape"}),
    "vit-14": (TinyViT, 14, {"ReduceMean", "Pow", "Sqrt", "Sub", "Erf"}),
    "vit-dynamo": (TinyViT, "dynamo", {"LayerNormalization", "Gelu", "Softmax", "Slice"}),
    "vit_manual-17": (lambda: TinyViT(manual=True), 17, VIT_OPS | {"Split", "Pow", "Tanh"}),
    "vit_manual-default": (lambda: TinyViT(manual=True), None, VIT_OPS | {"Split", "Pow", "Gelu"}),
    "normalized-17": (NormalizedCNN, 17, {"Sub", "Div", "Conv"}),
    "normalized-default": (NormalizedCNN, None, {"Sub", "Div", "Conv"}),
}


@pytest.fixture(scope="module", params=sorted(CASES))
def case(request: pytest.FixtureRequest) -> tuple[str, nn.Module, bytes]:
    """(case id, torch model, exported ONNX bytes)."""
    factory, exporter, _ = CASES[request.param]
    model = _seeded(factory)
    data = (
        export_onnx_dynamo(model, SHAPE)
        if exporter == "dynamo"
        else export_onnx(model, SHAPE, opset=exporter)
    )
    return request.param, model, data


def _images(batch: int, seed: int = 0) -> np.ndarray:
    """Uniform [0, 1) float32 images."""
    return np.random.default_rng(seed).uniform(0, 1, size=(batch, *SHAPE)).astype(np.float32)


def _close(got: torch.Tensor | np.ndarray, expected: torch.Tensor | np.ndarray) -> None:
    """Equal up to RTOL relative to the largest expected magnitude (logits or gradients)."""
    got, expected = torch.as_tensor(got), torch.as_tensor(expected)
    scale = max(float(expected.abs().max()), 1e-6)
    torch.testing.assert_close(got, expected, rtol=RTOL, atol=RTOL * scale)


def test_export_contains_the_ops_under_test(case: tuple[str, nn.Module, bytes]) -> None:
    """Each export emits the ops the case is meant to exercise (guards against exporter drift)."""
    name, _, data = case
    assert CASES[name][2] <= {node.op_type for node in onnx.load_from_string(data).graph.node}


@pytest.mark.parametrize("batch", [1, 5])
def test_matches_onnxruntime_and_torch(case: tuple[str, nn.Module, bytes], batch: int) -> None:
    """The built module equals onnxruntime and the original model, for batch sizes 1 and 5."""
    _, model, data = case
    x = _images(batch, seed=batch)
    got = build_torch_module(onnx.load_from_string(data))(torch.from_numpy(x)).detach()
    assert tuple(got.shape) == (batch, CLASSES)
    _close(got, ort_run(data, x))
    with torch.no_grad():
        _close(got, model(torch.from_numpy(x)))


def test_input_gradients_match_torch(case: tuple[str, nn.Module, bytes]) -> None:
    """Input gradients through the built module equal the original model's."""
    _, model, data = case
    module = build_torch_module(onnx.load_from_string(data))
    x = torch.from_numpy(_images(3)).requires_grad_(True)
    x_ref = x.detach().clone().requires_grad_(True)
    weights = torch.linspace(-1.0, 2.0, CLASSES)
    (module(x) * weights).sum().backward()
    (model(x_ref) * weights).sum().backward()
    assert x.grad is not None and x_ref.grad is not None and x.grad.abs().sum() > 0
    _close(x.grad, x_ref.grad)


def test_intake_reports_white_box(case: tuple[str, nn.Module, bytes]) -> None:
    """Model intake accepts the export as white-box with no missing ops."""
    report = validate_onnx(case[2], SHAPE, CLASSES)
    assert report.white_box and report.missing_ops == [], report.notes


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
