"""Benchmark Gauntlet's model extraction against ART's KnockoffNets and CopycatCNN at equal budgets.

Usage: python benchmarks/bench_extraction.py [--seeds 3 --epochs 30 --quick --threads 1 --out FILE]
       [--only natural|random]

Victim: the digits small-cnn (trained on digits-train, seed 0), exported to ONNX and queried through
onnxruntime only, on both sides. Pool: digits-train (1500 samples, so a pool attack's largest budget
is 1500). Fidelity: label agreement with the victim on digits-test (297 samples). Surrogate: the
victim's ONNX graph re-initialised from the seed (`architecture: victim`), Adam at 1e-3, batch 64,
--epochs epochs, on both sides. Gauntlet's surrogates otherwise train with the default recipe, so for at
least `min_steps` (2000) optimizer steps; the comparisons with ART (and the time ratio) use min_steps 0:
the same 30 epochs as ART. Each figure is a mean over --seeds seeds (0, 1, ...).

Out-of-distribution pool (`builtin:natural-patches`, 5000 patches) at 1000 queries, knockoff random:
against the small-cnn victim (surrogate: its graph), and against a BatchNorm CNN victim (the catalog's
bn-cnn trained on digits-train like the small-cnn, exported to ONNX and queried through onnxruntime;
surrogate: the catalog small-cnn, as a user who does not know the victim's graph would pick), each with
the default recipe and the old one (30 epochs, min_steps 0); the BN victim also at 5000 queries.

Compared at equal budgets (250, 1000, 1500 queries):
  knockoff random, probabilities  vs ART KnockoffNets(random, use_probability=True), soft labels
  knockoff random, labels only    vs ART CopycatCNN (labels)
Measured on Gauntlet alone: adaptive (rewards all and cert) against random at small budgets;
jacobian from 100 seeds (5 rounds, lambda 0.1) up to 3200 queries; the natural-patches pool at
1000; PGD transfer at linf eps 0.2; each defense's cost and the fidelity against it; PRADA alarms.

Gauntlet's figures are measured by its evaluator on the exported surrogate ONNX (onnxruntime); ART's
on its trained module. Times: Gauntlet's row seconds (stream, training, export and measurement at one
budget) against ART's extract() seconds at 1000 queries, seed 0; ratio = ART / Gauntlet (above 1:
Gauntlet faster).
"""

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from app.schemas.extraction import ExtractionParams  # noqa: E402
from worker.engine.datasets import load_builtin  # noqa: E402
from worker.engine.extraction import run_extraction  # noqa: E402
from worker.engine.extraction.outputs import softmax  # noqa: E402
from worker.engine.models.export import verified_export  # noqa: E402
from worker.engine.models.intake import OnnxRuntimeClassifier  # noqa: E402
from worker.engine.training.classifier import train_digits_model  # noqa: E402
from worker.engine.training.trainable import build_trainable, trainable_from_onnx  # noqa: E402

SHAPE, CLASSES, RANGE = (1, 8, 8), 10, (0.0, 1.0)
TRANSFER = {"name": "pgd", "norm": "linf", "eps": [0.2], "steps": 40}
SECTIONS = ("random", "art", "adaptive", "jacobian", "natural")
DEFENSES = [
    {"name": "top_k", "k": 1},
    {"name": "rounding", "decimals": 1},
    {"name": "reverse_sigmoid", "beta": 0.7, "gamma": 0.4},
    {"name": "gaussian_noise", "sigma": 0.1},
]


