"""Classic ImageNet-style architectures through the full ONNX intake, exported the way model zoos did.

No torchvision here: each model is a tiny module with the original's layer types and patterns
(AlexNet's LRN, VGG's view-flatten, ResNet-50 bottlenecks summed with a Sum node as Caffe2 exports
did, an Inception block, a DenseNet block, SqueezeNet fire modules, ShuffleNet's channel shuffle).
Each is exported old-style (fixed batch 1, opset 9; AlexNet also opset 6, which intake upgrades)
and modern (opset 17, dynamic batch), and must come out white-box within parity tolerance.
"""

import io
import warnings
from collections.abc import Callable

import numpy as np
import onnx
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from tests.engine.onnx_fixtures import export_onnx
from worker.engine.models.intake import load_onnx_module, validate_onnx

SHAPE = (3, 32, 32)
CLASSES = 10
RTOL = 1e-4


class _LRN(torch.autograd.Function):
    """local_response_norm exported as one ONNX LRN node (as Caffe-era exporters wrote it)."""

    @staticmethod
    def forward(ctx: object, x: torch.Tensor, size: int, alpha: float, beta: float, k: float) -> torch.Tensor:
        """torch's LRN (odd sizes centre the window as ONNX does)."""
        return F.local_response_norm(x, size, alpha, beta, k)

    @staticmethod
    def symbolic(g: object, x: object, size: int, alpha: float, beta: float, k: float) -> object:
        """Emit LRN."""
        return g.op("LRN", x, size_i=size, alpha_f=alpha, beta_f=beta, bias_f=k)  # type: ignore[attr-defined]


class _Sum(torch.autograd.Function):
    """Elementwise sum exported as one ONNX Sum node (Caffe2 exports wrote residuals this way)."""

    @staticmethod
    def forward(ctx: object, *xs: torch.Tensor) -> torch.Tensor:
        """Add the inputs."""
        return torch.stack(xs).sum(0)

    @staticmethod
    def symbolic(g: object, *xs: object) -> object:
        """Emit Sum."""
        return g.op("Sum", *xs)  # type: ignore[attr-defined]


class LRN(nn.Module):
    """An LRN layer that exports as an LRN node."""

    def __init__(self, size: int = 5, alpha: float = 1e-3, beta: float = 0.75, k: float = 2.0) -> None:
        """Keep the parameters (AlexNet's, with a larger alpha so the layer matters at tiny widths)."""
        super().__init__()
        self.args = (size, alpha, beta, k)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Normalise across channels."""
        if torch.onnx.is_in_onnx_export():
            return _LRN.apply(x, *self.args)
        return F.local_response_norm(x, *self.args)


def residual_sum(*xs: torch.Tensor) -> torch.Tensor:
    """Add tensors; exported as one Sum node."""
    if torch.onnx.is_in_onnx_export():
        return _Sum.apply(*xs)
    return torch.stack(xs).sum(0)


def conv(cin: int, cout: int, k: int, stride: int = 1, **kw: object) -> nn.Sequential:
    """Conv + BatchNorm + ReLU."""
    return nn.Sequential(
        nn.Conv2d(cin, cout, k, stride, k // 2, bias=False, **kw), nn.BatchNorm2d(cout), nn.ReLU()
    )


class AlexNet(nn.Module):
    """Conv, ReLU, LRN, overlapping max pools, dropout and three fully connected layers."""

    def __init__(self) -> None:
        """Create the layers."""
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 8, 5, padding=2), nn.ReLU(), LRN(), nn.MaxPool2d(3, 2),
            nn.Conv2d(8, 12, 3, padding=1), nn.ReLU(), LRN(), nn.MaxPool2d(3, 2),
            nn.Conv2d(12, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 16, 3, padding=1), nn.ReLU(),
            nn.MaxPool2d(2),
        )  # fmt: skip
        self.classifier = nn.Sequential(
            nn.Dropout(), nn.Linear(16 * 3 * 3, 32), nn.ReLU(), nn.Dropout(), nn.Linear(32, CLASSES)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return logits."""
        return self.classifier(torch.flatten(self.features(x), 1))


