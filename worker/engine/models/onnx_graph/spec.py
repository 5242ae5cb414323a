"""Node descriptions handed to op converters, plus tensor and attribute decoding."""

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import NoReturn

import numpy as np
import onnx
import torch
from onnx import numpy_helper

from worker.engine.models.onnx_graph.errors import GraphBuildError, UnsupportedAttributeError

AttrValue = int | float | str | torch.Tensor | list[int] | list[float] | list[str]
Inputs = Sequence[torch.Tensor | None]
OpFn = Callable[[Inputs], Sequence[torch.Tensor]]

FLOAT_TYPES = {
    onnx.TensorProto.FLOAT,
    onnx.TensorProto.FLOAT16,
    onnx.TensorProto.DOUBLE,
    onnx.TensorProto.BFLOAT16,
}
_INT_TYPES = {
    onnx.TensorProto.INT8: torch.int8,
    onnx.TensorProto.INT16: torch.int16,
    onnx.TensorProto.INT32: torch.int32,
    onnx.TensorProto.INT64: torch.int64,
    onnx.TensorProto.UINT8: torch.uint8,
    onnx.TensorProto.UINT16: torch.int64,
    onnx.TensorProto.UINT32: torch.int64,
    onnx.TensorProto.UINT64: torch.int64,
    onnx.TensorProto.BOOL: torch.bool,
}


def tensor_from_proto(proto: onnx.TensorProto) -> torch.Tensor:
    """Decode a TensorProto: floating types become float32, integer and bool types keep an int dtype."""
    if proto.data_location == onnx.TensorProto.EXTERNAL or len(proto.external_data) > 0:
        raise GraphBuildError(f"tensor {proto.name!r} uses external data, which is never read")
    if proto.data_type in FLOAT_TYPES:
        array = np.asarray(numpy_helper.to_array(proto), dtype=np.float32)
        return torch.from_numpy(array.copy())
    dtype = _INT_TYPES.get(proto.data_type)
    if dtype is None:
        type_name = onnx.TensorProto.DataType.Name(proto.data_type)
        raise GraphBuildError(f"tensor {proto.name!r} has unsupported element type {type_name}")
    array = numpy_helper.to_array(proto)
    if array.dtype in (np.uint16, np.uint32, np.uint64):
        array = array.astype(np.int64)
    return torch.from_numpy(np.array(array, copy=True)).to(dtype)


def _attribute_value(attr: onnx.AttributeProto) -> AttrValue:
    """Decode one attribute into a python value or a tensor."""
    kinds = onnx.AttributeProto
    if attr.type == kinds.INT:
        return int(attr.i)
    if attr.type == kinds.FLOAT:
        return float(attr.f)
    if attr.type == kinds.STRING:
        return attr.s.decode("utf-8", errors="replace")
    if attr.type == kinds.INTS:
        return [int(v) for v in attr.ints]
    if attr.type == kinds.FLOATS:
        return [float(v) for v in attr.floats]
    if attr.type == kinds.STRINGS:
        return [s.decode("utf-8", errors="replace") for s in attr.strings]
    if attr.type == kinds.TENSOR:
        return tensor_from_proto(attr.t)
    raise UnsupportedAttributeError(
        f"attribute {attr.name!r} has unsupported type {kinds.AttributeType.Name(attr.type)}"
    )


@dataclass(frozen=True)
class NodeSpec:
    """One ONNX node as seen by a converter: op type, wiring, decoded attributes and the opset."""

    op_type: str
    name: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    opset: int
    attrs: Mapping[str, AttrValue] = field(default_factory=dict)

    @classmethod
    def from_proto(cls, node: onnx.NodeProto, opset: int) -> "NodeSpec":
        """Build a spec from a NodeProto, decoding every attribute."""
        bare = cls(node.op_type, node.name, tuple(node.input), tuple(node.output), opset)
        try:
            attrs = {attr.name: _attribute_value(attr) for attr in node.attribute}
        except GraphBuildError as exc:
            bare.fail(str(exc))
        return replace(bare, attrs=attrs)

    @property
    def num_outputs(self) -> int:
        """How many outputs the graph actually uses (trailing optional outputs may be omitted)."""
        return sum(1 for name in self.outputs if name)

    def fail(self, reason: str) -> NoReturn:
        """Raise UnsupportedAttributeError naming this node."""
        label = f"{self.op_type} node {self.name!r}" if self.name else f"{self.op_type} node"
        raise UnsupportedAttributeError(f"{label}: {reason}")

    def int_attr(self, name: str, default: int) -> int:
        """An integer attribute, or `default` when absent."""
        value = self.attrs.get(name, default)
        if not isinstance(value, int):
            self.fail(f"attribute {name!r} should be an integer")
        return value

    def float_attr(self, name: str, default: float) -> float:
        """A float attribute, or `default` when absent."""
        value = self.attrs.get(name, default)
        if not isinstance(value, int | float):
            self.fail(f"attribute {name!r} should be a float")
        return float(value)

    def str_attr(self, name: str, default: str) -> str:
        """A string attribute, or `default` when absent."""
        value = self.attrs.get(name, default)
        if not isinstance(value, str):
            self.fail(f"attribute {name!r} should be a string")
        return value

    def ints_attr(self, name: str) -> list[int] | None:
        """An integer-list attribute, or None when absent."""
        value = self.attrs.get(name)
        if value is None:
            return None
        if not isinstance(value, list) or not all(isinstance(v, int) for v in value):
            self.fail(f"attribute {name!r} should be a list of integers")
        return [int(v) for v in value]

    def require_outputs(self, most: int) -> None:
        """Refuse nodes whose extra (training-only) outputs are consumed."""
        if any(self.outputs[most:]):
            self.fail(f"only the first {most} output(s) are supported (inference mode)")


Converter = Callable[[NodeSpec], OpFn]


def required(inputs: Inputs, index: int) -> torch.Tensor:
    """Return a required node input, failing clearly when it is missing."""
    value = inputs[index] if index < len(inputs) else None
    if value is None:
        raise GraphBuildError(f"required input #{index} is missing")
    return value


def optional(inputs: Inputs, index: int) -> torch.Tensor | None:
    """Return an optional node input, or None when absent."""
    return inputs[index] if index < len(inputs) else None


def int_list(tensor: torch.Tensor) -> list[int]:
    """The values of a (shape-like) integer tensor of any rank as python ints."""
    return [int(v) for v in tensor.reshape(-1).tolist()]


def axis_index(axis: int, rank: int) -> int:
    """Normalise a possibly negative axis against a rank, refusing axes out of range."""
    if not -rank <= axis < rank:
        raise GraphBuildError(f"axis {axis} is out of range for a tensor of rank {rank}")
    return axis + rank if axis < 0 else axis
