"""Benchmark Gauntlet's poisoning attacks and detectors against adversarial-robustness-toolbox (ART).

Usage: python benchmarks/bench_poisoning.py [--seeds 3 --epochs 30 --threads 1 --targets 3
                                             --clean-label-seeds 1 --sections backdoor,detection,clean_label]

Same data (digits-train / digits-test), same victim (small-cnn), same recipe (Adam 1e-3, batch 64,
--epochs), same seed per run, same fit loop for every victim whichever library poisoned its data; every
figure is measured by Gauntlet's evaluator on the trained victim (onnxruntime on its export):
  backdoor     BadNets 2x2 white patch, all to class 0, at 1%, 5%, 10% of the training set, beside ART's
               PoisoningAttackBackdoor with its single-pixel (add_single_bd) and pattern (add_pattern_bd)
               perturbations on the same samples; blended (alpha 0.2, seeded noise) at 5%; a targeted
               flip of half of class 3 to 8 (class-3 accuracy).
  detection    on the BadNets 5% victims: activation clustering, spectral signatures and STRIP against
               ART's ActivationDefence (its defaults: PCA to 10, 2-means, the smaller cluster of every
               class, read at the Sequential's last layer, the logits) and SpectralSignatureDefense (its
               default expected poison share 0.33, and the true 0.05); precision, recall, F1; what each
               flags on the clean baseline; activation clustering's removal and retraining.
  clean_label  label-consistent (eps 0.2, PGD 20 steps, 50% of class 0, the same 2x2 trigger) against
               ART's PoisoningAttackCleanLabelBackdoor with the same PGD; feature collision and gradient
               matching (eps 0.1, 2% of the training set, --targets held-out targets each retrained from
               scratch) against ART's FeatureCollisionAttack (unbounded: it has no eps, its perturbation is
               reported) and GradientMatchingAttack (eps 0.1, one trial, as many optimisation epochs as
               our steps), on the same clean surrogate (another seed than the victim) and the same targets.
  reach        (not in the default sections) label-consistent at eps 0.1 to 0.5 and 50% or 80% of the
               class, gradient matching at eps 0.1 and 0.2 and 2% or 8% of the training set (250 steps,
               2 restarts): where Gauntlet's clean-label attacks start to work on digits.
Means over --seeds (clean-label attacks over --clean-label-seeds). Times are seconds of crafting or
detection (not the victims' training); ratios are ART's / Gauntlet's, so above 1 means Gauntlet is faster.
ART lists torchvision as a dependency; nothing used here needs it (see the Makefile).
"""

import argparse
import sys
import time
import types
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.modules.setdefault("multiprocess", types.ModuleType("multiprocess"))  # ART imports it; unused serially

from art.attacks.poisoning import (  # noqa: E402
    FeatureCollisionAttack,
    GradientMatchingAttack,
    PoisoningAttackBackdoor,
    PoisoningAttackCleanLabelBackdoor,
)
from art.attacks.poisoning.perturbations import add_pattern_bd, add_single_bd  # noqa: E402
from art.defences.detector.poison import ActivationDefence, SpectralSignatureDefense  # noqa: E402
from art.estimators.classification import PyTorchClassifier  # noqa: E402
from pydantic import TypeAdapter  # noqa: E402

