"""Every attack, defense and detector spec the API accepts has the engine class built from it."""

import typing

from app.schemas import extraction as schemas
from worker.engine.extraction.defenses import DEFENSES
from worker.engine.extraction.detection import DETECTORS
from worker.engine.extraction.strategies import STRATEGIES


def test_every_spec_type_of_the_api_has_its_engine_class():
    assert set(STRATEGIES) == set(typing.get_args(schemas.ExtractionAttackSpec))
    assert set(DEFENSES) == set(typing.get_args(schemas.ExtractionDefenseSpec))
    assert set(DETECTORS) == {schemas.PradaParams}
    for registry in (STRATEGIES, DEFENSES, DETECTORS):
        assert all(engine.spec_type is spec for spec, engine in registry.items())
