"""The headline's arithmetic and wording: Wilson and Newcombe intervals against published values, how a
figure reads, checks split into passed and failed (torch-free, fast). The per-kind figures, verdicts and
`metric` are tested on real engine reports in tests/engine/reports/test_report_pages.py."""

import subprocess
import sys

import pytest

from app.schemas.reports.figures import Figure, difference_interval, proportion, wilson
from app.schemas.reports.headline import checks, headline, model_text


@pytest.mark.parametrize(
    "successes, n, low, high",
    # Newcombe, "Two-sided confidence intervals for the single proportion", Statistics in Medicine 17
    # (1998), table II, method 3 (the Wilson score interval without continuity correction).
    [(81, 263, 0.2553, 0.3662), (15, 148, 0.0624, 0.1605), (0, 20, 0.0, 0.1611), (1, 29, 0.0061, 0.1718)],
)
def test_wilson_matches_the_published_score_intervals(successes, n, low, high):
    assert wilson(successes, n) == pytest.approx((low, high), abs=5e-5)


def test_wilson_by_hand_for_52_of_60():
    # p = 52/60 = 0.866667, z^2 = 3.841459: centre (p + z^2/120) / (1 + z^2/60) = 0.898679 / 1.064024
    # = 0.844604; half-width z / 1.064024 * sqrt(p(1-p)/60 + z^2/14400) = 1.842029 * 0.046826 = 0.086255.
    assert wilson(52, 60) == pytest.approx((0.758349, 0.930859), abs=2e-6)


def test_wilson_stays_in_the_unit_interval_and_refuses_nonsense():
    assert wilson(29, 29)[1] == 1.0 and wilson(0, 5)[0] == 0.0
    for successes, n in ((1, 0), (-1, 10), (11, 10)):
        with pytest.raises(ValueError):
            wilson(successes, n)


def test_difference_interval_matches_newcombes_method_10():
    # Newcombe, "Interval estimation for the difference between independent proportions", Statistics in
    # Medicine 17 (1998), example (a): 56/70 - 48/80, method 10 gives 0.0524 to 0.3339.
    assert difference_interval(56 / 70, 48 / 80, 70, 80) == pytest.approx((0.0524, 0.3339), abs=5e-5)


def test_a_figure_reads_with_its_interval_and_sample_count():
    figure = proportion("robust_accuracy", "robust accuracy at linf eps 0.1", 52 / 60, 60, eps=0.1)
    assert figure.text() == "robust accuracy at linf eps 0.1: 86.7% (95% CI 75.8–93.1%, n = 60 samples)"
    drop = Figure(
        metric="accuracy_drop", label="drop", value=0.024, unit="points", n=297, low=-0.038, high=0.085
    )
    assert drop.text() == "drop: +2.4 points (95% CI -3.8 to +8.5 points, n = 297 samples)"
    unknown = proportion("attack_success_rate", "flip", 0.3, None)
    assert unknown.low is None and unknown.text() == "flip: 30.0% (sample count not reported)"


def test_checks_split_into_passed_and_failed_and_a_failure_reaches_the_verdict():
    report = {
        "kind": "mystery",
        "model_id": "mdl_1",
        "model_name": "digits",
        "checks": [
            {"name": "a", "passed": True, "detail": ""},
            {"name": "b", "passed": False, "detail": "why"},
        ],
    }
    passed, failed = checks(report)
    assert [c.name for c in passed] == ["a"] and [(c.name, c.detail) for c in failed] == [("b", "why")]
    head = headline(report)
    assert head.model == "digits (mdl_1)" and "1 sanity check(s) failed (b)" in head.verdict
    assert head.lines()[-1] == "  FAILED: b (why)"
    assert model_text({"model_id": "mdl_1"}) == "mdl_1" and model_text({}) is None


def test_the_headline_module_is_torch_free():
    code = "import sys, app.schemas.reports.headline; print('torch' in sys.modules or 'numpy' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