from app.schemas.poisoning import PoisoningAttack, PoisoningAttackBase  # noqa: E402
from app.schemas.poisoning_detection import PoisoningDetector  # noqa: E402
from worker.engine.datasets import load_builtin  # noqa: E402
from worker.engine.models.catalog import build_architecture  # noqa: E402
from worker.engine.poisoning.attacks.backdoors import BadNets, Blended  # noqa: E402
from worker.engine.poisoning.attacks.feature_collision import FeatureCollision  # noqa: E402
from worker.engine.poisoning.attacks.gradient_matching import GradientMatching  # noqa: E402
from worker.engine.poisoning.attacks.label_consistent import LabelConsistent  # noqa: E402
from worker.engine.poisoning.attacks.label_flip import LabelFlip  # noqa: E402
from worker.engine.poisoning.data import PoisonContext, PoisonedSet  # noqa: E402
from worker.engine.poisoning.detection.base import DetectionData, DetectorSpec  # noqa: E402
from worker.engine.poisoning.detection.registry import build_detector  # noqa: E402
from worker.engine.poisoning.metrics import accuracy, precision_recall_f1  # noqa: E402
from worker.engine.poisoning.targets import select_targets  # noqa: E402
from worker.engine.poisoning.victim import Exported, VictimSetup  # noqa: E402
from worker.engine.seeding import numpy_rng  # noqa: E402
from worker.engine.training.recipe import TrainingRecipe  # noqa: E402

_ATTACK: TypeAdapter[PoisoningAttackBase] = TypeAdapter(PoisoningAttack)
_DETECTOR: TypeAdapter[DetectorSpec] = TypeAdapter(PoisoningDetector)


def _attack(name: str, **params: Any) -> Any:
    """A typed attack spec (one placeholder rate: the benchmark passes its rates itself)."""
    return _ATTACK.validate_python({"name": name, "rate": [0.1], **params})


SHAPE, K, TARGET = (1, 8, 8), 10, 0
RATES = (0.01, 0.05, 0.1)


@dataclass
class Results:
    """Figures per (row label, metric) over seeds."""

    values: dict[tuple[str, str], list[float]] = field(default_factory=dict)

    def add(self, row: str, metric: str, value: float | None) -> None:
        """Record one seed's figure."""
        if value is not None:
            self.values.setdefault((row, metric), []).append(float(value))

    def mean(self, row: str, metric: str) -> float | None:
        """Mean over seeds, or None."""
        found = self.values.get((row, metric))
        return float(np.mean(found)) if found else None


def make_model(seed: int) -> nn.Module:
    """A fresh small-cnn from seed (the catalog's default init)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build_architecture("small-cnn", SHAPE, K).eval()


def art_classifier(model: nn.Module) -> PyTorchClassifier:
    """ART's wrapper over a trained module (no training happens through it)."""
    return PyTorchClassifier(
        model=model, loss=nn.CrossEntropyLoss(), input_shape=SHAPE, nb_classes=K, clip_values=(0.0, 1.0)
    )


def one_hot(y: np.ndarray) -> np.ndarray:
    """Labels as ART's one-hot rows."""
    return np.eye(K, dtype=np.float32)[y]


def stamp(x: np.ndarray) -> np.ndarray:
    """The 2x2 white patch at the bottom right (Gauntlet's BadNets default) on [N, 1, 8, 8]."""
    out = x.copy()
    out[:, :, -2:, -2:] = 1.0
    return out


def art_perturbation(function: Any) -> Any:
    """ART's image perturbation (written for [N, H, W]) on [N, 1, H, W]."""
    return lambda x: function(x[:, 0].copy(), pixel_value=1.0)[:, None]


def backdoor_rate(model: Exported, trigger: Any, x: np.ndarray, y: np.ndarray) -> float:
    """Triggered held-out samples not of the target class classified as the target."""
    keep = y != TARGET
    return accuracy(model.predict(trigger(x[keep])), np.full(int(keep.sum()), TARGET))


