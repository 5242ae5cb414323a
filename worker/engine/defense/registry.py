"""The one registry of defenses by enumerated name; the API's spec schema and the worker read it."""

from worker.engine.defense.adversarial_training import AdversarialTraining
from worker.engine.defense.base import Defense
from worker.engine.defense.distillation import Distillation
from worker.engine.defense.preprocessing.defense import Preprocessing
from worker.engine.defense.smoothing import RandomizedSmoothing
from worker.engine.defense.spec import SpecError

DEFENSES: dict[str, type[Defense]] = {
    cls.name: cls for cls in (AdversarialTraining, Distillation, Preprocessing, RandomizedSmoothing)
}


def defense_class(name: str) -> type[Defense]:
    """The defense registered under name; SpecError for an unknown one."""
    try:
        return DEFENSES[name]
    except KeyError:
        raise SpecError(f"unknown defense {name!r}; available: {', '.join(DEFENSES)}") from None
