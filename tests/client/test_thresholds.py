"""`--fail-under` / `--fail-over` thresholds read a report's headline figures: both ways, and at one eps."""

import pytest

from gauntlet_cli.main import build_parser
from gauntlet_client.cli.thresholds import evaluate, parse_threshold

EVASION = {
    "kind": "evasion",
    "job_id": "job_1",
    "model_id": "mdl_1",
    "n_samples": 200,
    "clean_accuracy": 0.95,
    "attacks": [
        {
            "name": "pgd",
            "norm": "linf",
            "results": [
                {"eps": 0.1, "robust_accuracy": 0.7, "attack_success_rate": 0.26},
                {"eps": 0.2, "robust_accuracy": 0.3, "attack_success_rate": 0.68},
            ],
        }
    ],
    "worst_case": [
        {"norm": "linf", "eps": 0.1, "robust_accuracy": 0.65, "n_attacks": 2},
        {"norm": "linf", "eps": 0.2, "robust_accuracy": 0.25, "n_attacks": 2},
    ],
    "checks": [{"name": "robust_below_clean", "passed": True}],
}


def _check(text: str, floor: bool = True) -> tuple[bool, str]:
    return evaluate(EVASION, parse_threshold(text, floor=floor))


def test_robust_accuracy_is_the_worst_case_at_every_eps_or_at_the_one_asked():
    assert _check("robust_accuracy=0.2")[0]
    passed, line = _check("robust_accuracy=0.3")
    assert not passed and line.startswith("MISSED") and "0.2500" in line  # the largest eps decides
    assert _check("robust_accuracy@0.1=0.6")[0]
    assert not _check("robust_accuracy@0.1=0.66")[0]
    assert _check("clean_accuracy=0.9")[0] and not _check("clean_accuracy=0.96")[0]


def test_fail_over_reads_the_highest_success_rate():
    assert _check("attack_success_rate=0.7", floor=False)[0]
    assert not _check("attack_success_rate=0.5", floor=False)[0]
    assert _check("attack_success_rate@0.1=0.3", floor=False)[0]


def test_a_metric_the_report_lacks_misses_rather_than_passes():
    passed, line = _check("fidelity=0.1", floor=False)
    assert not passed and "no such figure" in line


@pytest.mark.parametrize("bad", ["robust_accuracy", "speed=1", "robust_accuracy=x", "robust_accuracy@x=1"])
def test_malformed_thresholds_are_refused(bad):
    with pytest.raises(ValueError):
        parse_threshold(bad, floor=True)


def test_the_cli_parses_thresholds_and_refuses_unknown_metrics(capsys):
    args = build_parser().parse_args(
        ["submit", "spec.json", "--fail-under", "robust_accuracy@0.1=0.6", "--fail-over", "fidelity=0.9"]
    )
    assert [str(t) for t in args.fail_under + args.fail_over] == [
        "robust_accuracy@0.1 >= 0.6",
        "fidelity <= 0.9",
    ]
    with pytest.raises(SystemExit) as usage:
        build_parser().parse_args(["submit", "spec.json", "--fail-under", "speed=1"])
    assert usage.value.code == 2 and "METRIC" in capsys.readouterr().err