class Bench:
    """One seed's victim setup, clean baseline and surrogate."""

    def __init__(self, seed: int, epochs: int) -> None:
        """Train the clean baseline (and later the surrogate) for this seed."""
        self.seed = seed
        self.train, self.test = load_builtin("digits-train"), load_builtin("digits-test")
        self.setup = VictimSetup(make_model, TrainingRecipe(epochs=epochs), seed, SHAPE, K, (0.0, 1.0))
        self.baseline_module, self.baseline = self.victim(self.train.x, self.train.y)
        self.baseline_accuracy = accuracy(self.baseline.predict(self.test.x), self.test.y)
        self._surrogate: nn.Module | None = None

    def victim(self, x: np.ndarray, y: np.ndarray) -> tuple[nn.Module, Exported]:
        """Train the victim on (x, y) with the job's recipe and seed; the module and its export."""
        module, history = self.setup.train(x, y, stage="bench")
        return module, self.setup.export(module, verified=False, history=history)

    @property
    def surrogate(self) -> nn.Module:
        """A clean surrogate from another seed (the attacker does not hold the victim)."""
        if self._surrogate is None:
            self._surrogate, _ = self.setup.train(
                self.train.x, self.train.y, stage="bench", seed=self.seed + 7919
            )
        return self._surrogate

    def context(self, surrogate: bool = False) -> PoisonContext:
        """An attack context on the clean training set."""
        return PoisonContext(
            x=self.train.x,
            y=self.train.y,
            num_classes=K,
            input_range=(0.0, 1.0),
            seed=self.seed,
            surrogate=self.surrogate if surrogate else None,
        )

    def clean_accuracy(self, model: Exported) -> float:
        """Held-out accuracy."""
        return accuracy(model.predict(self.test.x), self.test.y)


def timed(function: Any, *args: Any, **kwargs: Any) -> tuple[Any, float]:
    """The result and the wall seconds of a call."""
    start = time.perf_counter()
    out = function(*args, **kwargs)
    return out, time.perf_counter() - start


def run_backdoor(bench: Bench, results: Results) -> dict[str, Any]:
    """BadNets against ART's backdoors at each rate, blended, the targeted flip; keeps the 5% victim."""
    train, test = bench.train, bench.test
    results.add("clean baseline", "clean_accuracy", bench.baseline_accuracy)
    kept: dict[str, Any] = {}
    badnets = BadNets(_attack("badnets", trigger={"size": 2}))
    badnets.check(SHAPE, K, (0.0, 1.0))
    for index, rate in enumerate(RATES):
        poisoned, seconds = timed(badnets.poison, bench.context(), rate, index)
        module, model = bench.victim(poisoned.x, poisoned.y)
        row = f"badnets 2x2 {rate:.0%}"
        results.add(row, "success", backdoor_rate(model, badnets.test_trigger().apply, test.x, test.y))
        results.add(row, "clean_drop", bench.baseline_accuracy - bench.clean_accuracy(model))
        results.add(row, "seconds", seconds)
        if rate == 0.05:
            kept = {"module": module, "model": model, "poisoned": poisoned}
        for name, function in (("single pixel", add_single_bd), ("pattern", add_pattern_bd)):
            perturb = art_perturbation(function)
            art = PoisoningAttackBackdoor(perturb)
            start = time.perf_counter()
            x, y = train.x.copy(), train.y.copy()
            x[poisoned.indices], labels = art.poison(
                train.x[poisoned.indices], one_hot(np.full(len(poisoned.indices), TARGET))
            )
            y[poisoned.indices] = labels.argmax(1)
            seconds = time.perf_counter() - start
            _, art_model = bench.victim(x, y)
            row = f"ART {name} {rate:.0%}"
            results.add(row, "success", backdoor_rate(art_model, perturb, test.x, test.y))
            results.add(row, "clean_drop", bench.baseline_accuracy - bench.clean_accuracy(art_model))
            results.add(row, "seconds", seconds)
    blended = Blended(_attack("blended", alpha=0.2))
    blended.check(SHAPE, K, (0.0, 1.0))
    poisoned = blended.poison(bench.context(), 0.05, 7)
    _, model = bench.victim(poisoned.x, poisoned.y)
    results.add(
        "blended alpha 0.2 5%", "success", backdoor_rate(model, blended.test_trigger().apply, test.x, test.y)
    )
    results.add("blended alpha 0.2 5%", "clean_drop", bench.baseline_accuracy - bench.clean_accuracy(model))
    half = 0.5 * float((train.y == 3).sum()) / len(train.y)
    flip = LabelFlip(_attack("label_flip", mode="targeted", source_class=3, target_class=8))
    poisoned = flip.poison(bench.context(), half, 8)
    _, model = bench.victim(poisoned.x, poisoned.y)
    source = test.y == 3
    results.add(
        "flip half of class 3 to 8",
        "class3_accuracy",
        accuracy(model.predict(test.x[source]), test.y[source]),
    )
    results.add(
        "flip half of class 3 to 8", "clean_drop", bench.baseline_accuracy - bench.clean_accuracy(model)
    )
    return kept


