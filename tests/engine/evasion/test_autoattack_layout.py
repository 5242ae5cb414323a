"""AutoAttack's channels-last passes: the same function of the inputs, a fallback where a model needs NCHW."""

import torch
from torch import Tensor, nn

from tests.engine.attack_helpers import predict, seeded
from worker.engine.evasion.attacks.autoattack import AutoAttack
from worker.engine.evasion.attacks.channels_last import ChannelsLast


def _conv_net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(8, 8, 3, padding=1),
        nn.ReLU(), nn.Flatten(), nn.Linear(8 * 4 * 4, 5),
    ).eval()  # fmt: skip


class _Viewing(nn.Module):
    """A model that calls .view on a conv activation (fails on a channels-last activation)."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(1)
        self.conv, self.head = nn.Conv2d(3, 4, 3, padding=1), nn.Linear(4 * 8 * 8, 5)

    def forward(self, x: Tensor) -> Tensor:
        h = self.conv(x)
        return self.head(h.view(h.shape[0], -1))  # type: ignore[no-any-return]


def _layouts(model: nn.Module) -> list[bool]:
    """Records, per pass, whether the first conv got a channels-last input."""
    seen: list[bool] = []
    conv = next(m for m in model.modules() if isinstance(m, nn.Conv2d))
    conv.register_forward_pre_hook(
        lambda _m, args: seen.append(
            args[0].is_contiguous(memory_format=torch.channels_last) and not args[0].is_contiguous()
        )
    )
    return seen


def test_channels_last_computes_the_same_logits_and_gradients():
    model = _conv_net()
    seen = _layouts(model)
    wrapped = ChannelsLast(model)
    x = torch.rand(6, 3, 8, 8, generator=seeded(0))
    x_in = x.clone().requires_grad_(True)
    logits = wrapped(x_in)
    (grad,) = torch.autograd.grad(logits[:, 0].sum(), x_in)
    x_ref = x.clone().requires_grad_(True)
    reference = model(x_ref)
    (grad_ref,) = torch.autograd.grad(reference[:, 0].sum(), x_ref)
    assert seen == [True, False]
    assert torch.allclose(logits, reference, atol=1e-5) and torch.allclose(grad, grad_ref, atol=1e-5)


def test_channels_last_falls_back_for_a_model_that_needs_its_layout():
    model = _Viewing()
    wrapped = ChannelsLast(model)
    x = torch.rand(4, 3, 8, 8, generator=seeded(0))
    assert wrapped.enabled
    assert torch.equal(wrapped(x), model(x))
    assert not wrapped.enabled  # for good: later passes go straight to the model
    flat = nn.Sequential(nn.Flatten(), nn.Linear(12, 3))
    assert not ChannelsLast(flat).enabled  # no convolution: nothing to gain


def test_autoattack_standard_runs_channels_last_only_on_the_accelerated_path():
    model = _conv_net()
    x = torch.rand(8, 3, 8, 8, generator=seeded(2))
    y = predict(model, x)
    results = {}
    for accelerated in (False, True):
        seen = _layouts(model)
        attack = AutoAttack.configured(
            steps=5, n_target_classes=2, square_queries=20, accelerated=accelerated
        )
        results[accelerated] = attack.run(model, x, y, eps=0.02, generator=seeded(3))
        # Every pass of the attack itself (the run's own verification pass is the model's, as given).
        assert len(seen) > 10 and sum(seen) == (len(seen) - 1 if accelerated else 0)
        model[0]._forward_pre_hooks.clear()
    assert torch.equal(results[False].success, results[True].success)
    # And a model that cannot take channels-last still runs, on the fallback.
    viewing = _Viewing()
    labels = predict(viewing, x)
    result = AutoAttack.configured(steps=5, n_target_classes=2, square_queries=20).run(
        viewing, x, labels, eps=0.05, generator=seeded(3)
    )
    assert torch.equal(result.success, predict(viewing, result.x_adv) != labels)
