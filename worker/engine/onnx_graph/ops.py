"""The op registry: ONNX op name -> converter. Adding an op is one function plus one line here.

A converter receives a NodeSpec at build time (attributes decoded, opset known), validates it and
returns the function that runs the node on torch tensors at forward time.
"""

from worker.engine.onnx_graph import ops_math, ops_nn, ops_shape
from worker.engine.onnx_graph.spec import Converter

CONVERTERS: dict[str, Converter] = {
    "Add": ops_math.add,
    "AveragePool": ops_nn.average_pool,
    "BatchNormalization": ops_nn.batch_normalization,
    "Concat": ops_shape.concat,
    "Constant": ops_math.constant,
    "Conv": ops_nn.conv,
    "Div": ops_math.div,
    "Dropout": ops_math.dropout,
    "Flatten": ops_shape.flatten,
    "Gather": ops_shape.gather,
    "Gemm": ops_math.gemm,
    "GlobalAveragePool": ops_nn.global_average_pool,
    "Identity": ops_math.identity,
    "MatMul": ops_math.matmul,
    "MaxPool": ops_nn.max_pool,
    "Mul": ops_math.mul,
    "Relu": ops_math.relu,
    "Reshape": ops_shape.reshape,
    "Shape": ops_shape.shape,
    "Sigmoid": ops_math.sigmoid,
    "Softmax": ops_math.softmax,
    "Sub": ops_math.sub,
    "Tanh": ops_math.tanh,
    "Unsqueeze": ops_shape.unsqueeze,
}

SUPPORTED_OPS: tuple[str, ...] = tuple(sorted(CONVERTERS))
DEFAULT_DOMAINS: frozenset[str] = frozenset({"", "ai.onnx"})
