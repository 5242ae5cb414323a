"""ANP as the reference code runs it: which neurons it perturbs, what its pruning zeroes, what it leaves."""

import numpy as np
import pytest
import torch

from app.schemas.repair_methods import AnpMethod
from tests.engine.poisoning_helpers import digits_split, make_model
from worker.engine.defense.repair.anp import ANP, perturbed_units
from worker.engine.defense.repair.base import RepairContext
from worker.engine.defense.repair.registry import build_repair
from worker.engine.models.export import verified_export
from worker.engine.training.trainable import trainable_from_onnx

SHAPE = (1, 8, 8)


def _graph(architecture: str):
    """The architecture's graph as the service exports it (batch norm kept as its own node)."""
    module = make_model(architecture)(0).eval()
    onnx_bytes = verified_export(module, input_shape=SHAPE, num_classes=10, input_range=(0.0, 1.0))[0]
    return trainable_from_onnx(onnx_bytes, init="pretrained")


def _context(graph) -> RepairContext:
    train, _ = digits_split()
    return RepairContext(graph, train.x[:64], train.y[:64], 10, (0.0, 1.0))


def test_batch_norm_models_perturb_their_batch_norms_only():
    units = perturbed_units(_graph("bn-cnn"))
    assert [u.channels for u in units] == [32, 64]
    assert all("BatchNormalization" in u.value and u.bias is not None for u in units)
    assert all(len(u.zero) == 1 for u in units)  # pruning zeroes the scale, the shift stays


def test_models_without_batch_norm_perturb_conv_and_hidden_linear_neurons():
    units = perturbed_units(_graph("small-cnn"))
    assert [(u.kind, u.channels) for u in units] == [("conv", 32), ("conv", 64), ("linear", 128)]
    assert all(u.bias is not None and len(u.zero) == 1 for u in units)


def test_mask_learning_leaves_weights_and_running_statistics_untouched():
    graph = _graph("bn-cnn")
    context = _context(graph)
    x = torch.as_tensor(context.x[:16])
    graph.eval()
    with torch.no_grad():
        before = graph(x).clone()
    masks = ANP(AnpMethod(iterations=3, batch_size=16)).learn_masks(context, perturbed_units(graph))
    graph.eval()
    with torch.no_grad():
        assert torch.equal(graph(x), before)
    assert all(((m >= 0) & (m <= 1)).all() for m in masks.values())
    assert any((m < 1).any() for m in masks.values())  # the adversarial loss moved the masks


def test_pruning_zeroes_the_batch_norm_scale_and_keeps_the_shift():
    graph = _graph("bn-cnn")
    tensors = graph.onnx_tensors()
    units = perturbed_units(graph)
    shifts = {u.value: tensors[u.bias].detach().clone() for u in units if u.bias}
    result = ANP(AnpMethod(iterations=2, batch_size=16, prune_fraction=0.1)).repair(_context(graph))
    pruned = sum(len(c) for c in result.pruned.values())
    assert pruned == int(0.1 * 96)
    for unit, channels in result.pruned.items():
        scale = tensors[unit.zero[0][0]]
        assert torch.all(scale[channels] == 0)
        assert torch.equal(tensors[unit.bias], shifts[unit.value])


def test_selection_by_threshold_and_by_fraction():
    units = perturbed_units(_graph("bn-cnn"))
    masks = {units[0].value: torch.full((32,), 0.9), units[1].value: torch.full((64,), 0.9)}
    masks[units[0].value][[3, 7]] = torch.tensor([0.1, 0.3])
    masks[units[1].value][5] = 0.0
    assert ANP(AnpMethod()).select(units, masks) == {units[0]: [3], units[1]: [5]}
    # 2 of 96 neurons: the two smallest masks
    chosen = ANP(AnpMethod(prune_fraction=0.03)).select(units, masks)
    assert chosen == {units[0]: [3], units[1]: [5]}
    with pytest.raises(ValueError):
        build_repair("anp", {"prune_fraction": 1.0})
    with pytest.raises(ValueError):
        build_repair("anp", {"anp_steps": 0})
    defaults = ANP(AnpMethod()).spec
    assert np.isclose(defaults.eps, 0.4) and defaults.iterations == 2000 and defaults.batch_size == 128
