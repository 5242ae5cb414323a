"""The one registry of defenses, keyed by their typed spec (app.schemas.defense)."""

from typing import Any

from app.schemas.defense import DefenseFacts, EvaluatedDefenseSpec
from worker.engine.defense.adversarial_training import AdversarialTraining
from worker.engine.defense.base import Defense
from worker.engine.defense.distillation import Distillation
from worker.engine.defense.preprocessing.defense import Preprocessing
from worker.engine.defense.smoothing import RandomizedSmoothing

DEFENSES: dict[type[DefenseFacts], type[Defense[Any]]] = {
    cls.spec_type: cls for cls in (AdversarialTraining, Distillation, Preprocessing, RandomizedSmoothing)
}


def build_defense(spec: EvaluatedDefenseSpec) -> Defense[Any]:
    """The engine defense of a typed spec."""
    return DEFENSES[type(spec)](spec)