class Setup:
    """The victim, the data and the surrogate recipe shared by every run."""

    def __init__(self, epochs: int, architecture: str = "small-cnn") -> None:
        self.victim_module = train_digits_model(architecture, epochs=15, seed=0)
        self.onnx, _ = verified_export(
            self.victim_module, input_shape=SHAPE, num_classes=CLASSES, input_range=RANGE
        )
        self.victim = OnnxRuntimeClassifier(self.onnx)
        self.train, self.test = load_builtin("digits-train"), load_builtin("digits-test")
        self.victim_labels = self.victim(self.test.x).argmax(1)
        self.epochs = epochs

    def accuracy(self) -> float:
        """The victim's accuracy on digits-test."""
        return float((self.victim_labels == self.test.y).mean())

    def surrogate(self, seed: int) -> nn.Module:
        return trainable_from_onnx(self.onnx, init="random", seed=seed)

    def ours(
        self,
        seed: int,
        budgets: list[int],
        attacks: list[dict],
        *,
        pool=None,
        architecture: str = "victim",
        min_steps: int | None = None,
        **extra: Any,
    ) -> dict:
        def catalog(seed: int) -> nn.Module:
            return build_trainable(
                architecture=architecture,
                onnx_bytes=None,
                safetensors_bytes=None,
                input_shape=SHAPE,
                num_classes=CLASSES,
                init="random",
                seed=seed,
            )

        params = {
            "query_dataset_id": "builtin:digits-train",
            "budgets": budgets,
            "attacks": attacks,
            "surrogate": {
                "architecture": architecture,
                "epochs": self.epochs,
                "batch_size": 64,
                "learning_rate": 1e-3,
                "min_steps": min_steps,
            },
            "detection": [{"name": "prada", "delta": 0.9}],
        } | extra
        outcome = run_extraction(
            self.victim,
            self.test.x,
            self.test.y,
            self.train.x if pool is None else pool,
            ExtractionParams.model_validate(params),
            input_shape=SHAPE,
            num_classes=CLASSES,
            input_range=RANGE,
            make_surrogate=self.surrogate if architecture == "victim" else catalog,
            victim_white_box=self.victim_module,
            seed=seed,
        )
        return outcome.report

    def art(self, seed: int, budget: int, labels_only: bool) -> tuple[float, float]:
        """ART KnockoffNets (probabilities) or CopycatCNN (labels): fidelity and extract() seconds."""
        from art.attacks.extraction.copycat_cnn import CopycatCNN
        from art.attacks.extraction.knockoff_nets import KnockoffNets
        from art.estimators.classification import BlackBoxClassifier, PyTorchClassifier

        np.random.seed(seed)
        torch.manual_seed(seed)
        victim = BlackBoxClassifier(
            lambda x: softmax(self.victim(x.astype(np.float32))).astype(np.float32),
            SHAPE,
            CLASSES,
            clip_values=RANGE,
        )
        model = self.surrogate(seed)
        thief = PyTorchClassifier(
            model=model,
            loss=nn.CrossEntropyLoss(),
            optimizer=torch.optim.Adam(model.parameters(), lr=1e-3),
            input_shape=SHAPE,
            nb_classes=CLASSES,
            clip_values=RANGE,
        )
        common = {
            "batch_size_fit": 64,
            "batch_size_query": 256,
            "nb_epochs": self.epochs,
            "nb_stolen": budget,
        }
        if labels_only:
            attack = CopycatCNN(victim, use_probability=False, **common)
        else:
            attack = KnockoffNets(
                victim, sampling_strategy="random", use_probability=True, verbose=False, **common
            )
        started = time.perf_counter()
        attack.extract(self.train.x, thieved_classifier=thief)
        seconds = time.perf_counter() - started
        model.eval()
        with torch.no_grad():
            labels = model(torch.from_numpy(self.test.x)).argmax(1).numpy()
        return float((labels == self.victim_labels).mean()), seconds


def curve(report: dict, attack: int = 0, row: str = "none") -> dict[int, float]:
    """Budget -> fidelity of one attack row."""
    entry = next(r for r in report["attacks"][attack]["rows"] if r["defense"] == row)
    return {r["budget"]: r["fidelity"] for r in entry["results"]}


def out_of_distribution(setup: Setup, bn: Setup | None, seed: int, add: Callable[[str, float], None]) -> dict:
    """Knockoff random from natural-patches: the small-cnn and BN victims, default and old recipe."""
    pool, attack = load_builtin("natural-patches").x, [{"name": "knockoff", "strategy": "random"}]
    natural = setup.ours(seed, [1000], attack, pool=pool)
    runs = {
        "natural-patches": natural,
        "natural-patches, old recipe": setup.ours(seed, [1000], attack, pool=pool, min_steps=0, detection=[]),
    }
    if bn is not None:
        runs["natural-patches, BN victim"] = bn.ours(
            seed, [1000, 5000], attack, pool=pool, architecture="small-cnn", detection=[]
        )
        runs["natural-patches, BN victim, old recipe"] = bn.ours(
            seed, [1000], attack, pool=pool, architecture="small-cnn", min_steps=0, detection=[]
        )
    for name, report in runs.items():
        for budget, value in curve(report).items():
            add(f"{name} probabilities @{budget}", value)
        for budget, value in curve(report, row="label_only").items():
            add(f"{name} labels @{budget}", value)
    return natural


def mean(values: list[float]) -> str:
    return f"{np.mean(values):.3f} (min {np.min(values):.3f})" if values else "n/a"


