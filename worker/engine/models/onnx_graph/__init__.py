"""ONNX-to-PyTorch graph builder: allowlisted ONNX ops mapped to torch functions so gradients flow."""

from worker.engine.models.onnx_graph.builder import (
    OnnxGraphModule,
    build_torch_module,
    default_opset,
    missing_ops,
)
from worker.engine.models.onnx_graph.errors import (
    GraphBuildError,
    UnsupportedAttributeError,
    UnsupportedOpsError,
)
from worker.engine.models.onnx_graph.ops import CONVERTERS, SUPPORTED_OPS

__all__ = [
    "CONVERTERS",
    "SUPPORTED_OPS",
    "GraphBuildError",
    "OnnxGraphModule",
    "UnsupportedAttributeError",
    "UnsupportedOpsError",
    "build_torch_module",
    "default_opset",
    "missing_ops",
]
