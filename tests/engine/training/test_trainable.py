"""Trainable modules from uploaded ONNX graphs and catalog architectures."""

import copy
import math

import numpy as np
import onnx
import pytest
import torch
from onnx import helper
from safetensors.torch import save
from torch import nn

from tests.engine.onnx_fixtures import make_model, ort_run
from worker.engine.datasets import load_builtin
from worker.engine.models.catalog import build_architecture
from worker.engine.models.export import export_onnx
from worker.engine.models.onnx_graph.ops_nn import BatchNormOp, DropoutOp
from worker.engine.training.classifier import accuracy
from worker.engine.training.fit import fit
from worker.engine.training.recipe import TrainingRecipe
from worker.engine.training.trainable import build_trainable, parameter_roles, trainable_from_onnx

SHAPE = (1, 8, 8)


@pytest.fixture(scope="module")
def train_data() -> tuple[np.ndarray, np.ndarray]:
    """digits-train."""
    data = load_builtin("digits-train")
    return data.x, data.y


@pytest.fixture(scope="module")
def bn_onnx() -> bytes:
    """A freshly initialised bn-cnn exported by the engine: its graph keeps BatchNormalization nodes."""
    torch.manual_seed(0)
    return export_onnx(build_architecture("bn-cnn", SHAPE, 10), input_shape=SHAPE)


def _rand(*shape: int, seed: int = 0) -> np.ndarray:
    """Uniform float32 in [0, 1)."""
    return np.random.default_rng(seed).random(shape, dtype=np.float32)


def _states_equal(a: nn.Module, b: nn.Module) -> bool:
    """Bitwise equality of two modules' states."""
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def _mixed_graph() -> onnx.ModelProto:
    """Normalization constants, a Gemm layer, a MatMul layer with an Add bias, clip bounds, a shape, an
    additive offset after a reshape and a scalar multiplier."""
    rng = np.random.default_rng(1)
    inits = {
        "mean": np.full((1, 4), 0.5, np.float32),
        "std": np.full((1, 4), 0.25, np.float32),
        "W": rng.normal(size=(3, 4)).astype(np.float32),
        "B": rng.normal(size=3).astype(np.float32),
        "W2": rng.normal(size=(3, 3)).astype(np.float32),
        "b2": rng.normal(size=3).astype(np.float32),
        "lo": np.array(-5.0, np.float32),
        "hi": np.array(5.0, np.float32),
        "shape": np.array([-1, 3], np.int64),
        "offset": rng.normal(size=3).astype(np.float32),
        "scale": np.array([2.0], np.float32),
    }
    nodes = [
        helper.make_node("Sub", ["x", "mean"], ["centred"]),
        helper.make_node("Div", ["centred", "std"], ["normed"]),
        helper.make_node("Gemm", ["normed", "W", "B"], ["h"], transB=1),
        helper.make_node("MatMul", ["h", "W2"], ["h2"]),
        helper.make_node("Add", ["h2", "b2"], ["h3"]),
        helper.make_node("Clip", ["h3", "lo", "hi"], ["clipped"]),
        helper.make_node("Reshape", ["clipped", "shape"], ["flat"]),
        helper.make_node("Add", ["flat", "offset"], ["shifted"]),
        helper.make_node("Mul", ["shifted", "scale"], ["y"]),
    ]
    return make_model(nodes, ["N", 4], inits, output_shape=["N", 3])


def test_weights_become_parameters_and_constants_stay_buffers() -> None:
    data = _mixed_graph().SerializeToString()
    module = trainable_from_onnx(data, init="pretrained")
    params = {name for name, _ in module.named_parameters()}
    buffers = {name for name, _ in module.named_buffers()}
    assert params == {"c_W", "c_B", "c_W2", "c_b2", "c_offset"}
    assert buffers == {"c_mean", "c_std", "c_lo", "c_hi", "c_shape", "c_scale"}
    roles = parameter_roles(module)
    assert (roles["W"].kind, roles["W"].fan_in) == ("weight", 4)
    assert (roles["W2"].kind, roles["W2"].fan_in, roles["b2"].kind, roles["b2"].fan_in) == (
        "weight",
        3,
        "bias",
        3,
    )
    assert roles["offset"].kind == "additive"
    x = _rand(5, 4)
    out = module(torch.from_numpy(x))
    np.testing.assert_allclose(out.detach().numpy(), ort_run(data, x), atol=1e-5)
    out.square().sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in module.parameters())


