"""Bad extraction input is refused with a stable code before any query is sent."""

import numpy as np
import pytest
from pydantic import ValidationError

from app.schemas.evasion import PgdParams
from app.schemas.extraction import ExtractionParams
from tests.engine.extraction_helpers import SHAPE, CountingVictim, victim_graph_factory
from worker.engine.datasets import load_builtin
from worker.engine.extraction import ExtractionError, run_extraction
from worker.engine.extraction.plan import build_plan
from worker.engine.extraction.pools import synthetic_uniform

BASE = {
    "query_dataset_id": "builtin:digits-train",
    "budgets": [100, 200],
    "attacks": [{"name": "knockoff", "strategy": "random"}],
    "surrogate": {"architecture": "victim", "epochs": 1, "min_steps": 0},
}


def refuse(onnx, code, params=BASE, pool=None, x_eval=None):
    victim = CountingVictim(onnx)
    test = load_builtin("digits-test")
    pool = load_builtin("digits-train").x if pool is None else pool
    with pytest.raises(ExtractionError) as caught:
        run_extraction(
            victim,
            test.x if x_eval is None else x_eval,
            test.y,
            pool,
            ExtractionParams.model_validate(params),
            input_shape=SHAPE,
            num_classes=10,
            input_range=(0.0, 1.0),
            make_surrogate=victim_graph_factory(onnx),
        )
    assert caught.value.code == code
    assert victim.samples == 0


def test_a_budget_above_the_pool_is_refused_for_pool_attacks_only(cnn_onnx):
    small = load_builtin("digits-train").x[:150]
    refuse(cnn_onnx, "budget_above_pool", pool=small)
    active = BASE | {"attacks": [{"name": "active"}]}
    refuse(cnn_onnx, "budget_above_pool", active, pool=small)
    plan = build_plan(
        ExtractionParams.model_validate(BASE | {"attacks": [{"name": "jacobian", "seed_size": 50}]})
    )
    assert plan.max_budget == 200  # jacobian synthesises its queries: 150 pool samples are enough
    assert [spec.pool_need(200) for spec in plan.attacks] == [50]


def test_a_pool_that_does_not_fit_the_victim(cnn_onnx):
    pool = load_builtin("digits-train").x
    refuse(cnn_onnx, "pool_shape_mismatch", pool=pool[:, :, :4, :])
    refuse(cnn_onnx, "pool_out_of_range", pool=pool * 2.0)
    nan = pool.copy()
    nan[0, 0, 0, 0] = np.nan
    refuse(cnn_onnx, "pool_out_of_range", pool=nan)


def test_an_evaluation_set_that_does_not_fit(cnn_onnx):
    refuse(cnn_onnx, "dataset_out_of_range", x_eval=load_builtin("digits-test").x + 1.5)


def test_unknown_names_keys_and_bad_budgets_are_refused_by_the_spec():
    for params in (
        BASE | {"budgets": [200, 100]},
        BASE | {"budgets": [100, 100]},
        BASE | {"budgets": [0]},
        BASE | {"budgets": []},
        BASE | {"attacks": [{"name": "knockoff", "strategy": "greedy"}]},
        BASE | {"attacks": [{"name": "knockoff", "temperature": 1}]},
        BASE | {"attacks": [{"name": "steal_everything"}]},
        BASE | {"defenses": [{"name": "watermark"}]},
        BASE | {"defenses": [{"name": "top_k", "k": 0}]},
        BASE | {"detection": [{"name": "prada", "delta": 1.5}]},
        BASE | {"transfer": {"name": "pgd", "eps": []}},
        BASE | {"transfer": {"name": "pgd", "eps": [0.1], "steps": 0}},  # PGD's limits
        BASE | {"transfer": {"name": "pgd", "eps": [0.1], "step_size": -0.1}},
        BASE | {"transfer": {"name": "pgd", "eps": [0.1], "restarts": 101}},
        BASE | {"surrogate": {"architecture": "victim", "momentum_magic": 1}},
        BASE | {"victim_output": {"kind": "top_k"}},
        BASE | {"unknown": 1},
    ):
        with pytest.raises(ValidationError):
            ExtractionParams.model_validate(params)


def test_transfer_takes_the_evasion_kinds_pgd_defaults():
    transfer = ExtractionParams.model_validate(BASE | {"transfer": {"name": "pgd", "eps": [0.1]}}).transfer
    pgd = PgdParams(name="pgd", eps=[0.1])
    assert transfer is not None
    for key in ("norm", "steps", "step_size", "random_start", "restarts"):
        assert getattr(transfer, key) == getattr(pgd, key), key


def test_a_defense_listed_twice_is_refused_but_two_settings_are_fine():
    twice = [{"name": "rounding", "decimals": 1}, {"name": "rounding", "decimals": 1}]
    with pytest.raises(ExtractionError):
        build_plan(ExtractionParams.model_validate(BASE | {"defenses": twice}))
    two = [{"name": "rounding", "decimals": 1}, {"name": "rounding", "decimals": 2}]
    plan = build_plan(ExtractionParams.model_validate(BASE | {"defenses": two}))
    assert [row.name for row in plan.rows] == ["none", "rounding", "rounding", "label_only"]


def test_synthetic_uniform_pool_is_seeded_and_in_range():
    a = synthetic_uniform(SHAPE, 500, (-1.0, 2.0), seed=3)
    assert a.shape == (500, *SHAPE) and a.dtype == np.float32
    assert a.min() >= -1.0 and a.max() <= 2.0 and a.std() > 0.5
    np.testing.assert_array_equal(a, synthetic_uniform(SHAPE, 500, (-1.0, 2.0), seed=3))
    assert not np.array_equal(a, synthetic_uniform(SHAPE, 500, (-1.0, 2.0), seed=4))
