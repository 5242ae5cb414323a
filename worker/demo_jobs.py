"""The jobs `gauntlet demo` runs, one per kind, and how each report is printed in a few lines."""

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

Spec = dict[str, Any]
Report = dict[str, Any]

DEMO_ATTACKS = [
    {"name": "fgsm", "norm": "linf", "eps": [0.05, 0.1, 0.2]},
    {"name": "pgd", "norm": "linf", "eps": [0.05, 0.1, 0.2], "steps": 40},
    {"name": "apgd", "norm": "linf", "eps": [0.05, 0.1, 0.2], "loss": "ce"},
    {"name": "square", "norm": "linf", "eps": [0.1], "queries": 1000},
    {"name": "pgd", "norm": "l2", "eps": [0.5, 1.0, 2.0], "steps": 40},
    {"name": "deepfool", "norm": "l2", "eps": [0.5, 1.0, 2.0]},
]


@dataclass(frozen=True)
class DemoJob:
    """One demo job: its title, its spec for the uploaded model's id, and a printer for its report."""

    title: str
    spec: Callable[[str], Spec]
    show: Callable[[Report], list[str]]


def _checks(report: Report) -> list[str]:
    """One line per sanity check."""
    return [f"  check {'PASS' if c['passed'] else 'FAIL'}: {c['name']}" for c in report.get("checks", [])]


def evasion_spec(model_id: str) -> Spec:
    """The evasion job: white-box and black-box attacks, linf and l2, on the held-out digits."""
    return {
        "kind": "evasion",
        "model_id": model_id,
        "dataset_id": "builtin:digits-test",
        "seed": 0,
        "params": {"attacks": DEMO_ATTACKS, "max_samples": 297, "batch_size": 128},
    }


def show_evasion(report: Report) -> list[str]:
    """Robust accuracy per attack and eps, the worst case and the checks."""
    lines = [f"clean accuracy on {report['n_samples']} held-out digits: {report['clean_accuracy']:.3f}"]
    for attack in report["attacks"]:
        for row in attack["results"]:
            queries = f", {row['mean_queries']:.0f} queries per sample" if row.get("mean_queries") else ""
            lines.append(
                f"  {attack['name']:<8} {attack['norm']:<4} eps={row['eps']:<5} robust accuracy "
                f"{row['robust_accuracy']:.3f}  success rate {row['attack_success_rate']:.3f}  "
                f"({row['seconds']:.2f} s{queries})"
            )
    lines += [
        f"  worst case {row['norm']:<4} eps={row['eps']:<5} robust accuracy {row['robust_accuracy']:.3f}"
        for row in report["worst_case"]
    ]
    return lines + _checks(report)


DEMO_JOBS: list[DemoJob] = [
    DemoJob("evasion: FGSM, PGD, APGD, Square (black-box), DeepFool", evasion_spec, show_evasion),
]
