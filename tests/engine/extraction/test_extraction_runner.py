"""run_extraction end to end on a tiny victim: rows, budgets, figures measured on the exported surrogate."""

import numpy as np
import pytest

from app.schemas.extraction import ExtractionParams
from tests.engine.extraction_helpers import SHAPE, CountingVictim, victim_graph_factory
from worker.engine.datasets import load_builtin
from worker.engine.extraction import run_extraction
from worker.engine.models.intake import OnnxRuntimeClassifier

PARAMS = {
    "query_dataset_id": "builtin:digits-train",
    "victim_output": {"kind": "probabilities"},
    "budgets": [100, 250],
    "attacks": [
        {"name": "knockoff", "strategy": "random"},
        {"name": "jacobian", "seed_size": 60, "rounds": 3, "lambda": 0.1},
    ],
    "surrogate": {"architecture": "victim", "epochs": 10, "batch_size": 64, "min_steps": 0},
    "defenses": [{"name": "top_k", "k": 1}, {"name": "reverse_sigmoid", "beta": 0.7, "gamma": 0.4}],
    "detection": [{"name": "prada", "delta": 0.9}],
    "transfer": {"name": "pgd", "norm": "linf", "eps": [0.2], "steps": 10},
    "max_samples": 150,
}


def run(onnx, white_box=None, params=PARAMS):
    victim = CountingVictim(onnx)
    pool = load_builtin("digits-train").x
    test = load_builtin("digits-test")
    fractions = []
    outcome = run_extraction(
        victim,
        test.x,
        test.y,
        pool,
        ExtractionParams.model_validate(params),
        input_shape=SHAPE,
        num_classes=10,
        input_range=(0.0, 1.0),
        make_surrogate=victim_graph_factory(onnx),
        victim_white_box=white_box,
        seed=0,
        progress=lambda fraction, stage: fractions.append(fraction),
    )
    return outcome, victim, fractions


@pytest.fixture(scope="module")
def result(cnn_onnx, small_cnn):
    return run(cnn_onnx, white_box=small_cnn)


def test_every_attack_has_none_first_each_defense_and_a_label_only_row(result):
    report = result[0].report
    for attack in report["attacks"]:
        names = [row["defense"] for row in attack["rows"]]
        assert names == ["none", "top_k", "reverse_sigmoid", "label_only"]
        assert [row["sees"] for row in attack["rows"]] == ["probabilities"] * 3 + ["label"]
        for row in attack["rows"]:
            assert [r["budget"] for r in row["results"]] == [100, 250]
            assert all(r["queries"] <= r["budget"] for r in row["results"]) and row["queries"] <= 250
            assert "transfer" in row["results"][-1]
    assert report["defenses"][-1]["implicit"] is True
    assert all(check["passed"] for check in report["checks"]), report["checks"]


def test_every_query_the_victim_saw_is_in_the_report(result):
    outcome, victim, _ = result
    report = outcome.report
    attack_queries = sum(row["queries"] for a in report["attacks"] for row in a["rows"])
    transfers = sum(
        t["n_attacked"]
        for a in report["attacks"]
        for row in a["rows"]
        for t in row["results"][-1]["transfer"]
    )
    white_box = sum(t["n_attacked"] for t in report["transfer"]["white_box"])
    assert victim.samples == report["n_samples"] + attack_queries + transfers + white_box


def test_fidelity_is_what_the_stored_surrogate_gives_in_onnxruntime(result, cnn_onnx):
    outcome, _, _ = result
    x = load_builtin("digits-test").x[:150]
    y = load_builtin("digits-test").y[:150]
    victim_labels = OnnxRuntimeClassifier(cnn_onnx)(x).argmax(1)
    assert len(outcome.surrogates) == 2
    for artifact, attack in zip(outcome.surrogates, outcome.report["attacks"], strict=True):
        labels = OnnxRuntimeClassifier(artifact.onnx)(x).argmax(1)
        final = attack["rows"][0]["results"][-1]
        assert final["fidelity"] == pytest.approx(float((labels == victim_labels).mean()))
        assert final["surrogate_accuracy"] == pytest.approx(float((labels == y).mean()))
        assert final["fidelity"] > 0.5 and artifact.fidelity == final["fidelity"]


def test_query_logs_hold_inputs_and_what_the_attacker_got(result):
    outcome, _, _ = result
    assert len(outcome.query_logs) == 2
    for arrays in outcome.query_logs.values():
        assert arrays["x"].shape[1:] == SHAPE and arrays["outputs"].shape == (len(arrays["x"]), 10)
        assert len(arrays["x"]) <= 250 and arrays["victim_labels"].shape == (len(arrays["x"]),)


def test_defense_costs_and_detection_and_transfer(result):
    report = result[0].report
    costs = {d["name"]: d for d in report["defenses"]}
    assert costs["none"]["label_change_rate"] == 0 and costs["top_k"]["label_change_rate"] == 0
    assert costs["reverse_sigmoid"]["mean_l1_score_change"] > 0.1
    assert costs["label_only"]["returns_scores"] is False
    assert costs["top_k"]["label_attacker_fidelity"] is not None
    prada = report["detection"][0]
    assert prada["benign"]["alarm_at_query"] is None
    assert [s["attack"] for s in prada["streams"]] == ["knockoff (random)", "jacobian"]
    assert prada["streams"][1]["alarm_at_query"] is not None
    assert report["transfer"]["white_box"][0]["attack_success_rate"] > 0.8
    assert report["attacks"][0]["rows"][-1]["known_as"].startswith("CopycatCNN")


def test_progress_is_monotone_and_ends_near_one(result):
    fractions = result[2]
    assert fractions == sorted(fractions) and fractions[-1] > 0.8


def test_a_label_only_interface_needs_no_extra_row(cnn_onnx):
    params = PARAMS | {
        "victim_output": {"kind": "label"},
        "budgets": [120],
        "attacks": [{"name": "knockoff", "strategy": "random"}],
        "defenses": [],
        "detection": [],
        "transfer": None,
    }
    outcome, victim, _ = run(cnn_onnx, params=params)
    rows = outcome.report["attacks"][0]["rows"]
    assert [row["defense"] for row in rows] == ["none"] and rows[0]["sees"] == "label"
    log = next(iter(outcome.query_logs.values()))
    assert log["outputs"].ndim == 1 and log["outputs"].dtype == np.int64
    assert victim.samples == 150 + 120


def test_html_sections_plot_fidelity_per_attack_and_defense_and_escape_names(result):
    from worker.engine.reports.extraction import render_extraction_sections

    report = dict(result[0].report)
    html = render_extraction_sections(report)
    assert html.count("<svg") == 2 and "fidelity against queries" in html.lower()
    assert "reverse_sigmoid" in html and "always reported" in html and "CopycatCNN" in html
    hostile = report | {"attacks": [report["attacks"][0] | {"label": "<script>x</script>"}]}
    assert "<script>" not in render_extraction_sections(hostile)
    assert render_extraction_sections({}) is not None
