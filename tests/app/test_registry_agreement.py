"""Names the API enumerates match what the engine implements."""

import typing

from app.schemas.attacks import ATTACK_NAMES, WHITE_BOX_ATTACKS, AttackParams
from app.schemas.resources import ARCHITECTURE_NAMES
from app.services.dataset_arrays import BUILTIN_DATASETS
from worker.engine.attacks.registry import ATTACKS
from worker.engine.catalog import ARCHITECTURES
from worker.engine.datasets import BUILTIN_DATASETS as ENGINE_DATASETS
from worker.engine.datasets import load_builtin


def test_attack_schemas_and_engine_registry_name_the_same_attacks():
    union = typing.get_args(typing.get_args(AttackParams)[0])
    schema_names = {typing.get_args(model.model_fields["name"].annotation)[0] for model in union}
    assert schema_names == set(ATTACK_NAMES) == set(ATTACKS)
    assert set(ATTACKS) >= WHITE_BOX_ATTACKS


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
