"""The API's extraction schemas name what the engine implements, with the same keys and defaults."""

import inspect
import typing

from app.schemas import extraction as schemas
from worker.engine.extraction.defenses import DEFENSES
from worker.engine.extraction.detection import DETECTORS
from worker.engine.extraction.strategies import STRATEGIES


def _by_name(union) -> dict[str, type]:
    members = typing.get_args(typing.get_args(union)[0])
    return {typing.get_args(m.model_fields["name"].annotation)[0]: m for m in members}


def _spec_fields(schema: type) -> dict[str, object]:
    """Spec key (alias where there is one) -> published default, without the name."""
    return {
        (field.alias or key): field.default for key, field in schema.model_fields.items() if key != "name"
    }


def _engine_defaults(cls: type) -> dict[str, object]:
    renamed = {v: k for k, v in getattr(cls, "RENAMED", {}).items()}
    parameters = inspect.signature(cls.__init__).parameters.values()
    return {
        renamed.get(p.name, p.name): p.default
        for p in parameters
        if p.name != "self" and p.kind is inspect.Parameter.KEYWORD_ONLY
    }


def test_attack_names_keys_and_defaults_agree():
    api = _by_name(schemas.ExtractionAttack)
    assert set(api) == set(STRATEGIES)
    for name, schema in api.items():
        assert set(_spec_fields(schema)) == set(STRATEGIES[name].SPEC_KEYS), name
        assert _spec_fields(schema) == _engine_defaults(STRATEGIES[name]), name
        assert schema.draws_from_pool == STRATEGIES[name].draws_from_pool


def test_defense_and_detector_names_keys_and_defaults_agree():
    api = _by_name(schemas.ExtractionDefense)
    assert set(api) == set(DEFENSES)
    for name, schema in api.items():
        assert _spec_fields(schema) == _engine_defaults(DEFENSES[name]), name
    assert _spec_fields(schemas.PradaParams) == _engine_defaults(DETECTORS["prada"])
    assert set(DETECTORS) == {"prada"}


def test_surrogate_defaults_agree_with_the_engine_recipe():
    from worker.engine.extraction.surrogate import SPEC_KEYS, surrogate_min_steps, surrogate_recipe

    recipe = surrogate_recipe({})
    published = schemas.SurrogateParams()
    for key in ("epochs", "batch_size", "learning_rate", "optimizer", "weight_decay"):
        assert getattr(recipe, key) == getattr(published, key), key
    assert surrogate_min_steps({}) == published.min_steps
    assert set(SPEC_KEYS) == set(schemas.SurrogateParams.model_fields)
