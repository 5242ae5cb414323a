"""The op registry: ONNX op name -> converter. Adding an op is one function plus one line here.

A converter receives a NodeSpec at build time (attributes decoded, opset known), validates it and
returns the function that runs the node on torch tensors at forward time.
"""

from worker.engine.models.onnx_graph import (
    ops_activation,
    ops_math,
    ops_nn,
    ops_reduce,
    ops_shape,
    ops_slice,
    ops_tensor,
)
from worker.engine.models.onnx_graph.spec import Converter

CONVERTERS: dict[str, Converter] = {
    "Add": ops_math.add,
    "AveragePool": ops_nn.average_pool,
    "BatchNormalization": ops_nn.batch_normalization,
    "Cast": ops_tensor.cast,
    "Clip": ops_activation.clip,
    "Concat": ops_shape.concat,
    "Constant": ops_math.constant,
    "ConstantOfShape": ops_tensor.constant_of_shape,
    "Conv": ops_nn.conv,
    "Div": ops_math.div,
    "Dropout": ops_nn.dropout,
    "Equal": ops_math.equal,
    "Erf": ops_math.erf,
    "Expand": ops_tensor.expand,
    "Flatten": ops_shape.flatten,
    "Gather": ops_shape.gather,
    "Gelu": ops_activation.gelu,
    "Gemm": ops_math.gemm,
    "GlobalAveragePool": ops_nn.global_average_pool,
    "Identity": ops_math.identity,
    "LayerNormalization": ops_nn.layer_normalization,
    "LeakyRelu": ops_activation.leaky_relu,
    "MatMul": ops_math.matmul,
    "MaxPool": ops_nn.max_pool,
    "Mod": ops_math.mod,
    "Mul": ops_math.mul,
    "Pad": ops_slice.pad,
    "Pow": ops_math.pow_,
    "ReduceMean": ops_reduce.reduce_mean,
    "Relu": ops_math.relu,
    "Reshape": ops_shape.reshape,
    "Shape": ops_shape.shape,
    "Sigmoid": ops_math.sigmoid,
    "Slice": ops_slice.slice_,
    "Softmax": ops_math.softmax,
    "Softplus": ops_activation.softplus,
    "Split": ops_tensor.split,
    "Sqrt": ops_math.sqrt,
    "Squeeze": ops_tensor.squeeze,
    "Sub": ops_math.sub,
    "Tanh": ops_math.tanh,
    "Transpose": ops_tensor.transpose,
    "Unsqueeze": ops_shape.unsqueeze,
    "Where": ops_math.where,
}

SUPPORTED_OPS: tuple[str, ...] = tuple(sorted(CONVERTERS))
DEFAULT_DOMAINS: frozenset[str] = frozenset({"", "ai.onnx"})