def test_random_init_follows_pytorch_and_the_seed(cnn_onnx: bytes) -> None:
    pretrained = trainable_from_onnx(cnn_onnx, init="pretrained")
    fresh = trainable_from_onnx(cnn_onnx, init="random", seed=0)
    roles = parameter_roles(fresh)
    tensors, old = fresh.onnx_tensors(), pretrained.onnx_tensors()
    assert {role.kind for role in roles.values()} == {"weight", "bias"} and len(roles) == 8
    for name, role in roles.items():
        bound = 1 / math.sqrt(role.fan_in)  # torch: kaiming_uniform(a=sqrt(5)) and its bias rule
        values = tensors[name].detach()
        assert values.abs().max() <= bound and values.abs().max() > 0.8 * bound, name
        assert not torch.equal(values, old[name])
    conv1 = build_architecture("small-cnn", SHAPE, 10)[0]  # torch's own init of the first layer
    assert math.isclose(roles["0.weight"].fan_in, conv1.in_channels * 9)
    assert _states_equal(fresh, trainable_from_onnx(cnn_onnx, init="random", seed=0))
    assert not _states_equal(fresh, trainable_from_onnx(cnn_onnx, init="random", seed=1))


def test_random_init_resets_batch_norm(bn_onnx: bytes) -> None:
    fresh = trainable_from_onnx(bn_onnx, init="random", seed=0)
    kinds = {role.kind: name for name, role in parameter_roles(fresh).items()}
    tensors = fresh.onnx_tensors()
    for kind, value in (("scale", 1.0), ("shift", 0.0), ("running_mean", 0.0), ("running_var", 1.0)):
        assert torch.equal(tensors[kinds[kind]], torch.full_like(tensors[kinds[kind]], value)), kind
    buffers = dict(fresh.named_buffers()).values()
    assert any(b is tensors[kinds["running_mean"]] for b in buffers)
    assert any(b is tensors[kinds["running_var"]] for b in buffers)
    assert not any(p is tensors[kinds["running_var"]] for p in fresh.parameters())


def test_same_recipe_and_seed_give_the_same_weights(cnn_onnx: bytes, train_data) -> None:
    x, y = train_data[0][:256], train_data[1][:256]
    recipe = TrainingRecipe(epochs=1, batch_size=64)
    for record in (
        {"onnx_bytes": cnn_onnx, "architecture": None},
        {"onnx_bytes": None, "architecture": "bn-cnn"},
    ):
        runs = []
        for seed in (3, 3, 4):
            model = build_trainable(
                **record, safetensors_bytes=None, input_shape=SHAPE, num_classes=10, init="random", seed=seed
            )
            fit(model, x, y, recipe=recipe, seed=seed)
            runs.append(model)
        assert _states_equal(runs[0], runs[1]) and not _states_equal(runs[0], runs[2])


def test_pretrained_fine_tuning_keeps_accuracy_and_trains_like_torch(
    small_cnn: nn.Module, cnn_onnx: bytes, train_data, held_out
) -> None:
    module = trainable_from_onnx(cnn_onnx, init="pretrained")
    x_test, y_test = held_out
    before, train_before = accuracy(module, x_test, y_test), accuracy(module, *train_data)
    assert before == pytest.approx(float((ort_run(cnn_onnx, x_test).argmax(1) == y_test).mean()))
    start = copy.deepcopy(module.state_dict())
    twin = copy.deepcopy(small_cnn)  # the torch model the graph was exported from
    recipe = TrainingRecipe(epochs=1, learning_rate=1e-4)
    fit(module, *train_data, recipe=recipe, seed=0)
    fit(twin, *train_data, recipe=recipe, seed=0)
    assert not all(torch.equal(start[k], v) for k, v in module.state_dict().items())
    x = torch.from_numpy(x_test)
    with torch.no_grad():
        torch.testing.assert_close(module(x), twin(x), rtol=1e-4, atol=1e-4)
    assert accuracy(module, *train_data) >= train_before
    assert accuracy(module, x_test, y_test) >= before - 0.02 and before > 0.85  # 6 of 297 samples


def test_random_init_retrains_the_graph(cnn_onnx: bytes, train_data, held_out) -> None:
    module = trainable_from_onnx(cnn_onnx, init="random", seed=0)
    assert accuracy(module, *held_out) < 0.4
    fit(module, *train_data, recipe=TrainingRecipe(epochs=6, learning_rate=3e-3), seed=0)
    assert accuracy(module, *held_out) > 0.85


