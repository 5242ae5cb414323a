"""The one registry of evasion attacks by enumerated name; the API's spec schema and the worker read it."""

from worker.engine.attacks.base import Attack
from worker.engine.attacks.fgsm import FGSM
from worker.engine.attacks.pgd import PGD

ATTACKS: dict[str, type[Attack]] = {
    FGSM.name: FGSM,
    PGD.name: PGD,
}


def attack_class(name: str) -> type[Attack]:
    """The attack class registered under name; raises ValueError for an unknown name."""
    try:
        return ATTACKS[name]
    except KeyError:
        raise ValueError(f"unknown attack {name!r}; available: {', '.join(sorted(ATTACKS))}") from None
