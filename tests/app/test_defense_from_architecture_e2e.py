"""Defense jobs on a catalog architecture registered without weights (POST /v1/models {"architecture"}).

A defense that trains from fresh weights runs, and its report's undefended side is a baseline the job
trains with the same recipe and no defense; every combination that needs the weights is a 422 at
submission, in agreement with the engine's own rule.
"""

from typing import Any

import pytest

from app.errors import InvalidInput
from app.orm import ModelRecord
from app.schemas.defense import DefenseJobSpec
from app.schemas.reports import REPORT_ADAPTER
from app.services.context import ServiceContext
from app.services.dataset_arrays import BUILTIN_DATASETS
from app.services.kinds import defense as defense_kind
from app.settings import Settings
from tests.app.helpers import artifacts_of, download, run, wait_for
from tests.app.test_defense_e2e import defense_spec
from tests.app.test_poisoning_e2e import ARCH
from tests.engine.defense_helpers import typed
from worker.engine.datasets import load_builtin
from worker.engine.defense.registry import DEFENSES

RECIPE = {"epochs": 2, "batch_size": 32, "learning_rate": 0.005}
AT = {"name": "adversarial_training", "method": "pgd", "eps": 0.1, "steps": 5, "init": "random", **RECIPE}


def combinations() -> list[dict[str, Any]]:
    """Every defense with every init (and distillation's teacher), with the smallest other parameters."""
    found: list[dict[str, Any]] = [{"name": "preprocessing", "transforms": [{"name": "jpeg"}]}]
    for init in ("pretrained", "random"):
        found += [
            {"name": "adversarial_training", "method": m, "eps": 0.1, "init": init}
            for m in ("pgd", "trades", "fast")
        ]
        found.append({"name": "randomized_smoothing", "sigma": 0.25, "init": init})
        found += [
            {"name": "distillation", "init": init, "teacher": teacher} for teacher in ("train", "upload")
        ]
    return found


def weightless_record() -> ModelRecord:
    """A ready catalog small-cnn without weights, as POST /v1/models {"architecture": ...} registers it."""
    return ModelRecord(
        id="mdl_weightless",
        tenant_id="t",
        name="arch",
        format="architecture",
        architecture="small-cnn",
        input_shape=[1, 8, 8],
        num_classes=10,
        input_range=[0.0, 1.0],
        white_box=True,
        status="ready",
    )


@pytest.mark.parametrize(
    "defense", combinations(), ids=lambda d: "-".join(str(v) for k, v in d.items() if k != "transforms")
)
def test_submission_refuses_exactly_the_combinations_the_engine_cannot_run_without_weights(defense):
    train = None if defense["name"] == "preprocessing" else "builtin:digits-train"
    spec = DefenseJobSpec.model_validate(defense_spec("mdl_weightless", defense, train=train))
    ctx = ServiceContext(session=None, tenant_id="t", settings=Settings(), queue=None)  # type: ignore[arg-type]
    engine_needs_weights = typed(defense).needs_weights
    held_out = BUILTIN_DATASETS["digits-test"]
    if engine_needs_weights:
        with pytest.raises(InvalidInput) as refused:
            defense_kind.check(ctx, weightless_record(), spec, held_out)
        assert refused.value.code == "model_untrained" and "without weights" in str(refused.value)
    else:
        defense_kind.check(ctx, weightless_record(), spec, held_out)
    # Exactly the wrappers, init pretrained and an uploaded teacher need the weights.
    assert engine_needs_weights == (
        defense["name"] == "preprocessing"
        or defense.get("init") == "pretrained"
        or defense.get("teacher") == "upload"
    )


@pytest.fixture(scope="module")
def tenant(make_key, start_worker) -> dict:
    start_worker()
    return make_key("defense-architecture-tenant")


@pytest.fixture(scope="module")
def weightless(api, tenant) -> dict:
    response = api.post("/v1/models", headers=tenant, json=ARCH)
    assert response.status_code == 202, response.text
    model = wait_for(api, f"/v1/models/{response.json()['id']}", tenant, {"ready", "invalid"}, timeout=60)
    assert model["status"] == "ready", model
    return model


