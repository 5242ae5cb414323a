"""Registries are complete: every attack spec has an engine, and names the API lists exist in the engine.

Attack facts and parameters are not compared: they live on the spec only (the engine reads them).
"""

import typing

from app.schemas.evasion import AttackParamsBase, attack_specs
from app.schemas.resources import ARCHITECTURE_NAMES
from app.services.dataset_arrays import BUILTIN_DATASETS
from worker.engine.datasets import BUILTIN_DATASETS as ENGINE_DATASETS
from worker.engine.datasets import load_builtin
from worker.engine.evasion.attacks.registry import attack_type
from worker.engine.evasion.patch_eval import PHYSICAL_ATTACKS
from worker.engine.models.catalog import ARCHITECTURES


def test_every_attack_spec_has_an_engine():
    for name, spec_type in attack_specs().items():
        if issubclass(spec_type, AttackParamsBase):
            assert attack_type(spec_type).spec_type is spec_type, name
        else:
            assert spec_type in PHYSICAL_ATTACKS, name


def test_architecture_names_match_the_catalog():
    assert set(ARCHITECTURE_NAMES) == set(ARCHITECTURES)


def test_builtin_dataset_facts_match_what_the_engine_loads():
    assert set(BUILTIN_DATASETS) == set(ENGINE_DATASETS)
    for name, facts in BUILTIN_DATASETS.items():
        data = load_builtin(name)
        assert len(data.x) == facts.n_samples
        assert data.sample_shape == facts.sample_shape
        assert data.num_classes == facts.num_classes
        assert float(data.x.min()) == facts.x_min and float(data.x.max()) == facts.x_max
        assert str(data.x.dtype) == facts.dtype


def test_training_schedules_match_what_the_fit_loop_runs():
    from app.schemas.common import Schedule
    from worker.engine.training.recipe import SCHEDULES

    assert typing.get_args(Schedule) == SCHEDULES