def run_detection(bench: Bench, kept: dict[str, Any], results: Results) -> None:
    """Gauntlet's detectors against ART's on the BadNets 5% victim and the clean baseline; removal."""
    train, test = bench.train, bench.test
    poisoned: PoisonedSet = kept["poisoned"]
    triggered = stamp(test.x[test.y != TARGET])
    for label, model, x, y, truth in (
        ("badnets 5%", kept["model"], poisoned.x, poisoned.y, poisoned.indices),
        ("clean", bench.baseline, train.x, train.y, None),
    ):
        data = DetectionData(
            x,
            y,
            K,
            (0.0, 1.0),
            model.onnx,
            test.x,
            test.y,
            seed=bench.seed,
            triggered_x=triggered if truth is not None else None,
        )
        for name in ("activation_clustering", "spectral_signatures", "strip"):
            result, seconds = timed(build_detector(_DETECTOR.validate_python({"name": name})).detect, data)
            _record(
                results, f"{name} {label}", result.suspected, truth, len(y), seconds, result.flagged_classes
            )
            if name == "strip" and truth is not None:
                results.add(
                    f"{name} {label}",
                    "inference_detection",
                    result.details["inference"].get("detection_rate"),
                )
                results.add(
                    f"{name} {label}", "inference_frr", result.details["inference"]["false_rejection_rate"]
                )
            if name == "activation_clustering" and truth is not None:
                keep = np.setdiff1d(np.arange(len(y)), result.suspected)
                _, retrained = bench.victim(x[keep], y[keep])
                results.add(
                    "AC removal + retraining", "success", backdoor_rate(retrained, stamp, test.x, test.y)
                )
                results.add(
                    "AC removal + retraining",
                    "clean_drop",
                    bench.baseline_accuracy - bench.clean_accuracy(retrained),
                )
        module = kept["module"] if truth is not None else bench.baseline_module
        classifier = art_classifier(module)
        defence = ActivationDefence(classifier, x, one_hot(y))
        (_, clean_flags), seconds = timed(defence.detect_poison, nb_clusters=2, nb_dims=10, reduce="PCA")
        _record(
            results,
            f"ART ActivationDefence {label}",
            np.flatnonzero(np.asarray(clean_flags) == 0),
            truth,
            len(y),
            seconds,
            None,
        )
        for share in (0.33, 0.05):
            spectral = SpectralSignatureDefense(classifier, x, one_hot(y), expected_pp_poison=share)
            (_, clean_flags), seconds = timed(spectral.detect_poison)
            _record(
                results,
                f"ART SpectralSignature ({share}) {label}",
                np.flatnonzero(np.asarray(clean_flags) == 0),
                truth,
                len(y),
                seconds,
                None,
            )


def _record(
    results: Results,
    row: str,
    suspected: np.ndarray,
    truth: np.ndarray | None,
    n: int,
    seconds: float,
    flagged: list[int] | None,
) -> None:
    """Precision, recall and F1 (poisoned sets) or the flagged share (clean sets), and the time."""
    if truth is not None:
        for key, value in precision_recall_f1(suspected, truth).items():
            results.add(row, key, value)
    else:
        results.add(row, "flagged_share", len(suspected) / n)
    if flagged is not None:
        results.add(row, "flagged_classes", len(flagged))
    results.add(row, "seconds", seconds)


