"""run_evasion: report shape, worst case, checks, determinism, batching, progress and cancellation."""

import copy

import numpy as np
import pytest
import torch

from worker.engine.evasion.metrics import WorstCase
from worker.engine.evasion.runner import EvasionOutcome, run_evasion
from worker.engine.evasion.sanity_checks import (
    check_accuracy_falls_with_eps,
    check_iterative_beats_single_step,
    check_perturbation_within_budget,
    check_robust_below_clean,
    run_checks,
)


def _spec(name: str, norm: str = "linf", eps=(0.05, 0.1), targeted: bool = False, **extra) -> dict:
    spec = {
        "name": name,
        "norm": norm,
        "eps": list(eps),
        "targeted": targeted,
        "target_mode": extra.pop("target_mode", "least_likely" if targeted else None),
        "target_class": extra.pop("target_class", None),
    }
    if name == "pgd":
        spec.update(steps=10, step_size=None, random_start=True, restarts=1)
    spec.update(extra)
    return spec


def _without_seconds(report: dict) -> dict:
    report = copy.deepcopy(report)
    for attack in report["attacks"]:
        for row in attack["results"]:
            row.pop("seconds")
    return report


@pytest.fixture(scope="module")
def sane_run(small_cnn, held_out) -> tuple[EvasionOutcome, list[tuple[float, str]]]:
    x, y = held_out
    calls: list[tuple[float, str]] = []
    attacks = [
        _spec("fgsm"),
        _spec("pgd"),
        _spec("pgd", "l2", eps=(0.5, 1.0), targeted=True, target_mode="random"),
    ]
    outcome = run_evasion(
        small_cnn, x, y, attacks, batch_size=128, seed=0, progress=lambda f, s: calls.append((f, s))
    )
    return outcome, calls


def test_report_shape(sane_run, held_out):
    outcome, _ = sane_run
    report = outcome.report
    assert {"n_samples", "clean_accuracy", "attacks", "worst_case", "checks"} <= set(report)
    assert report["n_samples"] == len(held_out[1])
    assert 0.9 < report["clean_accuracy"] <= 1.0
    assert [a["name"] for a in report["attacks"]] == ["fgsm", "pgd", "pgd"]
    for attack in report["attacks"]:
        assert {"name", "norm", "targeted", "target_mode", "params", "results"} <= set(attack)
        for row in attack["results"]:
            keys = {
                "eps",
                "robust_accuracy",
                "attack_success_rate",
                "mean_perturbation",
                "median_perturbation",
                "max_perturbation",
                "seconds",
            }
            assert keys <= set(row)
            assert 0.0 <= row["robust_accuracy"] <= report["clean_accuracy"]
            assert row["max_perturbation"] <= row["eps"] * (1 + 1e-5)
    pgd = report["attacks"][1]
    assert pgd["params"]["steps"] == 10 and pgd["params"]["restarts"] == 1 and pgd["params"]["random_start"]
    assert pgd["results"][0]["step_size"] == pytest.approx(2.5 * 0.05 / 10)
    assert report["attacks"][2]["target_mode"] == "random"
    assert {(r["norm"], r["eps"]) for r in report["worst_case"]} == {
        ("linf", 0.05),
        ("linf", 0.1),
        ("l2", 0.5),
        ("l2", 1.0),
    }
    assert all(check["passed"] for check in report["checks"]), report["checks"]
    assert {c["name"] for c in report["checks"]} >= {
        "accuracy_falls_with_eps",
        "iterative_beats_single_step",
        "robust_below_clean",
    }


def test_adversarial_arrays(sane_run, held_out):
    outcome, _ = sane_run
    x, y = held_out
    assert list(outcome.adversarial) == [
        "adversarial_fgsm_linf_0",
        "adversarial_pgd_linf_1",
        "adversarial_pgd_l2_2",
    ]
    arrays = outcome.adversarial["adversarial_pgd_linf_1"]
    assert arrays["x_adv"].shape == (2, *x.shape) and arrays["x_adv"].dtype == np.float32
    assert arrays["success"].shape == (2, len(y)) and arrays["success"].dtype == bool
    assert np.array_equal(arrays["y"], y) and arrays["eps"].tolist() == [0.05, 0.1]
    assert np.abs(arrays["x_adv"] - x[None]).max() <= 0.1 + 1e-6
    assert "targets" not in arrays and "targets" in outcome.adversarial["adversarial_pgd_l2_2"]
    not_attacked = ~arrays["attacked"]
    assert not_attacked.any()  # the misclassified digits
    assert np.array_equal(arrays["x_adv"][:, not_attacked], np.repeat(x[None, not_attacked], 2, axis=0))
    assert not arrays["success"][:, not_attacked].any()
    targeted = outcome.adversarial["adversarial_pgd_l2_2"]
    assert (targeted["targets"] != y).all()


