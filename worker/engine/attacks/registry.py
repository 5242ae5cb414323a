"""The one registry of evasion attacks by enumerated name; the API's spec schema and the worker read it."""

from worker.engine.attacks.apgd import APGD
from worker.engine.attacks.autoattack import AutoAttack
from worker.engine.attacks.base import Attack
from worker.engine.attacks.carlini_wagner import CarliniWagnerL2
from worker.engine.attacks.deepfool import DeepFool
from worker.engine.attacks.fab import FAB
from worker.engine.attacks.fgsm import FGSM
from worker.engine.attacks.hop_skip_jump import HopSkipJump
from worker.engine.attacks.pgd import PGD
from worker.engine.attacks.square import SquareAttack

ATTACKS: dict[str, type[Attack]] = {
    attack.name: attack
    for attack in (FGSM, PGD, APGD, FAB, CarliniWagnerL2, DeepFool, AutoAttack, SquareAttack, HopSkipJump)
}


def attack_class(name: str) -> type[Attack]:
    """The attack class registered under name; raises ValueError for an unknown name."""
    try:
        return ATTACKS[name]
    except KeyError:
        raise ValueError(f"unknown attack {name!r}; available: {', '.join(sorted(ATTACKS))}") from None