def compare_with_art(setup: Setup, seeds: list[int], budgets: list[int]) -> None:
    """Knockoff random (probabilities and labels) against ART at equal budgets, seed by seed."""
    pairs: dict[str, list[tuple[float, float]]] = {}
    for seed in seeds:
        report = setup.ours(
            seed, budgets, [{"name": "knockoff", "strategy": "random"}], detection=[], min_steps=0
        )
        for budget in budgets:
            ours_p, ours_l = curve(report)[budget], curve(report, row="label_only")[budget]
            art_p = setup.art(seed, budget, labels_only=False)[0]
            art_l = setup.art(seed, budget, labels_only=True)[0]
            pairs.setdefault(f"probabilities @{budget}", []).append((ours_p, art_p))
            pairs.setdefault(f"labels @{budget}", []).append((ours_l, art_l))
        print(f"seed {seed} done", flush=True)
    print(f"\nknockoff random against ART over {len(seeds)} seeds: mean (std) fidelity, ours then ART")
    for key, values in pairs.items():
        ours, art = np.array(values).T
        print(
            f"  {key:22s} {ours.mean():.3f} ({ours.std():.3f})  {art.mean():.3f} ({art.std():.3f})  "
            f"difference {ours.mean() - art.mean():+.3f}"
        )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--quick", action="store_true", help="1 seed, 5 epochs, smaller budgets")
    parser.add_argument("--out", type=Path, default=None, help="write the figures as JSON")
    parser.add_argument("--compare-only", action="store_true", help="only knockoff random against ART")
    parser.add_argument("--only", choices=SECTIONS, default=None, help="one section, figures only")
    args = parser.parse_args()

    def want(section: str) -> bool:
        return args.only in (None, section)

    torch.set_num_threads(args.threads)
    seeds = list(range(1 if args.quick else args.seeds))
    epochs = 5 if args.quick else args.epochs
    setup = Setup(epochs)
    bn_setup = Setup(epochs, "bn-cnn") if args.only in (None, "natural") else None
    compare = [250, 1000] if args.quick else [250, 1000, 1500]
    if args.compare_only:
        compare_with_art(setup, seeds, compare)
        return
    small = [100, 250, 500, 1000]
    figures: dict[str, Any] = {
        "epochs": epochs,
        "seeds": len(seeds),
        "victim_accuracy": float((setup.victim_labels == setup.test.y).mean()),
        "bn_victim_accuracy": None if bn_setup is None else bn_setup.accuracy(),
    }
    rows: dict[str, list[float]] = {}

    def add(key: str, value: float | None) -> None:
        if value is not None:
            rows.setdefault(key, []).append(value)

    alarms: dict[str, list[Any]] = {}
    for seed in seeds:
        started = time.perf_counter()
        reports: dict[str, dict] = {}
        if want("random"):
            reports["random"] = random = setup.ours(
                seed,
                sorted(set(compare + small)),
                [{"name": "knockoff", "strategy": "random"}],
                transfer=TRANSFER,
            )
            for budget, value in curve(random).items():
                add(f"random probabilities @{budget}", value)
            for budget, value in curve(random, row="label_only").items():
                add(f"random labels @{budget}", value)
            for row in random["attacks"][0]["rows"]:
                add(
                    f"transfer eps 0.2 from {row['sees']} surrogate @{compare[-1]}",
                    row["results"][-1]["transfer"][0]["transfer_success_rate"],
                )
            white_box = random["transfer"]["white_box"][0]["attack_success_rate"]
            add("white-box PGD eps 0.2 on the victim", white_box)
        if want("art"):
            for budget in compare:
                add(
                    f"ART KnockoffNets probabilities @{budget}", setup.art(seed, budget, labels_only=False)[0]
                )
                add(f"ART CopycatCNN labels @{budget}", setup.art(seed, budget, labels_only=True)[0])
        if want("adaptive"):
            reports["adaptive"] = adaptive = setup.ours(
                seed,
                small,
                [
                    {"name": "knockoff", "strategy": "adaptive", "reward": "all"},
                    {"name": "knockoff", "strategy": "adaptive", "reward": "cert"},
                ],
            )
            for index, reward in enumerate(("all", "cert")):
                for budget, value in curve(adaptive, attack=index).items():
                    add(f"adaptive {reward} probabilities @{budget}", value)
                for budget, value in curve(adaptive, attack=index, row="label_only").items():
                    add(f"adaptive {reward} labels @{budget}", value)
        if want("jacobian"):
            jacobian_budgets = [400, 800] if args.quick else [400, 800, 1600, 3200]
            reports["jacobian"] = jacobian = setup.ours(
                seed, jacobian_budgets, [{"name": "jacobian", "seed_size": 100, "rounds": 5, "lambda": 0.1}]
            )
            for budget, value in curve(jacobian).items():
                add(f"jacobian probabilities @{budget}", value)
            for budget, value in curve(jacobian, row="label_only").items():
                add(f"jacobian labels @{budget}", value)
        if want("natural"):
            reports["natural-patches"] = out_of_distribution(setup, bn_setup, seed, add)
        for name, report in reports.items():
            for stream in report["detection"][0]["streams"]:
                alarms.setdefault(f"{name}: {stream['attack']}", []).append(stream["alarm_at_query"])
            alarms.setdefault("benign (digits-test)", []).append(
                report["detection"][0]["benign"]["alarm_at_query"]
            )
        print(f"seed {seed} done in {time.perf_counter() - started:.0f} s", flush=True)

    if args.only:
        print(f"\nfidelity (mean over {len(seeds)} seeds, min in brackets; {args.only} only)")
        for key, values in rows.items():
            print(f"  {key:70s} {mean(values)}")
        return
    defended = setup.ours(
        0, [1000], [{"name": "knockoff", "strategy": "random"}], defenses=DEFENSES, transfer=TRANSFER
    )
    timing = setup.ours(0, [1000], [{"name": "knockoff", "strategy": "random"}], detection=[], min_steps=0)
    ours_seconds = {row["sees"]: row["seconds"] for row in timing["attacks"][0]["rows"]}
    art_prob_seconds = setup.art(0, 1000, labels_only=False)[1]
    art_label_seconds = setup.art(0, 1000, labels_only=True)[1]

    print(
        f"\nvictim accuracy on digits-test {figures['victim_accuracy']:.3f} (BN victim "
        f"{figures['bn_victim_accuracy']:.3f}); surrogate epochs {epochs}; seeds {len(seeds)}"
    )
    print("\nfidelity (mean over seeds, min in brackets)")
    for key, values in rows.items():
        print(f"  {key:70s} {mean(values)}")
    figures["fidelity"] = {key: float(np.mean(v)) for key, v in rows.items()}
    print("\ndefenses (seed 0, knockoff random at 1000 queries)")
    print(
        f"  {'defense':18s} {'label chg':>9s} {'honest acc':>10s} {'L1 chg':>7s} {'fidelity':>8s} "
        f"{'label-atk':>9s} {'transfer':>8s}"
    )
    for cost, row in zip(defended["defenses"], defended["attacks"][0]["rows"], strict=True):
        l1 = "-" if cost["mean_l1_score_change"] is None else f"{cost['mean_l1_score_change']:.3f}"
        label_attack = (
            "-" if cost["label_attacker_fidelity"] is None else f"{cost['label_attacker_fidelity']:.3f}"
        )
        final = row["results"][-1]
        transfer = final["transfer"][0]["transfer_success_rate"]
        print(
            f"  {cost['name']:18s} {cost['label_change_rate']:9.3f} {cost['accuracy']:10.3f} {l1:>7s} "
            f"{final['fidelity']:8.3f} {label_attack:>9s} {transfer:8.3f}"
        )
    figures["defenses"] = [
        {
            **cost,
            "fidelity": row["results"][-1]["fidelity"],
            "transfer": row["results"][-1]["transfer"][0]["transfer_success_rate"],
        }
        for cost, row in zip(defended["defenses"], defended["attacks"][0]["rows"], strict=True)
    ]
    print("\nPRADA (delta 0.9) alarm at query, per seed")
    for key, values in alarms.items():
        print(f"  {key:55s} {values}")
    figures["prada"] = alarms
    print("\ntime at 1000 queries, seed 0 (ratio = ART / Gauntlet)")
    print(
        f"  probabilities: Gauntlet {ours_seconds['probabilities']:.1f} s, "
        f"ART KnockoffNets {art_prob_seconds:.1f} s, "
        f"ratio {art_prob_seconds / ours_seconds['probabilities']:.2f}"
    )
    print(
        f"  labels:        Gauntlet {ours_seconds['label']:.1f} s, ART CopycatCNN {art_label_seconds:.1f} s, "
        f"ratio {art_label_seconds / ours_seconds['label']:.2f}"
    )
    figures["seconds"] = {
        "gauntlet": ours_seconds,
        "art_knockoff": art_prob_seconds,
        "art_copycat": art_label_seconds,
    }
    if args.out:
        args.out.write_text(json.dumps(figures, indent=1))


if __name__ == "__main__":
    main()
