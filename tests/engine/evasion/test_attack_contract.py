"""The contract every registered attack keeps, on a small trained model.

Inside the eps ball and the input range, a real drop in accuracy, and the same result for the same seed.
"""

import pytest
import torch

from worker.engine.evasion.attacks.norms import perturbation_norm
from worker.engine.evasion.attacks.registry import as_spec, build_attack, registered_attacks

SAMPLES = 48
# Small budgets per attack so the whole contract runs in seconds; eps chosen per norm.
BUDGETS: dict[str, dict] = {
    "fgsm": {},
    "pgd": {"steps": 10},
    "apgd": {"steps": 10},
    "fab": {"steps": 10},
    "cw": {"binary_search_steps": 3, "steps": 50, "learning_rate": 0.05, "initial_const": 1.0},
    "deepfool": {"steps": 20},
    "square": {"queries": 150},
    "hopskipjump": {"max_queries": 300, "iterations": 3},
    "autoattack": {"steps": 5, "n_target_classes": 2, "square_queries": 50},
}
EPS = {"linf": 0.2, "l2": 1.5}
INPUT_RANGES = [(0.0, 1.0), (-1.0, 1.0)]


def _norms(name: str) -> list[str]:
    return ["l2"] if name == "cw" else ["linf", "l2"]


CASES = [(name, norm) for name in sorted(BUDGETS) for norm in _norms(name)]


class _Rescaled(torch.nn.Module):
    """The digits model taking inputs in (-1, 1) instead of (0, 1)."""

    def __init__(self, inner: torch.nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner((x + 1) / 2)


def test_every_registered_attack_is_covered():
    builtin = {cls.name for cls in registered_attacks().values() if cls.__module__.startswith("worker.")}
    assert set(BUDGETS) == builtin


@pytest.mark.parametrize("input_range", INPUT_RANGES, ids=["0..1", "-1..1"])
@pytest.mark.parametrize(("name", "norm"), CASES)
def test_attack_contract(small_cnn, held_out, name, norm, input_range):
    low, high = input_range
    model = small_cnn if input_range == (0.0, 1.0) else _Rescaled(small_cnn)
    x = torch.as_tensor(held_out[0][:SAMPLES]) * (high - low) + low
    y = torch.as_tensor(held_out[1][:SAMPLES])
    with torch.no_grad():
        correct = model(x).argmax(1) == y
    x, y = x[correct], y[correct]
    # eps scales with the range width so the threat is the same in both ranges
    eps = EPS[norm] * (high - low)
    attack = build_attack(as_spec({"name": name, "norm": norm, "eps": [eps], **BUDGETS[name]}), input_range)

    def run() -> object:
        return attack.run(model, x, y, eps=eps, generator=torch.Generator().manual_seed(7))

    first, second = run(), run()
    delta = perturbation_norm(first.x_adv - x, norm)
    assert (delta <= eps * (1 + 1e-5) + 1e-6).all(), f"{name} left the {norm} ball: {delta.max()} > {eps}"
    assert first.x_adv.min() >= low - 1e-6 and first.x_adv.max() <= high + 1e-6
    with torch.no_grad():
        predictions = model(first.x_adv).argmax(1)
    # every stored adversarial input is classified as reported, successes and failures alike
    assert torch.equal(predictions, first.predictions)
    assert torch.equal(first.success, predictions != y)
    robust = float((predictions == y).float().mean())
    assert robust < 0.85, (
        f"{name} {norm} barely lowered accuracy: {robust:.2f} of clean-correct samples survive"
    )
    assert torch.equal(first.x_adv, second.x_adv) and torch.equal(first.success, second.success)
    if not attack.spec_type.white_box:
        assert first.queries is not None and (first.queries > 0).all()
