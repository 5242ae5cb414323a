"""Classifier outputs with trailing size-1 dims: [N, C, 1, 1], as the model zoo's SqueezeNet and DenseNet end.

A graph whose last layer is a 1x1 convolution or a global pool that was never flattened returns
[N, C, 1, ..., 1]. When the single output is declared (or inferred) with every dim after the class
axis equal to 1, intake appends a Squeeze of exactly those axes, so onnxruntime and the PyTorch
module both return [N, C] and the output keeps its name. Any other shape ([N, C, 2, 1], say) is left
as it is, and validation then refuses it as a shape_mismatch.
"""

import onnx
from onnx import helper

from worker.engine.models.intake.resource_check import weightless_skeleton
from worker.engine.models.onnx_graph import default_opset

SQUEEZE_AXES_OPSET = 13  # Squeeze takes its axes as an input from opset 13, as an attribute before


def _dims(value: onnx.ValueInfoProto) -> list[int | str] | None:
    """A value's dims (an int where fixed, its symbolic name or "?" otherwise), None without a shape."""
    tensor_type = value.type.tensor_type
    if not tensor_type.HasField("shape"):
        return None
    return [
        int(d.dim_value) if d.HasField("dim_value") else (d.dim_param or "?") for d in tensor_type.shape.dim
    ]


def _unit_tail(dims: list[int | str] | None) -> bool:
    """True for a rank above 2 whose dims after the class axis are all fixed to 1."""
    return dims is not None and len(dims) > 2 and all(d == 1 for d in dims[2:])


def _output_dims(model: onnx.ModelProto) -> list[int | str] | None:
    """The output's declared dims, or those onnx shape inference finds when the declaration says less."""
    output = model.graph.output[0]
    declared = _dims(output)
    if declared is not None and all(isinstance(d, int) for d in declared[2:]):
        return declared
    try:
        inferred = onnx.shape_inference.infer_shapes(
            weightless_skeleton(model), check_type=False, strict_mode=False
        )
    except Exception:  # best effort: without a known shape the output is taken as it is
        return declared
    found = next((o for o in inferred.graph.output if o.name == output.name), None)
    return declared if found is None else _dims(found)


def _unique(model: onnx.ModelProto, base: str) -> str:
    """A value name not used anywhere in the graph, starting with `base`."""
    graph = model.graph
    used = {v.name for v in (*graph.input, *graph.output, *graph.value_info)}
    used |= {t.name for t in graph.initializer} | {
        n for node in graph.node for n in (*node.input, *node.output)
    }
    name, index = base, 0
    while name in used:
        index += 1
        name = f"{base}_{index}"
    return name


def squeeze_classifier_output(model: onnx.ModelProto) -> str | None:
    """Squeeze the size-1 dims after the class axis of the only output (in place).

    The node that produced the output now writes an intermediate value; a Squeeze of axes 2.. turns
    it into the output, declared [batch, C]. Returns the note for the intake report, or None when the
    output is not [N, C, 1, ..., 1] (or is not produced by a node).
    """
    graph = model.graph
    if len(graph.output) != 1:
        return None
    output = graph.output[0]
    dims = _output_dims(model)
    producers = [node for node in graph.node if output.name in node.output]
    if not _unit_tail(dims) or len(producers) != 1 or dims is None:
        return None
    inner = _unique(model, f"{output.name}_unsqueezed")
    for node in graph.node:
        for i, name in enumerate(node.output):
            if name == output.name:
                node.output[i] = inner
        for i, name in enumerate(node.input):
            if name == output.name:
                node.input[i] = inner
    axes = list(range(2, len(dims)))
    if (default_opset(model) or 0) >= SQUEEZE_AXES_OPSET:
        axes_name = _unique(model, f"{output.name}_squeeze_axes")
        axes_tensor = helper.make_tensor(axes_name, onnx.TensorProto.INT64, [len(axes)], axes)
        graph.node.append(helper.make_node("Constant", [], [axes_name], value=axes_tensor))
        graph.node.append(helper.make_node("Squeeze", [inner, axes_name], [output.name]))
    else:
        graph.node.append(helper.make_node("Squeeze", [inner], [output.name], axes=axes))
    shape = output.type.tensor_type.shape
    del shape.dim[:]
    for d in dims[:2]:  # what the declaration or, where it said less, shape inference found
        dim = shape.dim.add()
        if isinstance(d, int):
            dim.dim_value = d
        elif d != "?":
            dim.dim_param = d
    shown = [
        dims[0] if isinstance(dims[0], int) else "batch",
        *(d if isinstance(d, int) else "?" for d in dims[1:]),
    ]
    return (
        f"The output has shape {shown}: its size-1 dims after the class axis are squeezed, so the "
        f"model returns [batch, {shown[1]}] logits."
    )