@pytest.mark.service
def test_adversarial_training_from_a_weightless_architecture_reports_a_trained_baseline(
    api, tenant, weightless
):
    from worker.engine.models.intake import OnnxRuntimeClassifier

    job = run(api, tenant, defense_spec(weightless["id"], AT))
    assert job["status"] == "succeeded", job
    report = api.get(f"/v1/jobs/{job['id']}/report", headers=tenant).json()
    REPORT_ADAPTER.validate_python(report)  # the typed public contract
    evaluation = report["evaluation"]
    undefended, defended = evaluation["undefended"], evaluation["defended"]
    assert undefended["source"] == "trained_baseline" and "without the defense" in undefended["description"]
    recipe = undefended["training"]["recipe"]
    assert (recipe["epochs"], recipe["batch_size"], recipe["learning_rate"]) == (2, 32, 0.005)
    assert [row["epoch"] for row in undefended["training"]["curve"]] == [1, 2]
    # Both sides attacked and measured; the plain-trained baseline learned the task.
    assert undefended["attacks"] and defended["runs"][0]["attacks"]
    headline = report["headline"]
    assert headline["undefended_clean_accuracy"] >= 0.8 and headline["clean_accuracy"] >= 0.7
    assert headline["robust_accuracy"] > headline["undefended_robust_accuracy"]
    checks = {c["name"]: c["passed"] for c in report["checks"]}
    assert checks["exported_baseline_matches_trained"] and checks["exported_model_matches_trained"]

    (hardened_id,) = report["derived_model_ids"]
    hardened = api.get(f"/v1/models/{hardened_id}", headers=tenant).json()
    assert hardened["status"] == "ready" and hardened["derived_from"] == weightless["id"]
    onnx = download(
        api, tenant, next(a for a in artifacts_of(api, tenant, job["id"]) if a["kind"] == "model_onnx")
    )
    test = load_builtin("digits-test")
    measured = float((OnnxRuntimeClassifier(onnx)(test.x[:100]).argmax(1) == test.y[:100]).mean())
    assert defended["clean_accuracy"] == pytest.approx(measured)
    html = api.get(f"/v1/jobs/{job['id']}/report.html", headers=tenant).text
    assert "trained baseline" in html


@pytest.mark.service
def test_distillation_from_a_weightless_architecture_trains_its_teacher_first(api, tenant, weightless):
    distillation = {"name": "distillation", "temperature": 20.0, **RECIPE}
    job = run(api, tenant, defense_spec(weightless["id"], distillation))
    assert job["status"] == "succeeded", job
    report = api.get(f"/v1/jobs/{job['id']}/report", headers=tenant).json()
    REPORT_ADAPTER.validate_python(report)  # the typed public contract
    assert report["evaluation"]["undefended"]["source"] == "trained_baseline"
    assert len(report["training"]["teacher_curve"]) == 2 and len(report["training"]["curve"]) == 2
    assert report["headline"]["undefended_clean_accuracy"] >= 0.8


@pytest.mark.service
def test_every_combination_that_needs_the_weights_is_a_422_at_submission(api, tenant, weightless):
    needs = [d for d in combinations() if typed(d).needs_weights]
    assert len(needs) == 8
    for defense in needs:
        train = None if defense["name"] == "preprocessing" else "builtin:digits-train"
        response = api.post(
            "/v1/jobs", headers=tenant, json=defense_spec(weightless["id"], defense, train=train)
        )
        assert response.status_code == 422, (defense, response.text)
        error = response.json()["error"]
        assert error["code"] == "model_untrained" and "without weights" in error["message"], error
    # The default init of adversarial training and smoothing is "pretrained": refused the same way.
    bare = {"name": "adversarial_training", "eps": 0.1}
    assert api.post("/v1/jobs", headers=tenant, json=defense_spec(weightless["id"], bare)).status_code == 422
    assert not [
        j
        for j in api.get("/v1/jobs", headers=tenant).json()["items"]
        if j["model_id"] == weightless["id"] and j["status"] == "failed"
    ]


def test_combinations_cover_every_registered_defense():
    assert {type(typed(d)) for d in combinations()} == set(DEFENSES)
