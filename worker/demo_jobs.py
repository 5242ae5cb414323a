"""The jobs `gauntlet demo` runs, one per kind, and how each report is printed in a few lines.

Each printout starts with the report's headline (app.schemas.reports.headline): the verdict, the
headline figures with their sample counts and 95% intervals, what passed and what failed, in the words
the HTML page's verdict box uses; the kind's details follow.
"""

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from app.schemas.reports.headline import headline
from app.schemas.reports.poisoning_verdict import flip_drop

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


def _headline(report: Report) -> list[str]:
    """The verdict, the headline figures and the checks, as the page's verdict box says them."""
    return headline(report).lines()


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
    """The headline, then robust accuracy per attack and eps."""
    lines = _headline(report) + ["details:"]
    for attack in report["attacks"]:
        for row in attack["results"]:
            queries = f", {row['mean_queries']:.0f} queries per sample" if row.get("mean_queries") else ""
            lines.append(
                f"  {attack['name']:<8} {attack['norm']:<4} eps={row['eps']:<5} robust accuracy "
                f"{row['robust_accuracy']:.3f}  success rate {row['attack_success_rate']:.3f}  "
                f"({row['seconds']:.2f} s{queries})"
            )
    return lines


def extraction_spec(model_id: str) -> Spec:
    """The extraction job: steal the model through onnxruntime, with and without an output defense."""
    return {
        "kind": "extraction",
        "model_id": model_id,
        "dataset_id": "builtin:digits-test",
        "seed": 0,
        "params": {
            "query_dataset_id": "builtin:digits-train",
            "victim_output": {"kind": "probabilities"},
            "budgets": [250, 1000],
            "attacks": [{"name": "knockoff", "strategy": "random"}],
            "surrogate": {"architecture": "victim", "epochs": 20},
            "defenses": [{"name": "top_k", "k": 1}],
            "detection": [{"name": "prada"}],
            "transfer": {"name": "pgd", "norm": "linf", "eps": [0.1]},
            "max_samples": 297,
        },
    }


def show_extraction(report: Report) -> list[str]:
    """The headline, then fidelity per attack, defense and budget; detection; transfer."""
    lines = _headline(report) + ["details:"]
    for attack in report["attacks"]:
        for row in attack["rows"]:
            for result in row["results"]:
                lines.append(
                    f"  {attack['label']:<18} vs {row['defense']:<10} sees {row['sees']:<13} "
                    f"{result['queries']:>5} queries  fidelity {result['fidelity']:.3f}  "
                    f"surrogate accuracy {result['surrogate_accuracy']:.3f}"
                )
    for attack in report["attacks"]:
        for row in attack["rows"]:
            for transfer in row["results"][-1].get("transfer") or []:
                lines.append(
                    f"  transfer from {attack['label']} vs {row['defense']}: PGD eps={transfer['eps']} "
                    f"crafted on the surrogate fools the victim on {transfer['transfer_success_rate']:.3f}"
                )
    for row in (report.get("transfer") or {}).get("white_box") or []:
        lines.append(
            f"  white-box PGD eps={row['eps']} on the victim itself: {row['attack_success_rate']:.3f}"
        )
    for detector in report.get("detection") or []:
        alarms = ", ".join(f"{s['attack']}: {s['alarm_at_query']}" for s in detector["streams"])
        benign = detector["benign"]["alarm_at_query"]
        lines.append(f"  {detector['name']} alarm at query: {alarms}; benign stream: {benign}")
    return lines


def poisoning_spec(model_id: str) -> Spec:
    """The poisoning job: retrain the model's architecture on poisoned digits, detect the poison."""
    return {
        "kind": "poisoning",
        "model_id": model_id,
        "dataset_id": "builtin:digits-test",
        "seed": 0,
        "params": {
            "train_dataset_id": "builtin:digits-train",
            "training": {"init": "random", "epochs": 10, "batch_size": 64},
            "attacks": [
                {"name": "badnets", "target_class": 0, "rate": [0.05]},
                {"name": "label_flip", "mode": "random", "rate": [0.2]},
            ],
            "detection": [{"name": "activation_clustering"}],
            "retrain_after_removal": True,
        },
    }


def show_poisoning(report: Report) -> list[str]:
    """The headline, then clean accuracy and the success rate (or the accuracy drop) per attack and rate."""
    lines = _headline(report) + ["details:"]
    for attack in report["attacks"]:
        for row in attack["results"]:
            success = row.get("attack_success_rate")
            effect = (
                f"accuracy drop {100 * row['accuracy_drop']:.1f} points"
                if flip_drop(row)
                else "attack success rate " + ("n/a" if success is None else f"{success:.3f}")
            )
            lines.append(
                f"  {attack['name']:<12} rate {row['rate']:<5} poisoned {row.get('n_poisoned')}  "
                f"clean accuracy {row['clean_accuracy']:.3f}  {effect}"
            )
    return lines


def defense_spec(model_id: str) -> Spec:
    """The defense job: PGD adversarial training of the uploaded graph, evaluated adaptively beside it."""
    return {
        "kind": "defense",
        "model_id": model_id,
        "dataset_id": "builtin:digits-test",
        "seed": 0,
        "params": {
            "train_dataset_id": "builtin:digits-train",
            "defense": {
                "name": "adversarial_training",
                "method": "pgd",
                "norm": "linf",
                "eps": 0.1,
                "steps": 7,
                "epochs": 5,
                "init": "pretrained",
            },
            "evaluation": {
                "attacks": [{"name": "pgd", "norm": "linf", "eps": [0.05, 0.1, 0.2], "steps": 40}],
                "max_samples": 297,
            },
        },
    }


def show_defense(report: Report) -> list[str]:
    """The headline, then clean and robust accuracy of the hardened model beside the undefended one."""
    head = report["headline"]
    lines = _headline(report) + [
        "details:",
        f"  undefended: clean {head['undefended_clean_accuracy']:.3f}, "
        f"robust {head['undefended_robust_accuracy']:.3f} at {head['norm']} eps={head['eps']}",
        f"  hardened:   clean {head['clean_accuracy']:.3f}, robust {head['robust_accuracy']:.3f} "
        "(adaptive, worst case"
        + (
            ""
            if head.get("naive_robust_accuracy") is None
            else f"; naive {head['naive_robust_accuracy']:.3f}"
        )
        + ")",
        f"  hardened model registered as {', '.join(report['derived_model_ids'])}",
    ]
    return lines


DEMO_JOBS: list[DemoJob] = [
    DemoJob("evasion: FGSM, PGD, APGD, Square (black-box), DeepFool", evasion_spec, show_evasion),
    DemoJob(
        "extraction: KnockoffNets through onnxruntime, top-1 defense, PRADA, transfer",
        extraction_spec,
        show_extraction,
    ),
    DemoJob(
        "poisoning: BadNets and label flips, activation clustering, retraining",
        poisoning_spec,
        show_poisoning,
    ),
    DemoJob("defense: PGD adversarial training, evaluated adaptively", defense_spec, show_defense),
]