class VGG(nn.Module):
    """Stacked 3x3 conv + BatchNorm blocks, max pools, and torchvision's old x.view(x.size(0), -1)."""

    def __init__(self) -> None:
        """Create the layers."""
        super().__init__()
        self.features = nn.Sequential(
            conv(3, 8, 3), conv(8, 8, 3), nn.MaxPool2d(2), conv(8, 12, 3), nn.MaxPool2d(2)
        )
        self.classifier = nn.Sequential(
            nn.Linear(12 * 8 * 8, 24), nn.ReLU(), nn.Dropout(), nn.Linear(24, CLASSES)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return logits."""
        h = self.features(x)
        return self.classifier(h.view(h.size(0), -1))


class Bottleneck(nn.Module):
    """ResNet-50 bottleneck: 1x1 reduce, 3x3 (strided), 1x1 expand x4, projection shortcut, Sum."""

    def __init__(self, cin: int, width: int, stride: int) -> None:
        """Create the layers."""
        super().__init__()
        self.body = nn.Sequential(
            conv(cin, width, 1), conv(width, width, 3, stride),
            nn.Conv2d(width, 4 * width, 1, bias=False), nn.BatchNorm2d(4 * width),
        )  # fmt: skip
        self.shortcut = nn.Sequential()
        if stride != 1 or cin != 4 * width:
            self.shortcut = nn.Sequential(
                nn.Conv2d(cin, 4 * width, 1, stride, bias=False), nn.BatchNorm2d(4 * width)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Residual sum, then ReLU."""
        return F.relu(residual_sum(self.body(x), self.shortcut(x)))


class ResNet50ish(nn.Module):
    """7x7-style stem (3x3 here) with max pool, two bottlenecks, global average pool, fc."""

    def __init__(self) -> None:
        """Create the layers."""
        super().__init__()
        self.stem = nn.Sequential(conv(3, 8, 3), nn.MaxPool2d(3, 2, 1))
        self.layers = nn.Sequential(Bottleneck(8, 4, 1), Bottleneck(16, 6, 2))
        self.fc = nn.Linear(24, CLASSES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return logits."""
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(self.layers(self.stem(x)), 1), 1))


class Inception(nn.Module):
    """GoogLeNet stem (conv, max pool, LRN) and one Inception block: 1x1, 3x3, 5x5 and pool branches."""

    def __init__(self) -> None:
        """Create the layers."""
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(3, 2, 1), LRN())
        relu = nn.ReLU
        self.b1 = nn.Sequential(nn.Conv2d(8, 4, 1), relu())
        self.b3 = nn.Sequential(nn.Conv2d(8, 4, 1), relu(), nn.Conv2d(4, 6, 3, padding=1), relu())
        self.b5 = nn.Sequential(nn.Conv2d(8, 2, 1), relu(), nn.Conv2d(2, 4, 5, padding=2), relu())
        self.bp = nn.Sequential(nn.MaxPool2d(3, 1, 1), nn.Conv2d(8, 4, 1), relu())
        self.head = nn.Sequential(
            nn.AvgPool2d(4), nn.Flatten(), nn.Dropout(0.4), nn.Linear(18 * 4 * 4, CLASSES)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Concatenate the branches."""
        h = self.stem(x)
        return self.head(torch.cat([self.b1(h), self.b3(h), self.b5(h), self.bp(h)], 1))


class DenseNet(nn.Module):
    """A dense block (BN-ReLU-1x1-BN-ReLU-3x3 layers, each concatenated on), a transition, a head."""

    def __init__(self, growth: int = 4) -> None:
        """Create the layers (bottleneck width 2 * growth)."""
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1, bias=False)
        self.layers = nn.ModuleList(
            nn.Sequential(
                nn.BatchNorm2d(8 + i * growth), nn.ReLU(), nn.Conv2d(8 + i * growth, 8, 1, bias=False),
                nn.BatchNorm2d(8), nn.ReLU(), nn.Conv2d(8, growth, 3, padding=1, bias=False),
            )
            for i in range(3)
        )  # fmt: skip
        self.transition = nn.Sequential(
            nn.BatchNorm2d(20), nn.ReLU(), nn.Conv2d(20, 10, 1, bias=False), nn.AvgPool2d(2)
        )
        self.norm, self.fc = nn.BatchNorm2d(10), nn.Linear(10, CLASSES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return logits."""
        features = self.stem(x)
        for layer in self.layers:
            features = torch.cat([features, layer(features)], 1)
        h = F.relu(self.norm(self.transition(features)))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(h, 1), 1))


class Fire(nn.Module):
    """SqueezeNet fire module: 1x1 squeeze, then 1x1 and 3x3 expands concatenated."""

    def __init__(self, cin: int, squeeze: int, expand: int) -> None:
        """Create the layers."""
        super().__init__()
        self.squeeze = nn.Conv2d(cin, squeeze, 1)
        self.e1, self.e3 = nn.Conv2d(squeeze, expand, 1), nn.Conv2d(squeeze, expand, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Squeeze and expand."""
        s = F.relu(self.squeeze(x))
        return torch.cat([F.relu(self.e1(s)), F.relu(self.e3(s))], 1)


class SqueezeNet(nn.Module):
    """Strided stem, ceil-mode max pools, fire modules, dropout and a 1x1 conv classifier."""

    def __init__(self) -> None:
        """Create the layers."""
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 8, 3, 2), nn.ReLU(), nn.MaxPool2d(3, 2, ceil_mode=True),
            Fire(8, 4, 6), Fire(12, 4, 6), nn.MaxPool2d(3, 2, ceil_mode=True), Fire(12, 6, 8),
        )  # fmt: skip
        self.classifier = nn.Sequential(
            nn.Dropout(), nn.Conv2d(16, CLASSES, 1), nn.ReLU(), nn.AdaptiveAvgPool2d(1)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return logits."""
        return torch.flatten(self.classifier(self.features(x)), 1)


def channel_shuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
    """ShuffleNet's shuffle: view as groups, transpose, flatten back."""
    b, c, h, w = x.size()
    return x.view(b, groups, c // groups, h, w).transpose(1, 2).contiguous().view(b, c, h, w)


class ShuffleUnit(nn.Module):
    """ShuffleNet v2 unit: split the channels, transform one half (1x1, depthwise 3x3, 1x1), shuffle."""

    def __init__(self, channels: int) -> None:
        """Create the layers."""
        super().__init__()
        half = channels // 2
        self.branch = nn.Sequential(
            conv(half, half, 1),
            nn.Conv2d(half, half, 3, 1, 1, groups=half, bias=False), nn.BatchNorm2d(half),
            conv(half, half, 1),
        )  # fmt: skip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Split, transform, concatenate, shuffle."""
        keep, change = x.chunk(2, dim=1)
        return channel_shuffle(torch.cat([keep, self.branch(change)], 1), 2)


class ShuffleNet(nn.Module):
    """Strided stem, a grouped 1x1 conv, two shuffle units, global pool, fc."""

    def __init__(self) -> None:
        """Create the layers."""
        super().__init__()
        self.stem = nn.Sequential(conv(3, 8, 3, 2), nn.MaxPool2d(3, 2, 1), conv(8, 8, 1, groups=2))
        self.units = nn.Sequential(ShuffleUnit(8), ShuffleUnit(8))
        self.fc = nn.Linear(8, CLASSES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return logits."""
        return self.fc(self.units(self.stem(x)).mean((2, 3)))


ARCHITECTURES: dict[str, tuple[Callable[[], nn.Module], set[str]]] = {
    "alexnet": (AlexNet, {"LRN", "MaxPool", "Gemm"}),
    "vgg": (VGG, {"Conv", "MaxPool", "Reshape"}),  # the exporter folds BatchNorm into the convs
    "resnet50": (ResNet50ish, {"Sum", "Conv", "GlobalAveragePool"}),
    "inception": (Inception, {"Concat", "LRN", "AveragePool"}),
    "densenet": (DenseNet, {"Concat", "BatchNormalization", "AveragePool"}),
    "squeezenet": (SqueezeNet, {"Concat", "MaxPool", "GlobalAveragePool"}),
    "shufflenet": (ShuffleNet, {"Transpose", "Reshape", "Concat", "ReduceMean"}),
}
# x.view(x.size(0), ...) exported at batch 1 bakes the batch into Reshape: these run one sample at a time
BAKED_BATCH = {"vgg", "shufflenet"}
# export id -> (architecture, opset, fixed batch of 1)
EXPORTS = {f"{name}-old": (name, 9, True) for name in ARCHITECTURES}
EXPORTS |= {f"{name}-17": (name, 17, False) for name in ARCHITECTURES}
EXPORTS["alexnet-6"] = ("alexnet", 6, True)


def _seeded(factory: Callable[[], nn.Module]) -> nn.Module:
    """Deterministic weights and non-trivial BatchNorm statistics, in eval mode."""
    torch.manual_seed(0)
    model = factory()
    with torch.no_grad():
        for bn in (m for m in model.modules() if isinstance(m, nn.BatchNorm2d)):
            bn.running_mean.uniform_(-0.3, 0.3)
            bn.running_var.uniform_(0.5, 2.0)
            bn.weight.uniform_(0.5, 1.5)
            bn.bias.uniform_(-0.2, 0.2)
    return model.eval()


def _export(model: nn.Module, opset: int, fixed: bool) -> bytes:
    """Export with the TorchScript exporter; at opset < 9 too (the intake upgrades those)."""
    if opset >= 9:
        return export_onnx(model, SHAPE, dynamic=not fixed, opset=opset)
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (torch.rand(1, *SHAPE),), buffer, dynamo=False, opset_version=opset)
    return buffer.getvalue()


@pytest.fixture(scope="module", params=sorted(EXPORTS))
def exported(request: pytest.FixtureRequest) -> tuple[str, nn.Module, bytes]:
    """(export id, torch model, ONNX bytes)."""
    name, opset, fixed = EXPORTS[request.param]
    model = _seeded(ARCHITECTURES[name][0])
    return request.param, model, _export(model, opset, fixed)


def _images(batch: int, seed: int = 0) -> np.ndarray:
    """Uniform [0, 1) float32 images."""
    return np.random.default_rng(seed).uniform(0, 1, size=(batch, *SHAPE)).astype(np.float32)


def _close(got: torch.Tensor, expected: torch.Tensor) -> None:
    """Equal up to RTOL relative to the largest expected magnitude."""
    scale = max(float(expected.abs().max()), 1e-6)
    torch.testing.assert_close(got, expected, rtol=RTOL, atol=RTOL * scale)


def test_export_has_the_layers_and_style(exported: tuple[str, nn.Module, bytes]) -> None:
    """Each export holds its architecture's ops; old-style exports declare batch 1 and their opset."""
    export_id, _, data = exported
    name, opset, fixed = EXPORTS[export_id]
    model = onnx.load_from_string(data)
    assert ARCHITECTURES[name][1] <= {node.op_type for node in model.graph.node}
    assert model.opset_import[0].version == opset
    first = model.graph.input[0].type.tensor_type.shape.dim[0]
    assert first.HasField("dim_value") == fixed


def test_intake_accepts_white_box_within_parity(exported: tuple[str, nn.Module, bytes]) -> None:
    """validate_onnx accepts the export white-box, with no missing ops, within parity tolerance.

    Fixed-batch exports run whole batches unless the graph hard-codes batch 1 (then chunks of one).
    """
    export_id, _, data = exported
    report = validate_onnx(data, SHAPE, CLASSES)
    assert report.white_box and report.missing_ops == [], report.notes
    assert report.max_abs_diff is not None and report.onnx_opset is not None and report.onnx_opset >= 9
    name, _, fixed = EXPORTS[export_id]
    expected = "dynamic" if not fixed else "chunked" if name in BAKED_BATCH else "symbolic"
    assert report.batch_mode == expected, report.notes


def test_loaded_module_matches_torch_with_gradients(exported: tuple[str, nn.Module, bytes]) -> None:
    """The loaded module equals the original on a batch of 3, and so do its input gradients."""
    _, model, data = exported
    module = load_onnx_module(data)
    x = torch.from_numpy(_images(3)).requires_grad_(True)
    x_ref = x.detach().clone().requires_grad_(True)
    out, expected = module(x), model(x_ref)
    _close(out.detach(), expected.detach())
    weights = torch.linspace(-1.0, 2.0, CLASSES)
    (out * weights).sum().backward()
    (expected * weights).sum().backward()
    assert x.grad is not None and x_ref.grad is not None and x.grad.abs().sum() > 0
    _close(x.grad, x_ref.grad)
