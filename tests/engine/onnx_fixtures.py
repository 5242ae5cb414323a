"""Shared helpers for the ONNX graph and model intake tests: small torch models and graph builders."""

import io
import warnings

import numpy as np
import onnx
import onnxruntime as ort
import torch
from onnx import TensorProto, helper, numpy_helper
from torch import nn

OPSET = 17


def export_onnx(
    model: nn.Module, input_shape: tuple[int, ...], *, dynamic: bool = True, opset: int | None = OPSET
) -> bytes:
    """Export with the TorchScript exporter (dynamo=False), optionally with a dynamic batch axis.

    opset=None uses the exporter's default opset.
    """
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model.eval(),
            (torch.rand(1, *input_shape),),
            buffer,
            dynamo=False,
            opset_version=opset,
            input_names=["input"],
            output_names=["logits"],
            dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}} if dynamic else None,
        )
    return buffer.getvalue()


def export_onnx_dynamo(model: nn.Module, input_shape: tuple[int, ...]) -> bytes:
    """Export with the torch.export-based exporter (dynamo=True, default opset) and a dynamic batch."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(
            model.eval(),
            (torch.rand(2, *input_shape),),  # batch 2: torch.export specialises sizes 0 and 1
            dynamo=True,
            verbose=False,
            input_names=["input"],
            output_names=["logits"],
            dynamic_shapes=({0: torch.export.Dim("batch")},),
        )
    assert program is not None
    return program.model_proto.SerializeToString()


def ort_run(data: bytes | onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    """Run a model with onnxruntime on CPU."""
    if isinstance(data, onnx.ModelProto):
        data = data.SerializeToString()
    session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: x})[0]


def make_model(
    nodes: list[onnx.NodeProto],
    input_shape: list[int | str],
    initializers: dict[str, np.ndarray] | None = None,
    *,
    opset: int = OPSET,
    input_type: int = TensorProto.FLOAT,
    outputs: tuple[str, ...] = ("y",),
    output_shape: list[int | str] | None = None,
    extra_inputs: tuple[str, ...] = (),
) -> onnx.ModelProto:
    """A one-input graph from nodes; the input is 'x', outputs default to 'y'."""
    inputs = [helper.make_tensor_value_info("x", input_type, input_shape)]
    inputs += [helper.make_tensor_value_info(name, TensorProto.FLOAT, None) for name in extra_inputs]
    graph = helper.make_graph(
        nodes,
        "g",
        inputs,
        [helper.make_tensor_value_info(name, TensorProto.FLOAT, output_shape) for name in outputs],
        [numpy_helper.from_array(value, name) for name, value in (initializers or {}).items()],
    )
    opsets = [helper.make_opsetid("", opset), helper.make_opsetid("com.example", 1)]
    return helper.make_model(graph, opset_imports=opsets)


def linear_head(
    features: int, classes: int, seed: int = 0
) -> tuple[list[onnx.NodeProto], dict[str, np.ndarray]]:
    """Flatten + Gemm nodes from 'h' to 'y', with their weights."""
    rng = np.random.default_rng(seed)
    nodes = [
        helper.make_node("Flatten", ["h"], ["flat"], axis=1),
        helper.make_node("Gemm", ["flat", "W", "B"], ["y"], transB=1),
    ]
    weights = {
        "W": rng.normal(size=(classes, features)).astype(np.float32),
        "B": rng.normal(size=(classes,)).astype(np.float32),
    }
    return nodes, weights


class MLP(nn.Module):
    """Flatten + two Linear layers."""

    def __init__(self, features: int = 12, classes: int = 4) -> None:
        """Create the layers."""
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(features, 16), nn.ReLU(), nn.Linear(16, classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return logits (or probabilities for SoftmaxNet)."""
        return self.net(x)


