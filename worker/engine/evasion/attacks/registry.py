"""The one registry of evasion attacks by enumerated name; the API's spec schema and the worker read it."""

from worker.engine.evasion.attacks.apgd import APGD
from worker.engine.evasion.attacks.autoattack import AutoAttack
from worker.engine.evasion.attacks.base import Attack
from worker.engine.evasion.attacks.carlini_wagner import CarliniWagnerL2
from worker.engine.evasion.attacks.deepfool import DeepFool
from worker.engine.evasion.attacks.fab import FAB
from worker.engine.evasion.attacks.fgsm import FGSM
from worker.engine.evasion.attacks.hop_skip_jump import HopSkipJump
from worker.engine.evasion.attacks.pgd import PGD
from worker.engine.evasion.attacks.square import SquareAttack

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
