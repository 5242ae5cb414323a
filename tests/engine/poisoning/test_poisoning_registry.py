"""The API's poisoning schemas and the engine's registries agree: names, parameters, defaults and facts."""

from dataclasses import MISSING, fields
from typing import get_args

from app.schemas.poisoning import PoisoningAttack, PoisoningTrainingParams, TriggerParams
from app.schemas.poisoning_detection import PoisoningDetector
from worker.engine.poisoning.attacks.registry import POISONING_ATTACKS
from worker.engine.poisoning.attacks.triggers import PatchTrigger
from worker.engine.poisoning.detection.registry import DETECTORS
from worker.engine.training.recipe import TrainingRecipe

FACTS = ("clean_label", "needs_images", "per_target", "rate_of")


def _schemas(union) -> dict:
    return {get_args(m.model_fields["name"].annotation)[0]: m for m in get_args(get_args(union)[0])}


def _defaults(cls) -> dict:
    out = {}
    for field in fields(cls):
        if field.init and field.default is not MISSING:
            out[field.name] = field.default
        elif field.init and field.default_factory is not MISSING:
            value = field.default_factory()
            out[field.name] = value.params() if hasattr(value, "params") else value
    return out


def test_attack_schemas_match_the_engine():
    schemas = _schemas(PoisoningAttack)
    assert set(schemas) == set(POISONING_ATTACKS)
    for name, schema in schemas.items():
        engine = POISONING_ATTACKS[name]
        params = set(schema.model_fields) - {"name", "rate"}
        assert params == {f.name for f in fields(engine) if f.init}, name
        dumped = schema.model_validate({"name": name, "rate": [0.1]}).model_dump()
        for key, value in _defaults(engine).items():
            assert dumped[key] == value, (name, key)
        for fact in FACTS:
            assert getattr(schema, fact) == getattr(engine, fact), (name, fact)
        # Built from what the API stores, the engine accepts every field.
        engine.from_spec({k: v for k, v in dumped.items() if k not in ("name", "rate")})


def test_surrogate_fact_matches():
    for name, schema in _schemas(PoisoningAttack).items():
        engine = POISONING_ATTACKS[name]
        if name != "label_flip":
            assert schema.needs_surrogate == engine.needs_surrogate, name


def test_detector_schemas_match_the_engine():
    schemas = _schemas(PoisoningDetector)
    assert set(schemas) == set(DETECTORS)
    for name, schema in schemas.items():
        dumped = schema.model_validate({"name": name}).model_dump()
        assert set(dumped) - {"name"} == {f.name for f in fields(DETECTORS[name]) if f.init}
        for key, value in _defaults(DETECTORS[name]).items():
            assert dumped[key] == value, (name, key)
        assert schema.reads_features == (DETECTORS[name].reads == "features")


def test_trigger_and_recipe_match():
    assert TriggerParams().model_dump() == PatchTrigger().params()
    recipe = PoisoningTrainingParams().model_dump()
    recipe.pop("init")
    assert set(recipe) == {f.name for f in fields(TrainingRecipe)}
    TrainingRecipe.from_spec(recipe)
