"""Every kind's report page, from real engine output through the worker's finish_output: valid HTML5 (a
strict parser), the verdict first, the model by name and id, no Python reprs, only the recipe fields
that apply; the headline figures and `metric` per kind; the demo's text says what the page says."""

import json
import re
from types import SimpleNamespace

import html5lib
import pytest
import torch

from app.schemas.extraction import ExtractionParams
from app.schemas.reports.headline import headline, metric
from tests.engine.defense_helpers import pgd, run
from tests.engine.extraction_helpers import SHAPE, CountingVictim, victim_graph_factory
from tests.engine.poisoning_helpers import attack_specs, detector_specs, digits_split, make_model
from worker.demo_jobs import show_defense, show_evasion, show_extraction, show_poisoning
from worker.engine.datasets import load_builtin
from worker.engine.evasion.runner import run_evasion
from worker.engine.extraction import run_extraction
from worker.engine.poisoning.audit import run_poisoning_audit
from worker.engine.poisoning.runner import run_poisoning
from worker.engine.reports.parts import esc
from worker.engine.reports.poisoning import rate_series
from worker.engine.training.recipe import TrainingRecipe
from worker.services.kinds import defense as defense_kind
from worker.services.kinds import evasion as evasion_kind
from worker.services.kinds import extraction as extraction_kind
from worker.services.kinds import poisoning as poisoning_kind
from worker.services.outputs import Outcome, finish_output

MODEL_NAME = "digits <cnn>"


def _finish(kind: str, body: dict, threat_model) -> tuple[dict, str]:
    """The report and its page as the worker writes them (envelope, HTML) for a job of `kind`."""
    spec = SimpleNamespace(kind=kind, model_id="mdl_pages", dataset_id="builtin:digits-test")
    env = SimpleNamespace(job_id="job_pages", seed=0, device=torch.device("cpu"))
    body = json.loads(json.dumps(body))
    outcome = Outcome(report=body, checks=body.pop("checks"), summary={}, threat_model=threat_model)
    output = finish_output(spec, env, outcome, model_name=MODEL_NAME)
    page = next(a for a in output.artifacts if a.kind == "report_html").data.decode("utf-8")
    return json.loads(json.dumps(output.report)), page


@pytest.fixture(scope="module")
def evasion(small_cnn, held_out):
    x, y = held_out[0][:60], held_out[1][:60]
    attacks = [
        {"name": "fgsm", "norm": "linf", "eps": [0.05, 0.1, 0.2]},
        {"name": "pgd", "norm": "linf", "eps": [0.05, 0.1, 0.2], "steps": 10},
        {"name": "square", "norm": "linf", "eps": [0.1], "queries": 100},
        {"name": "deepfool", "norm": "l2", "eps": [0.5, 1.0]},
    ]
    return _finish("evasion", run_evasion(small_cnn, x, y, attacks).report, evasion_kind.THREAT_MODEL)


@pytest.fixture(scope="module")
def extraction(cnn_onnx, small_cnn):
    test = load_builtin("digits-test")
    params = {
        "query_dataset_id": "builtin:digits-train",
        "victim_output": {"kind": "probabilities"},
        "budgets": [100, 250],
        "attacks": [{"name": "knockoff", "strategy": "random"}],
        "surrogate": {"architecture": "victim", "epochs": 5, "batch_size": 64, "min_steps": 0},
        "defenses": [{"name": "top_k", "k": 1}],
        "detection": [{"name": "prada"}],
        "transfer": {"name": "pgd", "norm": "linf", "eps": [0.1], "steps": 5},
        "max_samples": 60,
    }
    outcome = run_extraction(
        CountingVictim(cnn_onnx),
        test.x,
        test.y,
        load_builtin("digits-train").x,
        ExtractionParams.model_validate(params),
        input_shape=SHAPE,
        num_classes=10,
        input_range=(0.0, 1.0),
        make_surrogate=victim_graph_factory(cnn_onnx),
        victim_white_box=small_cnn,
        seed=0,
    )
    return _finish("extraction", outcome.report, extraction_kind.THREAT_MODEL)


@pytest.fixture(scope="module")
def poisoning():
    train, test = digits_split()
    outcome = run_poisoning(
        make_model("mlp"),
        train,
        test,
        attack_specs(
            [{"name": "badnets", "rate": [0.05]}, {"name": "label_flip", "mode": "random", "rate": [0.2]}]
        ),
        recipe=TrainingRecipe(epochs=2),
        input_shape=SHAPE,
        num_classes=10,
        detection=detector_specs([{"name": "activation_clustering"}]),
        register=False,
    )
    return _finish("poisoning", outcome.report, poisoning_kind.THREAT_MODEL)


