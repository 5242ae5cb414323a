"""The one registry of poisoning attacks by enumerated name; the API's spec schema and the worker read it."""

from collections.abc import Mapping
from typing import Any

from worker.engine.poisoning.attacks.backdoors import BadNets, Blended
from worker.engine.poisoning.attacks.base import PoisoningAttack
from worker.engine.poisoning.attacks.feature_collision import FeatureCollision
from worker.engine.poisoning.attacks.gradient_matching import GradientMatching
from worker.engine.poisoning.attacks.label_consistent import LabelConsistent
from worker.engine.poisoning.attacks.label_flip import LabelFlip

POISONING_ATTACKS: dict[str, type[PoisoningAttack]] = {
    attack.name: attack
    for attack in (LabelFlip, BadNets, Blended, LabelConsistent, FeatureCollision, GradientMatching)
}


def poisoning_attack_class(name: str) -> type[PoisoningAttack]:
    """The attack class registered under name; ValueError for an unknown name."""
    try:
        return POISONING_ATTACKS[name]
    except KeyError:
        known = ", ".join(sorted(POISONING_ATTACKS))
        raise ValueError(f"unknown poisoning attack {name!r}; available: {known}") from None


def build_attack(spec: Mapping[str, Any]) -> tuple[PoisoningAttack, list[float]]:
    """The attack of a spec entry ({name, rate, **params}) and its rates; ValueError for a bad entry."""
    entry = dict(spec)
    if "name" not in entry or "rate" not in entry:
        raise ValueError("a poisoning attack entry needs 'name' and 'rate'")
    name, rates = entry.pop("name"), entry.pop("rate")
    rates = [float(rates)] if isinstance(rates, int | float) else [float(rate) for rate in rates]
    if not rates:
        raise ValueError(f"{name}: give at least one rate")
    return poisoning_attack_class(name).from_spec(entry), rates
