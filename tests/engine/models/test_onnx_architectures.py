"""ResNet, WideResNet and ViT exports through the graph builder, against onnxruntime and torch."""

from collections.abc import Callable

import numpy as np
import onnx
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from tests.engine.onnx_fixtures import export_onnx, export_onnx_dynamo, ort_run
from worker.engine.models.intake import validate_onnx
from worker.engine.models.onnx_graph import build_torch_module

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