@pytest.fixture(scope="module")
def audit(cnn_onnx):
    train, test = digits_split()
    outcome, _ = run_poisoning_audit(
        cnn_onnx,
        train,
        test,
        detector_specs([{"name": "activation_clustering"}]),
        input_shape=SHAPE,
        num_classes=10,
    )
    return _finish("poisoning", outcome.report, poisoning_kind.AUDIT_THREAT_MODEL)


@pytest.fixture(scope="module")
def defense(small_cnn):
    recipe = {"name": "adversarial_training", "method": "pgd", "eps": 0.1, "epochs": 1, "steps": 3}
    outcome = run(recipe, {**pgd([0.05, 0.1], steps=5), "max_samples": 60}, small_cnn)
    return _finish("defense", outcome.report, defense_kind.THREAT_MODEL)


KINDS = ("evasion", "extraction", "poisoning", "audit", "defense")


def _text(page: str) -> str:
    """The text a reader sees in the page's body."""
    body = html5lib.parse(page, namespaceHTMLElements=False).find("body")
    return " ".join(t.strip() for t in body.itertext() if t.strip())


@pytest.mark.parametrize("kind", KINDS)
def test_every_page_is_valid_html5_and_opens_with_the_verdict(kind, request):
    report, page = request.getfixturevalue(kind)
    html5lib.HTMLParser(strict=True).parse(page)  # raises on the first parse error
    head = headline(report)
    assert head.model == f"{MODEL_NAME} (mdl_pages)"
    assert f"<h1>Gauntlet {report['kind']} report: {esc(head.model)}</h1>" in page
    first = page.index("</h1>")
    assert page.index('<section class="verdict', first) == first + len("</h1>")
    verdict = page[first : page.index("</section>", first)]
    assert esc(head.verdict) in verdict and head.figures
    for figure in head.figures:
        assert esc(figure.label) in verdict and esc(figure.count_text()) in verdict
        assert figure.n is None or figure.bounds_text() in verdict or figure.unit in ("score", "count")
    for check in head.failed:
        assert esc(check.name) in verdict
    if head.passed:
        assert f"Passed ({len(head.passed)}):" in verdict


@pytest.mark.parametrize("kind", KINDS)
def test_pages_write_values_for_people_not_python_reprs(kind, request):
    _, page = request.getfixturevalue(kind)
    text = _text(page)
    for pattern in (
        r"\bNone\b",
        r"\bTrue\b",
        r"\bFalse\b",
        r"\{'",
        r"\[\d",
        r"'\w+': ",
        r"=None",
        r"\bnan\b",
    ):
        assert not re.search(pattern, text), (pattern, re.search(pattern, text))


@pytest.mark.parametrize("kind", KINDS)
def test_key_value_tables_have_a_row_header_and_one_data_cell_per_row(kind, request):
    _, page = request.getfixturevalue(kind)
    doc = html5lib.parse(page, namespaceHTMLElements=False)
    tables = [t for t in doc.iter("table") if t.get("class") == "kv"]
    assert tables
    for table in tables:
        for row in table.iter("tr"):
            cells = list(row)
            assert [c.tag for c in cells] == ["th", "td"] and cells[0].get("scope") == "row"
            assert "".join(cells[1].itertext()).strip() and not list(cells[1].iter("th"))


def test_evasion_figures_and_metrics(evasion):
    report, page = evasion
    worst = report["worst_case"]
    assert metric(report, "robust_accuracy") == min(row["robust_accuracy"] for row in worst)
    at = next(row for row in worst if row["norm"] == "linf" and row["eps"] == 0.1)
    assert metric(report, "robust_accuracy", eps=0.1) == min(
        r["robust_accuracy"] for r in worst if r["eps"] == 0.1
    )
    assert metric(report, "clean_accuracy") == report["clean_accuracy"]
    rates = [r["attack_success_rate"] for a in report["attacks"] for r in a["results"]]
    assert metric(report, "attack_success_rate") == max(rates) and metric(report, "fidelity") is None
    figure = next(f for f in headline(report).figures if f.eps == 0.1 and f.norm == "linf")
    assert figure.n == report["n_samples"] == 60 and figure.value == at["robust_accuracy"]
    assert figure.low < figure.value < figure.high or figure.value in (0.0, 1.0)
    assert "worst case" in page and page.count("<svg") == 2