def test_worst_case_matches_per_sample_outcomes(sane_run, small_cnn, held_out):
    outcome, _ = sane_run
    x, y = held_out
    with torch.no_grad():
        clean_correct = small_cnn(torch.as_tensor(x)).argmax(1).numpy() == y
    fgsm = outcome.adversarial["adversarial_fgsm_linf_0"]["success"]
    pgd = outcome.adversarial["adversarial_pgd_linf_1"]["success"]
    rows = {(r["norm"], r["eps"]): r for r in outcome.report["worst_case"]}
    for index, eps in enumerate([0.05, 0.1]):
        robust = clean_correct & ~fgsm[index] & ~pgd[index]
        assert rows[("linf", eps)]["robust_accuracy"] == pytest.approx(robust.mean())
        assert rows[("linf", eps)]["n_attacks"] == 2


def test_worst_case_counts_a_sample_robust_only_if_every_attack_failed():
    worst = WorstCase(4)
    worst.add("linf", 0.1, np.array([True, True, False, True]))  # attack A breaks sample 2
    worst.add("linf", 0.1, np.array([True, False, True, True]))  # attack B breaks sample 1
    worst.add("linf", 0.2, np.array([False, True, True, True]))
    worst.add("l2", 0.1, np.array([True, True, True, True]))
    rows = worst.rows()
    assert rows == [
        {"norm": "l2", "eps": 0.1, "robust_accuracy": 1.0, "n_attacks": 1},
        {"norm": "linf", "eps": 0.1, "robust_accuracy": 0.5, "n_attacks": 2},
        {"norm": "linf", "eps": 0.2, "robust_accuracy": 0.75, "n_attacks": 1},
    ]


def test_progress_is_monotone_and_finishes(sane_run):
    _, calls = sane_run
    fractions = [f for f, _ in calls]
    assert fractions == sorted(fractions) and fractions[-1] == pytest.approx(1.0) and fractions[0] > 0
    stages = [s for _, s in calls]
    assert "pgd linf eps=0.1 batch 2/3" in stages and "clean batch 1/3" in stages


def test_deterministic_under_seed(small_cnn, held_out):
    x, y = held_out[0][:120], held_out[1][:120]
    attacks = [_spec("pgd", restarts=2), _spec("fgsm", "l2", eps=(1.0,), targeted=True, target_mode="random")]
    first = run_evasion(small_cnn, x, y, attacks, batch_size=50, seed=5)
    second = run_evasion(small_cnn, x, y, attacks, batch_size=50, seed=5)
    assert _without_seconds(first.report) == _without_seconds(second.report)
    for name, arrays in first.adversarial.items():
        for key, value in arrays.items():
            assert np.array_equal(value, second.adversarial[name][key])
    other = run_evasion(small_cnn, x, y, attacks, batch_size=50, seed=6)
    assert not np.array_equal(
        first.adversarial["adversarial_pgd_linf_0"]["x_adv"],
        other.adversarial["adversarial_pgd_linf_0"]["x_adv"],
    )


def test_batch_size_does_not_change_results_without_random_start(small_cnn, held_out):
    x, y = held_out
    attacks = [
        _spec("pgd", random_start=False),
        _spec("pgd", "l2", eps=(1.0,), random_start=False),
        _spec("fgsm"),
    ]
    small = run_evasion(small_cnn, x, y, attacks, batch_size=37, seed=0).report
    large = run_evasion(small_cnn, x, y, attacks, batch_size=512, seed=0).report
    tolerance = 1.0 / len(y) + 1e-9  # float reassociation across batch shapes may flip one borderline sample
    for a, b in zip(small["attacks"], large["attacks"], strict=True):
        for row_a, row_b in zip(a["results"], b["results"], strict=True):
            assert abs(row_a["robust_accuracy"] - row_b["robust_accuracy"]) <= tolerance


def test_fixed_target_excludes_samples_of_that_class(small_cnn, held_out):
    x, y = held_out
    attacks = [_spec("fgsm", eps=(0.2,), targeted=True, target_mode="fixed", target_class=3)]
    outcome = run_evasion(small_cnn, x, y, attacks)
    arrays = outcome.adversarial["adversarial_fgsm_linf_0"]
    assert not arrays["attacked"][y == 3].any()
    assert (arrays["targets"] == 3).all()
    row = outcome.report["attacks"][0]["results"][0]
    assert row["n_attacked"] == int(arrays["attacked"].sum()) < int((y != 3).sum())
    assert outcome.report["attacks"][0]["params"]["target_class"] == 3


