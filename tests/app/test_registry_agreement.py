"""Names the API enumerates match what the engine implements."""

import dataclasses
import typing

from app.schemas.evasion import ATTACK_NAMES, ATTACK_SCHEMAS, PHYSICAL_ATTACKS, AttackParams
from app.schemas.resources import ARCHITECTURE_NAMES
from app.services.dataset_arrays import BUILTIN_DATASETS
from worker.engine.datasets import BUILTIN_DATASETS as ENGINE_DATASETS
from worker.engine.datasets import load_builtin
from worker.engine.evasion.attacks.registry import ATTACKS
from worker.engine.evasion.patch import PatchConfig
from worker.engine.evasion.patch_eval import PHYSICAL_ATTACKS as ENGINE_PHYSICAL
from worker.engine.models.catalog import ARCHITECTURES


def _schemas() -> dict[str, type]:
    union = typing.get_args(typing.get_args(AttackParams)[0])
    return {typing.get_args(model.model_fields["name"].annotation)[0]: model for model in union}


def test_attack_schemas_and_engine_registry_name_the_same_attacks():
    assert set(_schemas()) == set(ATTACK_NAMES) | set(PHYSICAL_ATTACKS) == set(ATTACK_SCHEMAS)
    assert set(ATTACK_NAMES) == set(ATTACKS)
    assert set(PHYSICAL_ATTACKS) == set(ENGINE_PHYSICAL)


def test_attack_facts_agree_between_api_and_engine():
    for name, cls in ATTACKS.items():
        schema = ATTACK_SCHEMAS[name]
        assert schema.white_box == cls.requires_gradients, name
        assert schema.needs_images == cls.needs_images, name
        assert schema.minimum_norm == cls.minimum_norm, name
    for name in ENGINE_PHYSICAL:
        assert ATTACK_SCHEMAS[name].white_box and ATTACK_SCHEMAS[name].needs_images


def test_attack_schema_fields_are_what_the_engine_reads():
    common = {"name", "norm", "eps", "targeted", "target_mode", "target_class"}
    for name, schema in _schemas().items():
        fields = set(schema.model_fields)
        if name in ENGINE_PHYSICAL:
            assert fields - {"name"} == {field.name for field in dataclasses.fields(PatchConfig)}
        else:
            assert fields - common == set(ATTACKS[name].SPEC_KEYS), name


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