def test_extraction_headline_is_the_best_fidelity_at_the_largest_budget_per_defense(extraction):
    report, _ = extraction
    figures = [f for f in headline(report).figures if f.metric == "fidelity"]
    rows = {row["defense"]: row for attack in report["attacks"] for row in attack["rows"]}
    assert len(figures) == len(rows) == 3  # none, top_k and the label-only row
    best = max(row["results"][-1]["fidelity"] for row in rows.values())
    assert metric(report, "fidelity") == best and all(f.n == report["n_samples"] for f in figures)
    assert metric(report, "clean_accuracy") == report["victim_accuracy"]


def test_poisoning_label_flips_are_an_accuracy_drop_not_a_success(poisoning):
    report, page = poisoning
    flip = report["attacks"][1]["results"][0]
    figures = headline(report).figures
    drop = next(f for f in figures if f.metric == "accuracy_drop")
    assert drop.value == pytest.approx(flip["accuracy_drop"]) and drop.unit == "points"
    assert drop.low < drop.value < drop.high and drop.n == report["n_eval"]
    badnets = report["attacks"][0]["results"][0]
    success = next(f for f in figures if f.metric == "attack_success_rate")
    assert success.n == badnets["n_triggered"] and success.n_of == "triggered inputs"
    assert metric(report, "attack_success_rate") == badnets["attack_success_rate"]
    assert [f.n for f in figures if f.metric == "detection_f1"] == [badnets["n_poisoned"], flip["n_poisoned"]]
    labels = [s.label for s in rate_series(report)]
    assert "1: label_flip clean accuracy" in labels and not any("label_flip success" in s for s in labels)
    flip_section = page[page.index("<h3>1: label_flip") :]
    assert '<th scope="col">accuracy drop</th>' in flip_section
    assert '<th scope="col">success rate</th>' not in flip_section


def test_audit_names_what_the_detectors_flag(audit):
    report, _ = audit
    head = headline(report)
    classes = report["suspected_classes"]
    assert ("flags class" in head.verdict) == bool(classes)
    assert next(f for f in head.figures if f.metric == "suspected_samples").value == report["n_suspected"]


def test_defense_page_shows_only_the_recipe_fields_of_its_method(defense):
    report, page = defense
    assert report["defense"]["beta"] == 6.0 and report["defense"]["method"] == "pgd"
    recipe = page[page.index("<h3>Recipe</h3>") :]
    recipe = recipe[: recipe.index("</table>")]
    for absent in ("beta", "guard_samples", "momentum", "nesterov", "step_epochs"):
        assert f">{absent}<" not in recipe
    for present in ("method", "eps", "steps", "clean_weight", "optimizer"):
        assert f">{present}<" in recipe
    head = report["headline"]
    assert metric(report, "robust_accuracy", eps=head["eps"]) == head["robust_accuracy"]
    assert metric(report, "certified_accuracy") is None
    assert f"{100 * head['undefended_robust_accuracy']:.1f}% undefended" in headline(report).verdict


@pytest.mark.parametrize(
    "kind, show",
    [
        ("evasion", show_evasion),
        ("extraction", show_extraction),
        ("poisoning", show_poisoning),
        ("defense", show_defense),
    ],
)
def test_the_demo_says_what_the_page_says(kind, show, request):
    report, page = request.getfixturevalue(kind)
    lines = show(report)
    head = headline(report)
    assert lines[: len(head.lines())] == head.lines() and lines[0] == f"verdict: {head.verdict}"
    assert esc(head.verdict) in page


@pytest.mark.slow
def test_a_smoothing_page_heads_with_certified_accuracy_per_radius(small_cnn):
    recipe = {
        "name": "randomized_smoothing",
        "sigma": 0.25,
        "epochs": 1,
        "n0": 20,
        "n": 100,
        "alpha": 0.01,
        "radii": [0.0, 0.25, 0.5],
    }
    outcome = run(recipe, {**pgd([0.5], norm="l2", steps=5), "max_samples": 30}, small_cnn)
    report, page = _finish("defense", outcome.report, defense_kind.THREAT_MODEL)
    html5lib.HTMLParser(strict=True).parse(page)
    rows = report["certification"]["certified_accuracy"]
    figures = [f for f in headline(report).figures if f.metric == "certified_accuracy"]
    assert [(f.eps, f.value, f.n) for f in figures] == [
        (r["radius"], r["certified_accuracy"], 30) for r in rows
    ]
    assert metric(report, "certified_accuracy", eps=0.25) == rows[1]["certified_accuracy"]
    assert metric(report, "certified_accuracy") == min(r["certified_accuracy"] for r in rows)
    assert "it certifies" in headline(report).verdict and ">beta<" not in page