def run_clean_label(bench: Bench, targets: int, results: Results) -> None:
    """Label-consistent, feature collision and gradient matching against ART's, same surrogate and targets."""
    train, test = bench.train, bench.test
    surrogate = bench.surrogate
    classifier = art_classifier(surrogate)
    lc = LabelConsistent(
        _attack("label_consistent", target_class=TARGET, eps=0.2, steps=20, trigger={"size": 2})
    )
    lc.check(SHAPE, K, (0.0, 1.0))
    poisoned, seconds = timed(lc.poison, bench.context(surrogate=True), 0.5, 11)
    _, model = bench.victim(poisoned.x, poisoned.y)
    results.add("label_consistent 50% eps 0.2", "success", backdoor_rate(model, stamp, test.x, test.y))
    results.add("label_consistent 50% eps 0.2", "seconds", seconds)
    np.random.seed(bench.seed)
    art_lc = PoisoningAttackCleanLabelBackdoor(
        PoisoningAttackBackdoor(stamp),
        classifier,
        one_hot(np.array([TARGET]))[0],
        pp_poison=0.5,
        eps=0.2,
        eps_step=2.5 * 0.2 / 20,
        max_iter=20,
    )
    (x, labels), seconds = timed(art_lc.poison, train.x, one_hot(train.y))
    _, model = bench.victim(x, labels.argmax(1))
    results.add(
        "ART clean-label backdoor 50% eps 0.2", "success", backdoor_rate(model, stamp, test.x, test.y)
    )
    results.add(
        "ART clean-label backdoor 50% eps 0.2", "labels_changed", float((labels.argmax(1) != train.y).sum())
    )
    results.add("ART clean-label backdoor 50% eps 0.2", "seconds", seconds)

    fc = FeatureCollision(_attack("feature_collision", targets=targets, eps=0.1))
    gm = GradientMatching(_attack("gradient_matching", targets=targets, eps=0.1))
    chosen = select_targets(
        fc, bench.baseline, surrogate, test.x, test.y, numpy_rng(bench.seed, 5), torch.device("cpu")
    )
    for trial, target in enumerate(chosen):
        for attack, row in ((fc, "feature_collision 2% eps 0.1"), (gm, "gradient_matching 2% eps 0.1")):
            poisoned, seconds = timed(
                attack.poison_target, bench.context(surrogate=True), 0.02, target, trial
            )
            _, model = bench.victim(poisoned.x, poisoned.y)
            results.add(row, "success", float(model.predict(target.x[None])[0] == target.intended))
            results.add(row, "max_perturbation", float(np.abs(poisoned.x - train.x).max()))
            results.add(row, "seconds", seconds)
            if attack is fc:
                art = FeatureCollisionAttack(
                    classifier,
                    target=target.x[None],
                    feature_layer=8,
                    learning_rate=0.1,
                    similarity_coeff=1.0,
                    max_iter=120,
                    verbose=False,
                )
                (x_poison, _), seconds = timed(art.poison, train.x[poisoned.indices])
                x = train.x.copy()
                x[poisoned.indices] = x_poison
                label = "ART FeatureCollision 2% (unbounded)"
            else:
                np.random.seed(bench.seed * 100 + trial)
                art = GradientMatchingAttack(
                    classifier,
                    percent_poison=0.02,
                    epsilon=0.1,
                    max_trials=1,
                    max_epochs=150,
                    learning_rate_schedule=([1e-1, 1e-2, 1e-3, 1e-4], [56, 93, 131, 150]),
                    batch_size=128,
                    clip_values=(0.0, 1.0),
                    verbose=0,
                )
                (x, _), seconds = timed(
                    art.poison,
                    target.x[None],
                    one_hot(np.array([target.intended])),
                    train.x,
                    one_hot(train.y),
                )
                label = "ART GradientMatching 2% eps 0.1"
            _, model = bench.victim(x.astype(np.float32), train.y)
            results.add(label, "success", float(model.predict(target.x[None])[0] == target.intended))
            results.add(label, "max_perturbation", float(np.abs(x - train.x).max()))
            results.add(label, "seconds", seconds)


