"""The one registry of poisoning attacks, keyed by the spec type each engine class is built from."""

from app.schemas.poisoning import PoisoningAttackBase
from worker.engine.poisoning.attacks.backdoors import BadNets, Blended
from worker.engine.poisoning.attacks.base import PoisoningAttack
from worker.engine.poisoning.attacks.feature_collision import FeatureCollision
from worker.engine.poisoning.attacks.gradient_matching import GradientMatching
from worker.engine.poisoning.attacks.label_consistent import LabelConsistent
from worker.engine.poisoning.attacks.label_flip import LabelFlip

POISONING_ATTACKS: dict[type[PoisoningAttackBase], type[PoisoningAttack]] = {
    attack.spec_type: attack
    for attack in (LabelFlip, BadNets, Blended, LabelConsistent, FeatureCollision, GradientMatching)
}


def build_attack(spec: PoisoningAttackBase) -> PoisoningAttack:
    """The engine attack of a validated spec entry; ValueError for a spec type without one."""
    engine = POISONING_ATTACKS.get(type(spec))
    if engine is None:
        raise ValueError(f"no poisoning attack is built from {type(spec).__name__}")
    return engine(spec)
