"""Registry-wide: an attack's word changes no figure. Verification is in the base class's final call.

For every registered attack, two mutants run beside the honest attack on a small trained model: one
claims every sample succeeded, one claims none did and returns its inputs pushed outside the eps ball
and the input range (along directions the projection undoes). Each mutant's report entry equals the
honest one's, figure for figure.
"""

import math
from typing import Any

import pytest
import torch
from torch import Tensor, nn

from app.schemas.evasion import AttackParamsBase
from worker.engine.batching import batch_bounds
from worker.engine.evasion.attack_eval import evaluate_attack
from worker.engine.evasion.attacks.base import Attack
from worker.engine.evasion.attacks.norms import perturbation_norm
from worker.engine.evasion.attacks.registry import registered_attacks
from worker.engine.evasion.data import EvaluationData
from worker.engine.evasion.metrics import WorstCase
from worker.engine.progress import ProgressTracker

SAMPLES = 24
EPS = {"linf": [0.1, 0.2], "l2": [1.0, 1.5]}
# Small budgets by attack name, so the contract runs in seconds; an attack not named runs its defaults.
BUDGETS: dict[str, dict[str, Any]] = {
    "pgd": {"steps": 5},
    "apgd": {"steps": 5},
    "fab": {"steps": 5},
    "cw": {"norm": "l2", "binary_search_steps": 2, "steps": 20, "learning_rate": 0.05, "initial_const": 1.0},
    "deepfool": {"steps": 10},
    "square": {"queries": 60},
    "hopskipjump": {"max_queries": 300, "iterations": 3},
    "autoattack": {"steps": 3, "n_target_classes": 2, "square_queries": 30},
}
BUILTIN = ("fgsm", "pgd", "apgd", "fab", "cw", "deepfool", "square", "hopskipjump", "autoattack")


def _claims_everything(attack: Attack, labels: Tensor) -> Tensor:
    """Predictions that say every sample succeeded."""
    return labels.clone() if attack.targeted else (labels + 1) % 10


def _claims_nothing(attack: Attack, labels: Tensor) -> Tensor:
    """Predictions that say no sample succeeded."""
    return (labels + 1) % 10 if attack.targeted else labels.clone()


def _outside(attack: Attack, x: Tensor, found: Tensor, eps: float) -> Tensor:
    """`found` pushed outside the ball and the range wherever the projection brings it back.

    Coordinates on a face of the box [x - eps, x + eps] (linf) or of the input range move far
    outward; for l2, perturbations on the sphere are doubled.
    """
    low, high = attack.input_range
    push = 3.0 * (high - low)
    lower, upper = torch.full_like(x, low), torch.full_like(x, high)
    if attack.norm == "linf" and math.isfinite(eps):
        lower, upper = torch.clamp(x - eps, min=low), torch.clamp(x + eps, max=high)
    moved = found + push * (found >= upper).float() - push * (found <= lower).float()
    if attack.norm == "l2" and math.isfinite(eps):
        delta = found - x
        on_sphere = perturbation_norm(delta, "l2") >= eps * (1 - 1e-6)
        shape = (-1,) + (1,) * (x.dim() - 1)
        moved = torch.where(on_sphere.reshape(shape), x + 2 * delta, found)
    return moved


def _mutant(cls: type[Attack], kind: str) -> type[Attack]:
    """A subclass of the attack whose search lies (its spec type stays the honest one's; not registered)."""

    def _attack(
        self: Attack, model: nn.Module, x: Tensor, labels: Tensor, *, eps: float, generator: torch.Generator
    ) -> tuple[Tensor, ...]:
        found, _, *queries = cls._attack(self, model, x, labels, eps=eps, generator=generator)
        if kind == "claims_success":
            return (found, _claims_everything(self, labels), *queries)
        return (_outside(self, x, found, eps), _claims_nothing(self, labels), *queries)

    return type(f"{kind}_{cls.__name__}", (cls,), {"_attack": _attack})


def _spec(spec_type: type[AttackParamsBase]) -> AttackParamsBase:
    """A small configuration of a registered spec type."""
    name = spec_type.model_fields["name"].annotation.__args__[0]  # type: ignore[union-attr]
    budget = BUDGETS.get(name, {})
    norm = budget.get("norm", spec_type.model_fields["norm"].default)
    return spec_type.model_validate({"name": name, "eps": EPS[norm], **budget})


def _data(model: nn.Module, held_out) -> EvaluationData:
    x, y = torch.as_tensor(held_out[0][:SAMPLES]), torch.as_tensor(held_out[1][:SAMPLES])
    with torch.no_grad():
        logits = model(x)
    return EvaluationData(x, y, logits, logits.argmax(1) == y, batch_bounds(SAMPLES, 12))


def _figures(value: Any, path: str = "") -> dict[str, Any]:
    """Every leaf of an entry by its path, wall-clock times left out."""
    if isinstance(value, dict):
        items = value.items()
    elif isinstance(value, list):
        items = enumerate(value)
    else:
        return {path: value}
    leaves: dict[str, Any] = {}
    for key, inner in items:
        if key != "seconds":
            leaves |= _figures(inner, f"{path}.{key}")
    return leaves


def _same(left: dict[str, Any], right: dict[str, Any]) -> list[str]:
    """Paths whose figures differ (floats within a relative 1e-5)."""
    differ = [path for path in left.keys() ^ right.keys()]
    for path in left.keys() & right.keys():
        a, b = left[path], right[path]
        if isinstance(a, float) and isinstance(b, float):
            if not math.isclose(a, b, rel_tol=1e-5, abs_tol=1e-6):
                differ.append(path)
        elif a != b:
            differ.append(path)
    return differ


def _entry(model, attack_cls, spec, data) -> tuple[dict[str, Any], Any]:
    attack = attack_cls(spec)
    entry, arrays = evaluate_attack(
        model, attack, spec, data, index=0, seed=3, device=torch.device("cpu"),
        progress=ProgressTracker(1.0, None), worst=WorstCase(SAMPLES),
    )  # fmt: skip
    return entry, arrays


def test_every_builtin_attack_is_registered_and_has_a_small_budget():
    names = {cls.name for cls in registered_attacks().values()}
    assert set(BUILTIN) <= names
    assert set(BUDGETS) <= set(BUILTIN)


@pytest.mark.parametrize(
    "spec_type", sorted(registered_attacks(), key=lambda t: t.__name__), ids=lambda t: t.__name__
)
def test_a_lying_or_escaping_attack_changes_no_figure(small_cnn, held_out, spec_type):
    data = _data(small_cnn, held_out)
    spec = _spec(spec_type)
    honest_cls = registered_attacks()[spec_type]
    honest, honest_arrays = _entry(small_cnn, honest_cls, spec, data)
    assert any(row["n_succeeded"] for row in honest["results"]) or spec_type.__name__ == "FgsmParams"
    for kind in ("claims_success", "escapes_and_claims_failure"):
        mutant, arrays = _entry(small_cnn, _mutant(honest_cls, kind), spec, data)
        assert _same(_figures(mutant), _figures(honest)) == [], (spec_type.__name__, kind)
        assert (arrays["success"] == honest_arrays["success"]).all(), (spec_type.__name__, kind)
        assert torch.allclose(
            torch.as_tensor(arrays["x_adv"]), torch.as_tensor(honest_arrays["x_adv"]), atol=1e-5
        )