def _bn_graph(momentum: float) -> tuple[bytes, np.ndarray, np.ndarray]:
    """BatchNormalization with a given momentum, then a linear head; returns the bytes and the stats."""
    rng = np.random.default_rng(2)
    mean, var = rng.normal(size=3).astype(np.float32), rng.uniform(0.5, 2, 3).astype(np.float32)
    inits = {
        "s": rng.uniform(0.5, 1.5, 3).astype(np.float32),
        "b": rng.normal(size=3).astype(np.float32),
        "m": mean,
        "v": var,
        "W": rng.normal(size=(2, 12)).astype(np.float32),
    }
    nodes = [
        helper.make_node("BatchNormalization", ["x", "s", "b", "m", "v"], ["bn"], momentum=momentum),
        helper.make_node("Flatten", ["bn"], ["flat"]),
        helper.make_node("Gemm", ["flat", "W"], ["y"], transB=1),
    ]
    return make_model(nodes, ["N", 3, 2, 2], inits, output_shape=["N", 2]).SerializeToString(), mean, var


def test_batch_norm_uses_and_updates_batch_statistics_only_in_train_mode() -> None:
    data, mean, var = _bn_graph(momentum=0.8)
    module = trainable_from_onnx(data, init="pretrained")
    x = torch.from_numpy(_rand(6, 3, 2, 2) * 4 - 1)
    with torch.no_grad():
        eval_out = module(x)
    np.testing.assert_allclose(eval_out.numpy(), ort_run(data, x.numpy()), atol=1e-5)
    tensors = module.onnx_tensors()
    assert torch.equal(tensors["m"], torch.from_numpy(mean)) and torch.equal(
        tensors["v"], torch.from_numpy(var)
    )
    module.train()
    with torch.no_grad():
        train_out = module(x)
    batch_mean, batch_var = x.mean(dim=(0, 2, 3)), x.var(dim=(0, 2, 3), unbiased=True)
    torch.testing.assert_close(tensors["m"], 0.8 * torch.from_numpy(mean) + 0.2 * batch_mean)
    torch.testing.assert_close(tensors["v"], 0.8 * torch.from_numpy(var) + 0.2 * batch_var)
    assert not torch.allclose(train_out, eval_out)  # normalised with the batch's own statistics
    biased = x.var(dim=(0, 2, 3), unbiased=False)
    normalised = (x - batch_mean[None, :, None, None]) / torch.sqrt(biased[None, :, None, None] + 1e-5)
    scale, shift = tensors["s"].detach(), tensors["b"].detach()
    expected = (normalised * scale[None, :, None, None] + shift[None, :, None, None]).flatten(1) @ tensors[
        "W"
    ].t()
    torch.testing.assert_close(train_out, expected.detach(), rtol=1e-4, atol=1e-5)


def test_batch_norm_of_a_catalog_graph_trains(bn_onnx: bytes, train_data) -> None:
    module = trainable_from_onnx(bn_onnx, init="pretrained")
    assert any(isinstance(op, BatchNormOp) for op in module.ops)
    stats = {k: v.clone() for k, v in module.named_buffers()}
    with torch.no_grad():
        module(torch.from_numpy(train_data[0][:32]))  # eval mode: nothing moves
    assert all(torch.equal(stats[k], v) for k, v in module.named_buffers())
    fit(module, train_data[0][:128], train_data[1][:128], recipe=TrainingRecipe(epochs=1), seed=0)
    assert all(not torch.equal(stats[k], v) for k, v in module.named_buffers())


def test_dropout_is_active_only_in_train_mode() -> None:
    for opset, ratio_input in ((17, True), (11, False)):
        inits = {"r": np.array(0.25, np.float32)} if ratio_input else {}
        node = helper.make_node(
            "Dropout", ["x", "r"] if ratio_input else ["x"], ["y"], **({} if ratio_input else {"ratio": 0.25})
        )
        data = make_model([node], ["N", 100], inits, opset=opset, output_shape=["N", 100]).SerializeToString()
        module = trainable_from_onnx(data, init="pretrained")
        x = torch.from_numpy(_rand(100, 100) + 0.5)
        assert torch.equal(module(x), x)
        module.train()
        torch.manual_seed(7)
        first = module(x)
        torch.manual_seed(7)
        assert torch.equal(module(x), first)  # the global RNG, which fit seeds, draws the mask
        dropped = first == 0
        assert 0.2 < float(dropped.float().mean()) < 0.3
        torch.testing.assert_close(first[~dropped], x[~dropped] / 0.75)
        assert torch.equal(module.eval()(x), x)


def test_dropout_mask_output() -> None:
    op = DropoutOp(0.5, wants_mask=True).eval()
    x = torch.ones(4, 50)
    out, keep = op([x])
    assert torch.equal(out, x) and keep.all()
    out, keep = op.train()([x])
    assert keep.dtype == torch.bool and torch.equal(out, keep.float() * 2) and 0 < keep.float().mean() < 1


