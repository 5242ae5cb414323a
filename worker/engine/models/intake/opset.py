"""Upgrade models exported with an old ONNX opset (model-zoo files from opset 1 to 6) before intake.

onnxruntime only guarantees opset 7 or newer and the graph builder starts at MIN_OPSET, so older
graphs are converted with onnx.version_converter to TARGET_OPSET. The converter's adapters need
tensor shapes, so shapes are inferred on a weightless skeleton first and the conversion goes
through opset 6 (where onnx can infer shapes again) when the model is older than that.
"""

import onnx
from onnx import helper, version_converter

from worker.engine.models.intake.errors import ModelRejected
from worker.engine.models.intake.resource_check import weightless_skeleton
from worker.engine.models.onnx_graph import default_opset
from worker.engine.models.onnx_graph.builder import MIN_OPSET

TARGET_OPSET = 13
_STAGES = (6, TARGET_OPSET)
BROADCAST_OPSET = 7  # the broadcast/axis attributes of binary ops were removed in opset 7
_LEGACY_BROADCAST_OPS = frozenset(
    {"Add", "Sub", "Mul", "Div", "Pow", "And", "Or", "Xor", "Equal", "Greater", "Less"}
)
REEXPORT_HINT = (
    "Re-export the model with a current exporter and opset 13 or newer, e.g. torch.onnx.export(model.eval(), "
    "torch.rand(1, *input_shape), 'model.onnx', dynamo=False, opset_version=17), or convert it yourself "
    "with onnx.version_converter.convert_version(onnx.load('model.onnx'), 13) and upload the result."
)


def _annotate_shapes(model: onnx.ModelProto) -> None:
    """Store inferred shapes of intermediate values in the model's value_info (in place)."""
    skeleton = weightless_skeleton(model)
    try:
        inferred = onnx.shape_inference.infer_shapes(skeleton, check_type=False, strict_mode=False)
    except Exception:  # best effort: the converter reports what it still misses
        return
    graph = model.graph
    declared = {v.name for v in (*graph.input, *graph.output)} | {t.name for t in graph.initializer}
    infos = [*inferred.graph.value_info, *inferred.graph.input]
    del graph.value_info[:]
    graph.value_info.extend(v for v in infos if v.name not in declared and v.type.tensor_type.elem_type)


def _ranks(model: onnx.ModelProto) -> dict[str, int]:
    """The rank of every value whose shape is declared, inferred or an initializer's."""
    graph = model.graph
    ranks = {t.name: len(t.dims) for t in graph.initializer}
    for value in (*graph.input, *graph.value_info, *graph.output):
        if value.type.tensor_type.HasField("shape"):
            ranks[value.name] = len(value.type.tensor_type.shape.dim)
    return ranks


def _fix_legacy_broadcast(model: onnx.ModelProto) -> None:
    """Make `axis` of legacy broadcasting nodes explicit with an Unsqueeze of B (in place).

    Before opset 7, Add(A, B, broadcast=1, axis=k) aligns B with A's dims starting at k. onnx's 6->7
    adapter appends rank(A) - rank(B) trailing 1s to B whatever k is, which is only right for
    k = rank(A) - rank(B); Caffe2-era biases (axis=1 on NCHW) would broadcast wrongly. Unsqueezing B
    to rank(A) - k first makes the adapter's rule exact.
    """
    ranks = _ranks(model)
    nodes: list[onnx.NodeProto] = []
    changed = False
    for index, source in enumerate(model.graph.node):
        node = onnx.NodeProto()
        node.CopyFrom(source)  # copies: the graph's node list is rebuilt below
        attrs = {a.name: a for a in node.attribute}
        ranks_ab = [ranks.get(name) for name in node.input[:2]]
        broadcast = attrs.get("broadcast")
        if (
            node.op_type in _LEGACY_BROADCAST_OPS
            and "axis" in attrs
            and broadcast is not None
            and broadcast.i == 1
            and len(ranks_ab) == 2
            and None not in ranks_ab
        ):
            a_rank, b_rank = ranks_ab
            extra = a_rank - attrs["axis"].i - b_rank  # type: ignore[operator]
            if extra > 0:
                unsqueezed = f"{node.input[1]}__gauntlet_broadcast_{index}"
                axes = list(range(b_rank, b_rank + extra))  # type: ignore[arg-type]
                nodes.append(helper.make_node("Unsqueeze", [node.input[1]], [unsqueezed], axes=axes))
                node.input[1] = unsqueezed
                attrs["axis"].i = a_rank - b_rank - extra  # type: ignore[operator]
                changed = True
        nodes.append(node)
    if changed:
        del model.graph.node[:]
        model.graph.node.extend(nodes)


def upgrade_opset(model: onnx.ModelProto) -> tuple[onnx.ModelProto, str | None]:
    """The model itself when its opset is MIN_OPSET or newer, else converted to TARGET_OPSET, plus a note.

    Raises ModelRejected('unsupported_opset') when the conversion fails.
    """
    opset = default_opset(model)
    if opset is None or opset >= MIN_OPSET:
        return model, None
    converted = model
    try:
        for stage in (s for s in _STAGES if s > opset):
            _annotate_shapes(converted)
            if default_opset(converted) < BROADCAST_OPSET:  # type: ignore[operator]
                _fix_legacy_broadcast(converted)
            converted = version_converter.convert_version(converted, stage)
        del converted.graph.value_info[:]  # the adapters leave stale and untyped entries
        onnx.checker.check_model(converted)
    except Exception as exc:
        raise ModelRejected(
            "unsupported_opset",
            f"The model uses ONNX opset {opset}; Gauntlet runs opset {MIN_OPSET} or newer, and converting "
            f"the model to opset {TARGET_OPSET} failed ({str(exc).strip()[:300]}). {REEXPORT_HINT}",
        ) from exc
    return (
        converted,
        f"Converted from ONNX opset {opset} to opset {TARGET_OPSET} with onnx.version_converter.",
    )
