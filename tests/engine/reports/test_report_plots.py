"""The report charts, on a real evasion report: an attack run at one eps is a point, coinciding series
stay visible, axes start at the data and have round ticks."""

import math
import re

import pytest

from worker.engine.evasion.runner import run_evasion
from worker.engine.reports.chart import NICE_STEPS, Series, line_chart, nice_ticks, style
from worker.engine.reports.evasion import clean_reference, robust_series


@pytest.fixture(scope="module")
def report(small_cnn, held_out):
    attacks = [
        {"name": "pgd", "norm": "linf", "eps": [0.05, 0.1, 0.2], "steps": 10},
        {"name": "square", "norm": "linf", "eps": [0.1], "queries": 100},
        {"name": "deepfool", "norm": "l2", "eps": [0.5, 1.0]},
    ]
    return run_evasion(small_cnn, held_out[0][:60], held_out[1][:60], attacks).report


def _groups(svg: str) -> dict[str, str]:
    """Each series' SVG group by its title."""
    groups = re.findall(r'<g class="series"><title>(.*?)</title>(.*?)</g>', svg)
    return dict(groups)


def _chart(report: dict, norm: str) -> str:
    return line_chart(
        robust_series(report, norm),
        x_label=f"eps ({norm})",
        y_label="robust accuracy",
        references=clean_reference(report),
    )


def test_an_attack_at_one_eps_is_a_point_not_a_line_from_clean_accuracy(report):
    series = {s.label: s for s in robust_series(report, "linf")}
    square, pgd = series["square linf"], series["pgd linf"]
    assert square.marker_only and list(square.points) == [
        (0.1, report["attacks"][1]["results"][0]["robust_accuracy"])
    ]
    assert not pgd.marker_only and [x for x, _ in pgd.points] == [0.05, 0.1, 0.2]
    assert all(x > 0 for s in series.values() for x, _ in s.points)  # no point at eps 0 (clean accuracy)
    groups = _groups(_chart(report, "linf"))
    assert "<polyline" not in groups["square linf"] and groups["square linf"].count("<title>") == 1
    assert "<polyline" in groups["pgd linf"] and "<polyline" in groups["worst case"]


def test_coinciding_series_stay_visible(report):
    # Alone at l2, deepfool is its own worst case: the two series have the same points.
    deepfool, worst = robust_series(report, "l2")
    assert list(deepfool.points) == list(worst.points)
    groups = _groups(_chart(report, "l2"))
    widths = [
        float(re.search(r'<polyline[^>]*stroke-width="([\d.]+)"', groups[s.label])[1])
        for s in (deepfool, worst)
    ]
    assert widths[0] > widths[1]  # the earlier series is drawn wider, under the later one
    looks = [style(i) for i in range(6)]
    assert len({(look.color, look.shape, look.dash) for look in looks}) == 6
    assert len({look.shape for look in looks}) == 6 and len({look.color for look in looks}) == 6


@pytest.mark.parametrize(
    "low, high",
    [(0.05, 0.2), (0.0, 0.5), (0.5, 1.0), (100, 250), (0.577, 0.835), (1, 20), (0.1, 0.1), (3e-4, 7e-3)],
)
def test_ticks_are_round_and_cover_the_data_tightly(low, high):
    ticks = nice_ticks(low, high)
    step = ticks[1] - ticks[0]
    mantissa = step / 10 ** math.floor(math.log10(step))
    assert any(math.isclose(mantissa, m, rel_tol=1e-6) for m in NICE_STEPS)
    assert all(math.isclose(b - a, step, rel_tol=1e-6) for a, b in zip(ticks, ticks[1:], strict=False))
    assert ticks[0] <= low and ticks[-1] >= high and 3 <= len(ticks) <= 7
    if high > low:  # the axis starts at the data: less than one step below it
        assert low - ticks[0] < step and ticks[-1] - high < step


def test_axes_start_at_the_data_not_at_zero(report):
    svg = _chart(report, "l2")
    x_labels = re.findall(r'text-anchor="middle">([\d.]+)</text>', svg)
    assert x_labels[0] == "0.5" and x_labels[-1] == "1.0"
    single = line_chart([Series("a", [(2.0, 0.7)])], x_label="x", y_label="y")
    assert re.findall(r'text-anchor="end">([\d.%]+)</text>', single)[0] != "0%"