def test_deep_copies_are_independent(cnn_onnx: bytes) -> None:
    module = trainable_from_onnx(cnn_onnx, init="pretrained")
    clone = copy.deepcopy(module).train()
    assert (
        not module.training
        and all(not op.training for op in module.ops)
        and all(op.training for op in clone.ops)
    )
    with torch.no_grad():
        next(clone.parameters()).zero_()
    assert next(module.parameters()).abs().sum() > 0
    x = torch.from_numpy(_rand(2, *SHAPE))
    assert not torch.allclose(clone(x), module(x))


def test_build_trainable_for_each_kind_of_record(small_cnn: nn.Module) -> None:
    common = {"input_shape": SHAPE, "num_classes": 10, "seed": 0}
    with pytest.raises(ValueError, match="has no weights"):
        build_trainable(
            architecture="bn-cnn", onnx_bytes=None, safetensors_bytes=None, init="pretrained", **common
        )
    weights = save(small_cnn.state_dict())
    loaded = build_trainable(
        architecture="small-cnn", onnx_bytes=None, safetensors_bytes=weights, init="pretrained", **common
    )
    x = torch.from_numpy(_rand(3, *SHAPE))
    torch.testing.assert_close(loaded(x), small_cnn.eval()(x))
    torch.manual_seed(11)
    expected = torch.rand(2)
    torch.manual_seed(11)
    fresh = build_trainable(
        architecture="small-cnn", onnx_bytes=None, safetensors_bytes=weights, init="random", **common
    )
    assert torch.equal(torch.rand(2), expected)  # the global RNG is left alone
    assert not torch.allclose(fresh(x), loaded(x))
    with pytest.raises(ValueError, match="neither"):
        build_trainable(architecture=None, onnx_bytes=None, safetensors_bytes=None, init="random", **common)
    with pytest.raises(ValueError, match=r"expected \[batch, 7\]"):
        build_trainable(
            architecture=None,
            onnx_bytes=_export_mlp(),
            safetensors_bytes=None,
            init="random",
            input_shape=SHAPE,
            num_classes=7,
            seed=0,
        )
    with pytest.raises(ValueError, match="not a valid ONNX"):
        build_trainable(
            architecture=None, onnx_bytes=b"\x08\x07garbage", safetensors_bytes=None, init="random", **common
        )
    with pytest.raises(ValueError, match="init must be"):
        build_trainable(architecture="mlp", onnx_bytes=None, safetensors_bytes=None, init="warm", **common)


def _export_mlp() -> bytes:
    """A 10-class catalog MLP as ONNX."""
    return export_onnx(build_architecture("mlp", SHAPE, 10), input_shape=SHAPE)


class _TransposedNet(nn.Module):
    """Conv, ConvTranspose, PReLU, InstanceNorm and a linear head: every other weight role."""

    def __init__(self) -> None:
        """Create the layers."""
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, stride=2, padding=1)
        self.up = nn.ConvTranspose2d(4, 3, 2, stride=2)
        self.act = nn.PReLU(3)
        self.norm = nn.InstanceNorm2d(3, affine=True)
        self.fc = nn.Linear(3 * 8 * 8, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits."""
        return self.fc(self.norm(self.act(self.up(self.conv(x)))).flatten(1))


def test_transposed_conv_prelu_and_instance_norm_weights_train_and_reinitialise() -> None:
    torch.manual_seed(0)
    net = _TransposedNet().eval()
    with torch.no_grad():
        net.act.weight.fill_(0.1)
        net.norm.weight.uniform_(0.5, 1.5)
    module = trainable_from_onnx(export_onnx(net, input_shape=SHAPE), init="pretrained")
    kinds = sorted(role.kind for role in parameter_roles(module).values())
    assert kinds == ["bias", "bias", "bias", "scale", "shift", "slope", "weight", "weight", "weight"]
    x = torch.from_numpy(_rand(4, *SHAPE))
    torch.testing.assert_close(module(x), net(x), rtol=1e-4, atol=1e-5)
    module(x).square().sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in module.parameters())
    fresh = trainable_from_onnx(export_onnx(net, input_shape=SHAPE), init="random", seed=0)
    tensors = fresh.onnx_tensors()
    for name, role in parameter_roles(fresh).items():
        value = tensors[name].detach()
        if role.kind == "slope":
            assert torch.equal(value, torch.full_like(value, 0.25))  # torch's PReLU init
        elif role.kind == "scale":
            assert torch.equal(value, torch.ones_like(value))
        elif role.fan_in is not None:
            assert value.abs().max() <= 1 / math.sqrt(role.fan_in)
    fan_ins = {role.fan_in for role in parameter_roles(fresh).values()}
    assert {9, 12, 192} <= fan_ins  # torch's fan-in of ConvTranspose2d(4, 3, 2) weight [4, 3, 2, 2] is 3 * 4