def run_reach(bench: Bench, targets: int, results: Results) -> None:
    """Where the clean-label attacks reach: label-consistent and gradient matching at larger budgets."""
    test = bench.test
    for eps, rate in ((0.1, 0.5), (0.3, 0.5), (0.5, 0.5), (0.5, 0.8)):
        lc = LabelConsistent(
            _attack("label_consistent", target_class=TARGET, eps=eps, steps=20, trigger={"size": 2})
        )
        lc.check(SHAPE, K, (0.0, 1.0))
        poisoned = lc.poison(bench.context(surrogate=True), rate, 21)
        _, model = bench.victim(poisoned.x, poisoned.y)
        results.add(
            f"label_consistent {rate:.0%} eps {eps}", "success", backdoor_rate(model, stamp, test.x, test.y)
        )
    for eps, rate in ((0.2, 0.02), (0.1, 0.08), (0.2, 0.08)):
        gm = GradientMatching(_attack("gradient_matching", targets=targets, eps=eps, steps=250, restarts=2))
        chosen = select_targets(
            gm, bench.baseline, bench.surrogate, test.x, test.y, numpy_rng(bench.seed, 6), torch.device("cpu")
        )
        for trial, target in enumerate(chosen):
            poisoned = gm.poison_target(bench.context(surrogate=True), rate, target, 100 + trial)
            _, model = bench.victim(poisoned.x, poisoned.y)
            results.add(
                f"gradient_matching {rate:.0%} eps {eps} (250 steps, 2 restarts)",
                "success",
                float(model.predict(target.x[None])[0] == target.intended),
            )


def report(results: Results) -> None:
    """One line per row: every metric's mean over seeds, with how many seeds."""
    rows: dict[str, list[str]] = {}
    for (row, metric), values in results.values.items():
        rows.setdefault(row, []).append(
            f"{metric} {np.mean(values):.3f}" + (f" (n={len(values)})" if metric != "seconds" else "")
        )
    width = max(len(row) for row in rows)
    for row, cells in rows.items():
        print(f"{row:<{width}}  " + ", ".join(cells))
    print()
    for ours, theirs in (
        ("activation_clustering badnets 5%", "ART ActivationDefence badnets 5%"),
        ("spectral_signatures badnets 5%", "ART SpectralSignature (0.33) badnets 5%"),
        ("label_consistent 50% eps 0.2", "ART clean-label backdoor 50% eps 0.2"),
        ("feature_collision 2% eps 0.1", "ART FeatureCollision 2% (unbounded)"),
        ("gradient_matching 2% eps 0.1", "ART GradientMatching 2% eps 0.1"),
    ):
        a, b = results.mean(ours, "seconds"), results.mean(theirs, "seconds")
        if a and b:
            print(f"time ratio ART / Gauntlet, {ours}: {b / a:.2f}")


def main() -> None:
    """Run the requested sections over the seeds and print the table."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--clean-label-seeds", type=int, default=1)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--targets", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--sections", default="backdoor,detection,clean_label")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    sections = set(args.sections.split(","))
    results = Results()
    started = time.perf_counter()
    for seed in range(args.seeds):
        bench = Bench(seed, args.epochs)
        if sections & {"backdoor", "detection"}:
            kept = run_backdoor(bench, results)
            if "detection" in sections:
                run_detection(bench, kept, results)
        if "clean_label" in sections and seed < args.clean_label_seeds:
            run_clean_label(bench, args.targets, results)
        if "reach" in sections and seed < args.clean_label_seeds:
            run_reach(bench, args.targets, results)
        print(f"seed {seed} done after {time.perf_counter() - started:.0f} s", flush=True)
    print(
        f"\nsmall-cnn on digits, {args.epochs} epochs, means over {args.seeds} seeds "
        f"(clean-label over {args.clean_label_seeds}, {args.targets} targets each)\n"
    )
    report(results)


if __name__ == "__main__":
    main()
