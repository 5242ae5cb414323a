"""render_report_html: escaping, plots, and tolerance of missing values."""

from worker.engine.reports.html import render_report_html

EVIL = '<script>alert("x")</script>'


def _report() -> dict:
    return {
        "kind": "evasion",
        "model_id": EVIL,
        "dataset_id": "builtin:digits<img src=x onerror=alert(1)>",
        "seed": 0,
        "versions": {"gauntlet": "0.1.0", "torch<b>": "2.13"},
        "n_samples": 297,
        "clean_accuracy": 0.94,
        "attacks": [
            {
                "name": "pgd",
                "norm": "linf",
                "targeted": False,
                "target_mode": None,
                "params": {"steps": 40, "note": EVIL},
                "results": [
                    {
                        "eps": 0.05,
                        "robust_accuracy": 0.8,
                        "attack_success_rate": 0.15,
                        "mean_perturbation": 0.05,
                        "median_perturbation": 0.05,
                        "max_perturbation": 0.05,
                        "seconds": 0.3,
                    },
                    {
                        "eps": 0.1,
                        "robust_accuracy": 0.5,
                        "attack_success_rate": None,
                        "mean_perturbation": None,
                        "median_perturbation": None,
                        "max_perturbation": None,
                        "seconds": 0.3,
                    },
                ],
            },
            {
                "name": EVIL,
                "norm": "l2",
                "targeted": True,
                "target_mode": "least_likely",
                "params": {},
                "results": [{"eps": 1.0, "robust_accuracy": 0.4}],
            },
        ],
        "worst_case": [
            {"norm": "linf", "eps": 0.05, "robust_accuracy": 0.8, "n_attacks": 1},
            {"norm": "linf", "eps": 0.1, "robust_accuracy": 0.5, "n_attacks": 1},
        ],
        "checks": [
            {"name": "accuracy_falls_with_eps", "passed": True, "detail": "ok"},
            {"name": "robust_below_clean", "passed": False, "detail": EVIL},
        ],
    }


def test_every_string_is_escaped():
    page = render_report_html(_report())
    assert "<script" not in page and "<img" not in page and "<b>" not in page
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in page
    assert "&lt;img src=x onerror=alert(1)&gt;" in page


def test_page_is_self_contained_with_one_plot_per_norm():
    page = render_report_html(_report())
    assert page.startswith("<!DOCTYPE html>")
    assert page.count("<svg") == 2 and "<polyline" in page
    assert "http://" not in page.replace('xmlns="http://www.w3.org/2000/svg"', "")
    assert "https://" not in page and "<link" not in page
    assert "FAIL" in page and "pass" in page
    assert "n/a" in page  # missing success rate and perturbations
    assert "80.0%" in page and "94.0%" in page


def test_minimal_report_renders():
    page = render_report_html(
        {"n_samples": 0, "clean_accuracy": None, "attacks": [], "worst_case": [], "checks": []}
    )
    assert "<html" in page and "<svg" not in page
