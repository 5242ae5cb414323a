"""The poisoning report page: rendered from the JSON alone, with the rate chart, pictures and audit."""

import base64
import json

from tests.engine.poisoning_helpers import SHAPE, attack_specs, detector_specs, digits_split, make_model
from worker.engine.poisoning.runner import run_poisoning
from worker.engine.reports.html import render_report_html
from worker.engine.reports.png import chw_to_png
from worker.engine.training.recipe import TrainingRecipe


def _report():
    train, test = digits_split()
    outcome = run_poisoning(
        make_model("mlp"),
        train,
        test,
        attack_specs([{"name": "badnets", "rate": [0.02, 0.05]}]),
        recipe=TrainingRecipe(epochs=2),
        input_shape=SHAPE,
        num_classes=10,
        detection=detector_specs([{"name": "activation_clustering"}]),
        register=False,
    )
    return json.loads(json.dumps(outcome.report | {"kind": "poisoning", "model_id": "mdl_<x>"}))


def test_page_shows_chart_table_trigger_and_samples():
    report = _report()
    page = render_report_html(report)
    assert "Success against poison rate" in page and "<svg" in page and "<polyline" in page
    assert page.count('<figure class="img">') == 1 + 2 * 4
    assert report["attacks"][0]["trigger_png"] in page
    assert "activation_clustering" in page and "Clean baseline" in page
    assert "<x>" not in page and "&lt;x&gt;" in page


def test_audit_page_lists_suspects():
    png = base64.b64encode(chw_to_png(digits_split()[0].x[0], (0.0, 1.0))).decode()
    report = {
        "kind": "poisoning",
        "mode": "audit",
        "n_train": 10,
        "model_accuracy": {"held_out": 0.9, "training_set": 0.95},
        "suspected_classes": [3],
        "n_suspected": 2,
        "detectors": [
            {
                "name": "activation_clustering",
                "classes": [{"class": 3, "n_samples": 5, "n_suspects": 2, "own_share": 0.1, "flagged": True}],
                "top_suspects": [
                    {"index": 7, "label": 3, "score": 1.5},
                    {"index": 9, "label": 3, "score": 1.2},
                ],
            }
        ],
        "unused": png,
    }
    page = render_report_html(report)
    assert "Audit of the training set" in page and ">7<" in page and ">9<" in page
