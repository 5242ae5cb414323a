"""Every kind's report stays what it is for the same spec and seed (goldens recorded before a refactor).

The figures of a fixed spec per kind, run through the live service, are compared with the JSON recorded in
`tests/app/goldens/`. A change that moves a figure on purpose (a new recipe, a stronger attack) re-records
them with `GAUNTLET_UPDATE_GOLDENS=1` and says so in its commit; a refactor must leave them untouched.
"""

import json
import os
from pathlib import Path
from typing import Any

import pytest

from tests.app.helpers import ready_model, wait_for

GOLDENS = Path(__file__).parent / "goldens"
UPDATE = os.environ.get("GAUNTLET_UPDATE_GOLDENS") == "1"
# Fields that name the run rather than measure it.
VOLATILE = {"job_id", "model_id", "generated_at", "versions", "seconds", "derived_model_ids", "id", "device"}
TOLERANCE = 1e-6

SPECS: dict[str, dict[str, Any]] = {
    "evasion": {
        "kind": "evasion",
        "dataset_id": "builtin:digits-test",
        "seed": 3,
        "params": {
            "attacks": [
                {"name": "fgsm", "eps": [0.05, 0.1]},
                {"name": "pgd", "eps": [0.1], "steps": 10},
                {
                    "name": "pgd",
                    "norm": "l2",
                    "eps": [0.5],
                    "steps": 10,
                    "targeted": True,
                    "target_mode": "random",
                },
                {"name": "square", "eps": [0.1], "queries": 100},
            ],
            "max_samples": 60,
            "batch_size": 32,
        },
    },
    "extraction": {
        "kind": "extraction",
        "dataset_id": "builtin:digits-test",
        "seed": 3,
        "params": {
            "query_dataset_id": "builtin:digits-train",
            "budgets": [100, 200],
            "attacks": [{"name": "knockoff", "strategy": "random"}],
            "surrogate": {
                "architecture": "small-cnn",
                "epochs": 3,
                "batch_size": 64,
                "learning_rate": 0.001,
                "min_steps": 0,
            },
            "defenses": [{"name": "top_k", "k": 1}],
        },
    },
    "poisoning": {
        "kind": "poisoning",
        "dataset_id": "builtin:digits-test",
        "seed": 3,
        "params": {
            "train_dataset_id": "builtin:digits-train",
            "training": {"init": "random", "epochs": 3, "batch_size": 64},
            "attacks": [{"name": "badnets", "target_class": 0, "rate": [0.1]}],
            "detection": [{"name": "spectral_signatures"}],
        },
    },
    "defense": {
        "kind": "defense",
        "dataset_id": "builtin:digits-test",
        "seed": 3,
        "params": {
            "train_dataset_id": "builtin:digits-train",
            "defense": {
                "name": "adversarial_training",
                "method": "pgd",
                "eps": 0.1,
                "steps": 3,
                "epochs": 1,
                "init": "pretrained",
            },
            "evaluation": {
                "attacks": [{"name": "pgd", "eps": [0.1], "steps": 10}],
                "max_samples": 60,
                "sanity_runs": False,
            },
        },
    },
}


def figures(value: Any) -> Any:
    """The report without the fields that name the run, for comparison."""
    if isinstance(value, dict):
        return {k: figures(v) for k, v in sorted(value.items()) if k not in VOLATILE}
    if isinstance(value, list):
        return [figures(v) for v in value]
    return value


def assert_same(actual: Any, expected: Any, where: str = "report") -> None:
    """Equal structure and text, numbers within TOLERANCE."""
    if isinstance(expected, dict):
        assert isinstance(actual, dict), where
        assert sorted(actual) == sorted(expected), f"{where}: keys {sorted(actual)} != {sorted(expected)}"
        for key in expected:
            assert_same(actual[key], expected[key], f"{where}.{key}")
    elif isinstance(expected, list):
        assert isinstance(actual, list) and len(actual) == len(expected), where
        for i, (a, e) in enumerate(zip(actual, expected, strict=True)):
            assert_same(a, e, f"{where}[{i}]")
    elif isinstance(expected, float) and not isinstance(expected, bool):
        assert isinstance(actual, int | float), where
        assert abs(actual - expected) <= TOLERANCE, f"{where}: {actual} != {expected}"
    elif isinstance(expected, str) and expected.startswith("mdl_"):
        assert isinstance(actual, str) and actual.startswith("mdl_"), where
    else:
        assert actual == expected, f"{where}: {actual!r} != {expected!r}"


@pytest.fixture(scope="module")
def tenant(make_key, start_worker) -> dict:
    start_worker()
    return make_key("stability-tenant")


@pytest.mark.service
@pytest.mark.slow
@pytest.mark.parametrize("kind", sorted(SPECS))
def test_report_figures_match_the_recorded_golden(api, tenant, digits_onnx, kind: str) -> None:
    model = ready_model(api, tenant, digits_onnx)
    spec = {**SPECS[kind], "model_id": model["id"]}
    response = api.post("/v1/jobs", headers=tenant, json=spec)
    assert response.status_code == 202, response.text
    job = wait_for(api, f"/v1/jobs/{response.json()['id']}", tenant, {"succeeded", "failed"}, timeout=600)
    assert job["status"] == "succeeded", job
    report = figures(api.get(f"/v1/jobs/{job['id']}/report", headers=tenant).json())
    golden = GOLDENS / f"{kind}.json"
    if UPDATE:
        GOLDENS.mkdir(exist_ok=True)
        golden.write_text(json.dumps(report, indent=1, sort_keys=True) + "\n")
    assert_same(report, json.loads(golden.read_text()))