class BatchNormCNN(nn.Module):
    """Conv, ReLU, BatchNorm (not fused: it follows the ReLU), MaxPool, AvgPool, Dropout, Linear."""

    def __init__(self, classes: int = 5) -> None:
        """Create the layers."""
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 6, 3, padding=1),
            nn.ReLU(),
            nn.BatchNorm2d(6),
            nn.MaxPool2d(2),
            nn.AvgPool2d(3, stride=1, padding=1, count_include_pad=False),
            nn.Dropout(0.3),
        )
        self.head = nn.Linear(6 * 4 * 4, classes)
        with torch.no_grad():
            bn = self.features[2]
            bn.running_mean.uniform_(-0.5, 0.5)
            bn.running_var.uniform_(0.5, 2.0)
            bn.weight.uniform_(0.5, 1.5)
            bn.bias.uniform_(-0.2, 0.2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return logits (or probabilities for SoftmaxNet)."""
        return self.head(torch.flatten(self.features(x), 1))


class GlobalPoolCNN(nn.Module):
    """Conv layers ending in AdaptiveAvgPool2d(1) (exported as GlobalAveragePool)."""

    def __init__(self, classes: int = 3) -> None:
        """Create the layers."""
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Conv2d(4, 8, 3, stride=2), nn.ReLU(), nn.AdaptiveAvgPool2d(1)
        )
        self.head = nn.Linear(8, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return logits (or probabilities for SoftmaxNet)."""
        return self.head(self.body(x).flatten(1))


class GroupedConvNet(nn.Module):
    """Grouped, strided, dilated and ceil-mode pooling layers."""

    def __init__(self, classes: int = 4) -> None:
        """Create the layers."""
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(4, 8, 3, stride=2, padding=(1, 2), dilation=2, groups=2),
            nn.ReLU(),
            nn.Conv2d(8, 8, 3, padding=1, groups=8),
            nn.MaxPool2d(3, stride=2, ceil_mode=True),
            nn.AvgPool2d(2, stride=1, padding=1, count_include_pad=True),
        )
        self.head = nn.Linear(8 * 4 * 4, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return logits (or probabilities for SoftmaxNet)."""
        return self.head(self.body(x).flatten(1))


class SoftmaxNet(nn.Module):
    """A small classifier whose output is Softmax probabilities."""

    def __init__(self, classes: int = 6) -> None:
        """Create the layers."""
        super().__init__()
        self.fc = nn.Linear(10, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return logits (or probabilities for SoftmaxNet)."""
        return torch.softmax(self.fc(x), dim=-1)


class ViewNet(nn.Module):
    """Conv then x.view(x.size(0), -1): exported as Shape/Gather/Unsqueeze/Concat/Reshape."""

    def __init__(self, classes: int = 3) -> None:
        """Create the layers."""
        super().__init__()
        self.conv = nn.Conv2d(2, 3, 3)
        self.fc = nn.Linear(3 * 4 * 4, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return logits (or probabilities for SoftmaxNet)."""
        h = torch.relu(self.conv(x))
        return self.fc(h.view(h.size(0), -1))


# name -> (model factory, input shape, op types the exported graph must contain)
EXPORTED_CASES: dict[str, tuple[type[nn.Module], tuple[int, ...], set[str]]] = {
    "mlp": (MLP, (3, 4), {"Flatten", "Gemm", "Relu"}),
    "batchnorm_cnn": (BatchNormCNN, (3, 8, 8), {"Conv", "BatchNormalization", "MaxPool", "AveragePool"}),
    "global_pool_cnn": (GlobalPoolCNN, (1, 11, 11), {"Conv", "GlobalAveragePool"}),
    "grouped_conv": (GroupedConvNet, (4, 14, 14), {"Conv", "MaxPool", "AveragePool"}),
    "softmax": (SoftmaxNet, (10,), {"Gemm", "Softmax"}),
    "view_flatten": (ViewNet, (2, 6, 6), {"Shape", "Gather", "Unsqueeze", "Concat", "Reshape"}),
}


def seeded_model(factory: type[nn.Module], seed: int = 0) -> nn.Module:
    """Instantiate a model with deterministic weights, in eval mode."""
    torch.manual_seed(seed)
    return factory().eval()


def conv_pool_classifier(
    classes: int,
    pooled: tuple[int, int] = (1, 1),
    *,
    opset: int = OPSET,
    batch: int | str = "N",
    symbolic_output: bool = False,
    seed: int = 0,
) -> onnx.ModelProto:
    """A 1x1 Conv + AveragePool classifier on [batch, 3, 4, 4] never flattened: [batch, classes, *pooled].

    pooled=(1, 1) is the [N, C, 1, 1] output of the model zoo's SqueezeNet and DenseNet-121. With
    symbolic_output the output is declared [batch, "c", "h", "w"] (only shape inference knows the sizes).
    """
    rng = np.random.default_rng(seed)
    kernel = [4 // pooled[0], 4 // pooled[1]]
    nodes = [
        helper.make_node("Conv", ["x", "W", "B"], ["h"]),
        helper.make_node("Relu", ["h"], ["r"]),
        helper.make_node("AveragePool", ["r"], ["y"], kernel_shape=kernel, strides=kernel),
    ]
    weights = {
        "W": rng.normal(size=(classes, 3, 1, 1)).astype(np.float32),
        "B": rng.normal(size=(classes,)).astype(np.float32),
    }
    output_shape = [batch, "c", "h", "w"] if symbolic_output else [batch, classes, *pooled]
    return make_model(nodes, [batch, 3, 4, 4], weights, opset=opset, output_shape=output_shape)