def test_unknown_keys_are_refused_omitted_ones_keep_defaults_and_empty_attack_list(small_cnn, held_out):
    x, y = held_out[0][:40], held_out[1][:40]
    with pytest.raises(ValueError, match=r"fgsm\.future_option\n  Extra inputs are not permitted"):
        run_evasion(small_cnn, x, y, [_spec("fgsm", future_option=1)])
    omitted = {key: value for key, value in _spec("pgd").items() if key != "steps"}
    report = run_evasion(small_cnn, x, y, [omitted], sanity_runs=False).report
    assert report["attacks"][0]["params"]["steps"] == 40
    empty = run_evasion(small_cnn, x, y, []).report
    assert empty["attacks"] == [] and empty["worst_case"] == []


def test_cancellation_propagates_and_model_mode_is_restored(small_cnn, held_out):
    x, y = held_out[0][:64], held_out[1][:64]

    class Cancelled(Exception):
        pass

    def cancel(fraction: float, stage: str) -> None:
        if stage.startswith("pgd"):
            raise Cancelled(stage)

    small_cnn.train()
    try:
        with pytest.raises(Cancelled, match="pgd linf eps=0.05 batch 1/2"):
            run_evasion(small_cnn, x, y, [_spec("pgd")], batch_size=32, progress=cancel)
        assert small_cnn.training
    finally:
        small_cnn.eval()


def test_bad_inputs_are_refused(small_cnn, held_out):
    x, y = held_out
    with pytest.raises(ValueError):
        run_evasion(small_cnn, x + 2.0, y, [_spec("fgsm")])
    with pytest.raises(ValueError):
        run_evasion(small_cnn, x, y[:-1], [_spec("fgsm")])
    with pytest.raises(ValueError):
        run_evasion(small_cnn, x, y + 10, [_spec("fgsm")])


def _fake_report(
    rows_by_attack: dict[tuple[str, str], list[tuple[float, float]]], clean: float = 0.9
) -> dict:
    return {
        "n_samples": 100,
        "clean_accuracy": clean,
        "attacks": [
            {
                "name": name,
                "norm": norm,
                "targeted": False,
                "target_mode": None,
                "iterative": name != "fgsm",  # the attack class's fact, as real entries carry it
                "params": {},
                "results": [{"eps": e, "robust_accuracy": r, "max_perturbation": e} for e, r in rows],
            }
            for (name, norm), rows in rows_by_attack.items()
        ],
        "worst_case": [],
    }


def test_checks_flag_broken_reports():
    sane = _fake_report(
        {("fgsm", "linf"): [(0.1, 0.5), (0.2, 0.3)], ("pgd", "linf"): [(0.1, 0.4), (0.2, 0.1)]}
    )
    assert all(check["passed"] for check in run_checks(sane))
    assert len(run_checks(sane)) == 4

    rising = _fake_report({("pgd", "linf"): [(0.1, 0.4), (0.2, 0.6), (0.3, 0.605)]})
    check = check_accuracy_falls_with_eps(rising)
    assert check is not None and not check["passed"] and "gradient masking" in check["detail"]
    within_one_sample = _fake_report({("pgd", "linf"): [(0.1, 0.4), (0.2, 0.41)]})
    assert check_accuracy_falls_with_eps(within_one_sample)["passed"]

    weak_pgd = _fake_report({("fgsm", "l2"): [(1.0, 0.3)], ("pgd", "l2"): [(1.0, 0.5)]})
    check = check_iterative_beats_single_step(weak_pgd)
    assert check is not None and not check["passed"] and "eps=1" in check["detail"]
    assert check_iterative_beats_single_step(_fake_report({("pgd", "l2"): [(1.0, 0.5)]})) is None

    above_clean = _fake_report({("pgd", "linf"): [(0.1, 0.95)]}, clean=0.9)
    assert not check_robust_below_clean(above_clean)["passed"]

    over_budget = _fake_report({("pgd", "linf"): [(0.1, 0.5)]})
    over_budget["attacks"][0]["results"][0]["max_perturbation"] = 0.12
    assert not check_perturbation_within_budget(over_budget)["passed"]


def test_real_report_renders_as_html(sane_run):
    from worker.engine.reports.html import render_report_html

    page = render_report_html({**sane_run[0].report, "kind": "evasion", "model_id": "m1"})
    assert page.count("<svg") == 2 and "worst case" in page
