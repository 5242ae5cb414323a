"""The engine's registries cover every attack and detector the API accepts, built from the typed spec."""

from dataclasses import fields
from typing import get_args

import pytest

from app.schemas.poisoning import ATTACK_SPECS, BACKDOOR_ATTACKS, PoisoningTrainingParams, spec_name
from app.schemas.poisoning_detection import PoisoningDetector
from worker.engine.poisoning.attacks.base import Backdoor
from worker.engine.poisoning.attacks.registry import POISONING_ATTACKS, build_attack
from worker.engine.poisoning.detection.registry import DETECTORS, build_detector
from worker.engine.training.recipe import TrainingRecipe


def test_every_attack_spec_builds_its_engine_class():
    assert set(POISONING_ATTACKS) == set(ATTACK_SPECS)
    for spec_type in ATTACK_SPECS:
        spec = spec_type.model_validate({"name": spec_name(spec_type), "rate": [0.1, 0.2]})
        attack = build_attack(spec)
        assert attack.spec is spec and attack.name == spec_name(spec_type) and attack.rates == [0.1, 0.2]
        # The engine's trigger interface and the spec's backdoor fact (params.repair reads it) agree.
        assert isinstance(attack, Backdoor) == spec_type.backdoor == (attack.name in BACKDOOR_ATTACKS)


def test_every_detector_spec_builds_its_engine_class():
    specs = get_args(get_args(PoisoningDetector)[0])
    assert set(DETECTORS) == set(specs)
    for spec_type in specs:
        spec = spec_type.model_validate({"name": spec_name(spec_type)})
        assert build_detector(spec).spec is spec


def test_a_spec_of_another_kind_is_refused():
    (detector,) = get_args(get_args(PoisoningDetector)[0])[:1]
    with pytest.raises(ValueError, match="no poisoning attack"):
        build_attack(detector.model_validate({"name": spec_name(detector)}))  # type: ignore[arg-type]


def test_recipe_matches():
    recipe = PoisoningTrainingParams().model_dump()
    recipe.pop("init")
    assert set(recipe) == {f.name for f in fields(TrainingRecipe)}
    TrainingRecipe.from_spec(recipe)
