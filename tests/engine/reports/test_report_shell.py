"""The HTML shell every kind shares: what a reviewer reading a report page needs, and nothing broken."""

import base64

import numpy as np

from worker.engine.evasion.sanity_checks import run_checks
from worker.engine.reports.html import render_report_html
from worker.engine.reports.png import chw_to_png

PATCH_PNG = base64.b64encode(chw_to_png(np.zeros((1, 2, 2), dtype=np.float32), (0.0, 1.0))).decode()


def _envelope(**body):
    return {
        "kind": "evasion",
        "job_id": "job_0123",
        "model_id": "mdl_0123",
        "dataset_id": "builtin:digits-test",
        "generated_at": "2026-12-01T10:00:00+00:00",
        "seed": 0,
        "threat_model": "evasion",
        "checks": [],
        "derived_model_ids": ["mdl_child"],
        **body,
    }


def _patch_report():
    entry = {
        "name": "patch",
        "norm": "patch",
        "targeted": True,
        "target_mode": "fixed",
        "threat_model": "physical",
        "params": {"steps": 5, "learning_rate": None},
        "results": [{"patch_scale": 0.25, "success_rate": 0.4, "n_eval": 20, "png_base64": PATCH_PNG}],
    }
    return _envelope(n_samples=40, clean_accuracy=0.9, attacks=[entry], worst_case=[])


def test_the_page_names_the_job_its_date_and_derived_models():
    page = render_report_html(_patch_report())
    assert "job_0123" in page and "2026-12-01T10:00:00+00:00" in page and "mdl_child" in page


def test_no_empty_rows_and_no_none_parameters():
    page = render_report_html(_patch_report())
    assert "<tr><td></td><td></td></tr>" not in page and "<th></th>" not in page
    assert "None" not in page


def test_a_patch_is_titled_once_shows_its_image_and_no_empty_worst_case():
    page = render_report_html(_patch_report())
    assert "patch patch" not in page and "patch targeted (fixed)" in page
    assert f"data:image/png;base64,{PATCH_PNG}" in page
    assert "Worst case over attacks" not in page


def test_per_attack_sample_counts_are_shown():
    entry = {
        "name": "pgd",
        "norm": "linf",
        "targeted": False,
        "params": {"steps": 10, "step_size": None},
        "results": [{"eps": 0.1, "robust_accuracy": 0.5, "n_attacked": 37, "n_succeeded": 12}],
    }
    page = render_report_html(_envelope(n_samples=40, attacks=[entry], worst_case=[]))
    assert ">37<" in page and ">12<" in page and "step_size" not in page


def test_a_patch_only_report_has_no_budget_check():
    names = {check["name"] for check in run_checks(_patch_report())}
    assert "perturbation_within_budget" not in names


def test_an_unknown_kind_renders_the_shell():
    page = render_report_html(
        {"kind": "mystery", "job_id": "job_x", "checks": [{"name": "c", "passed": True}]}
    )
    assert "job_x" in page and "pass" in page


def test_a_key_value_table_puts_each_name_in_a_row_header_beside_its_value():
    from worker.engine.reports.parts import key_values, pct

    markup = key_values(
        [
            ("samples", 60),
            ("missing", None),
            ("input range", [0.0, 1.0]),
            ("accuracy", pct(0.5)),
            ("x", "<b>"),
        ]
    )
    assert markup == (
        '<table class="kv"><tbody>'
        '<tr><th scope="row">samples</th><td>60</td></tr>'
        '<tr><th scope="row">input range</th><td>0, 1</td></tr>'
        '<tr><th scope="row">accuracy</th><td>50.0%</td></tr>'
        '<tr><th scope="row">x</th><td>&lt;b&gt;</td></tr>'
        "</tbody></table>"
    )
    assert key_values([("nothing", None), ("empty", "")]) == ""
