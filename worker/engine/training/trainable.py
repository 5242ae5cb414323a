"""Trainable modules for a model record: an uploaded ONNX graph or a catalog architecture.

An uploaded graph trains as itself: its weight initializers become nn.Parameters of the graph module
(worker.engine.training.graph_params says which), BatchNormalization and Dropout follow train()/eval(),
and worker.engine.models.export writes the trained weights back into the same graph.
"""

from collections.abc import Sequence
from typing import Literal

import torch
from torch import nn

from worker.engine.models.catalog import ARCHITECTURES, build_architecture
from worker.engine.models.intake import ModelRejected, load_safetensors_module
from worker.engine.models.intake.onnx_parse import parse_onnx
from worker.engine.models.onnx_graph import OnnxGraphModule, build_torch_module
from worker.engine.training.graph_params import ParamRole, graph_roles, reinitialize, untie_initializers

Init = Literal["pretrained", "random"]
INITS: tuple[Init, ...] = ("pretrained", "random")


def _check_init(init: str) -> None:
    """Refuse an unknown init."""
    if init not in INITS:
        raise ValueError(f"init must be one of {', '.join(INITS)}, not {init!r}")


def trainable_from_onnx(onnx_bytes: bytes, *, init: Init, seed: int = 0) -> OnnxGraphModule:
    """The graph as a trainable module (eval mode), its weights as uploaded or re-initialised from `seed`.

    With init="random" every weight and running statistic is re-initialised the way PyTorch initialises
    its layer type (see graph_params.reinitialize), so nothing of the uploaded weights remains. The
    module keeps its graph in `source_onnx` for export: the uploaded bytes or, where the upload ties
    weights that must train apart (one initializer in several weight slots, Identity aliases of
    initializers), the graph with each slot reading its own copy (graph_params.untie_initializers).
    Raises ModelRejected for bytes the intake refuses, GraphBuildError for graphs it cannot convert.
    """
    _check_init(init)
    model = parse_onnx(onnx_bytes)
    untied = untie_initializers(model)
    roles = graph_roles(untied)
    module = build_torch_module(untied, trainable=[name for name, role in roles.items() if role.trainable])
    module.source_onnx = onnx_bytes if untied == model else untied.SerializeToString()
    if init == "random":
        tensors = module.onnx_tensors()
        generator = torch.Generator().manual_seed(seed)
        reinitialize(((tensors[name], role) for name, role in roles.items()), generator)
    return module


def parameter_roles(module: OnnxGraphModule) -> dict[str, ParamRole]:
    """The role of each weight and running statistic of a module built by trainable_from_onnx."""
    if module.source_onnx is None:
        raise ValueError("the module was not built by trainable_from_onnx (it has no source graph)")
    return graph_roles(parse_onnx(module.source_onnx))


def _fresh_architecture(
    architecture: str, input_shape: tuple[int, ...], num_classes: int, seed: int
) -> nn.Module:
    """A catalog module with PyTorch's default init drawn from `seed` (the global RNG is left as it was)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build_architecture(architecture, input_shape, num_classes).eval()


def build_trainable(
    *,
    architecture: str | None,
    onnx_bytes: bytes | None,
    safetensors_bytes: bytes | None,
    input_shape: Sequence[int],
    num_classes: int,
    init: Init,
    seed: int,
) -> nn.Module:
    """The trainable module (eval mode) for a model record.

    An uploaded ONNX graph (`onnx_bytes`) trains as its own graph (`architecture` is then only a label
    and is ignored); otherwise the catalog `architecture` is built fresh, with its uploaded safetensors
    weights when init="pretrained". Raises ValueError for every model that cannot be trained this way:
    a catalog architecture without weights asked to start pretrained, bytes the intake refuses, a graph
    the builder cannot convert, an output that is not [batch, num_classes].
    """
    _check_init(init)
    shape = tuple(int(d) for d in input_shape)
    try:
        module = _build(architecture, onnx_bytes, safetensors_bytes, shape, num_classes, init, seed)
    except ModelRejected as exc:
        raise ValueError(exc.message) from exc
    _check_output(module, shape, num_classes)
    return module


def _build(
    architecture: str | None,
    onnx_bytes: bytes | None,
    safetensors_bytes: bytes | None,
    shape: tuple[int, ...],
    num_classes: int,
    init: Init,
    seed: int,
) -> nn.Module:
    """build_trainable's dispatch on the record's format."""
    if onnx_bytes is not None:
        if safetensors_bytes is not None:
            raise ValueError("a model is an ONNX graph or safetensors weights, not both")
        return trainable_from_onnx(onnx_bytes, init=init, seed=seed)
    if architecture is None:
        raise ValueError("the model has neither an ONNX graph nor a catalog architecture to train")
    if architecture not in ARCHITECTURES:
        raise ValueError(
            f"unknown architecture {architecture!r}; the catalog has: {', '.join(ARCHITECTURES)}"
        )
    if init == "random":
        return _fresh_architecture(architecture, shape, num_classes, seed)
    if safetensors_bytes is None:
        raise ValueError(f"architecture {architecture!r} has no weights to start from; use init='random'")
    return load_safetensors_module(safetensors_bytes, architecture, shape, num_classes)


@torch.no_grad()
def _check_output(module: nn.Module, input_shape: tuple[int, ...], num_classes: int) -> None:
    """Run the module on two zero inputs in eval mode and require [2, num_classes] logits."""
    module.eval()
    device = next((p.device for p in module.parameters()), torch.device("cpu"))
    out = module(torch.zeros((2, *input_shape), device=device))
    if tuple(out.shape) != (2, num_classes):
        raise ValueError(
            f"the model returns shape {list(out.shape)} for input shape {list(input_shape)}; "
            f"expected [batch, {num_classes}]"
        )
