"""A poisoning job: a clean baseline, each attack at each rate, detection, and the report.

The victim is `model_id`'s architecture trained with the job's recipe (`make_model(seed)` gives a fresh
trainable module). The clean baseline trains with the same recipe and seed on the clean set; each
poisoned victim trains the same way on its poisoned set; attacks that craft on a model get a clean
surrogate trained from another seed (the attacker does not hold the victim). Every figure is measured
by worker.engine.poisoning.metrics on the exported victims through onnxruntime.
"""

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from app.schemas.poisoning import PoisoningAttackBase
from app.schemas.repair_methods import RepairMethodSpec
from worker.engine.datasets import ArrayDataset
from worker.engine.poisoning.attack_run import run_attack, run_victims
from worker.engine.poisoning.attacks.base import PoisoningAttack, TargetedPoisoning
from worker.engine.poisoning.attacks.registry import build_attack
from worker.engine.poisoning.checks import add_attack_checks
from worker.engine.poisoning.data import PoisonContext
from worker.engine.poisoning.detect_step import baseline_detection
from worker.engine.poisoning.detection.base import DetectorSpec
from worker.engine.poisoning.detection.registry import build_detector
from worker.engine.poisoning.job import PoisoningJob, RegisteredVictim
from worker.engine.poisoning.metrics import accuracy, per_class_accuracy
from worker.engine.poisoning.repair_step import CLEAN_SHARE, build_plans
from worker.engine.poisoning.validate import PoisoningInputError, check_dataset
from worker.engine.poisoning.victim import VictimSetup
from worker.engine.poisoning.victim_run import VictimKey, VictimRun
from worker.engine.progress import ProgressCallback, ProgressTracker
from worker.engine.training.recipe import TrainingRecipe

SURROGATE_SEED_OFFSET = 7919


@dataclass
class PoisoningOutcome:
    """The report body, artifact arrays (.npz name -> arrays), PNG files and victims to register."""

    report: dict[str, Any]
    arrays: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)
    images: dict[str, bytes] = field(default_factory=dict)
    victims: list[RegisteredVictim] = field(default_factory=list)
    runs: dict[VictimKey, VictimRun] = field(default_factory=dict)


def prepare_attacks(
    specs: Sequence[PoisoningAttackBase],
    train: ArrayDataset,
    *,
    num_classes: int,
    input_range: tuple[float, float],
    pattern: np.ndarray | None,
) -> list[tuple[PoisoningAttack, list[float]]]:
    """Build every attack and check it against the data at every rate before anything trains."""
    built = []
    shape = tuple(int(d) for d in train.x.shape[1:])
    for spec in specs:
        attack = build_attack(spec)
        if attack.needs_images and len(shape) != 3:
            raise PoisoningInputError("attack_invalid", f"{attack.name} needs image inputs [C, H, W]")
        attack.check(shape, num_classes, input_range, pattern)
        for rate in attack.rates:
            attack.count(train.y, rate)
        built.append((attack, attack.rates))
    return built


def _total_units(
    job: PoisoningJob, attacks: list[tuple[PoisoningAttack, list[float]]], surrogate: bool
) -> float:
    """Work units of the whole job: sample-epochs of every training, crafting passes, detection passes."""
    n, epochs = len(job.train.y), job.setup.recipe.epochs
    detectors = len(job.detectors)
    trainings, crafting, detection_runs = 1 + int(surrogate), 0.0, detectors
    for attack, rates in attacks:
        trials = int(attack.spec.targets) if isinstance(attack, TargetedPoisoning) else 1
        for rate in rates:
            count = attack.count(job.train.y, rate)
            trainings += trials * (1 + (detectors if job.retrain_after_removal else 0))
            crafting += trials * (attack.craft_units(count) + (0 if attack.per_target else count))
            detection_runs += trials * detectors
    return trainings * epochs * n + crafting + detection_runs * n


def run_poisoning(
    make_model: Callable[[int], nn.Module],
    train: ArrayDataset,
    evaluation: ArrayDataset,
    attacks: Sequence[PoisoningAttackBase],
    *,
    recipe: TrainingRecipe,
    input_shape: Sequence[int],
    num_classes: int,
    input_range: tuple[float, float] = (0.0, 1.0),
    detection: Sequence[DetectorSpec] = (),
    retrain_after_removal: bool = False,
    repair: Sequence[RepairMethodSpec] = (),
    normalization: dict[str, list[float]] | None = None,
    pattern: np.ndarray | None = None,
    seed: int = 0,
    device: torch.device | None = None,
    progress: ProgressCallback | None = None,
    register: bool = True,
    only: set[VictimKey] | None = None,
    done: dict[VictimKey, VictimRun] | None = None,
) -> PoisoningOutcome:
    """Train the clean baseline, run every attack at every rate and every detector; build the report.

    Raises PoisoningInputError (a ValueError with a `code`) or ValueError for input the job cannot use,
    before any training. With `register`, each attack's victim at its largest rate (the first target's
    for per-target attacks) is exported through verified_export and returned in `victims`.

    A split job runs in pieces: with `only`, just those victims (attack, rate, trial) run, after the
    clean baseline they are measured against, and come back in `runs` with no report; with `done`, the
    victims the pieces ran are taken as they are and the report is built as if they had run here.
    """
    shape = tuple(int(d) for d in input_shape)
    low, high = float(input_range[0]), float(input_range[1])
    for data, what in ((train, "training set"), (evaluation, "held-out set")):
        check_dataset(
            data.x, data.y, input_shape=shape, num_classes=num_classes, input_range=(low, high), what=what
        )
    if not attacks:
        raise PoisoningInputError("attack_invalid", "give at least one attack (or run an audit)")
    built = prepare_attacks(attacks, train, num_classes=num_classes, input_range=(low, high), pattern=pattern)
    detectors = [build_detector(spec) for spec in detection]
    plans = build_plans(repair)
    if plans and not any(attack.backdoor for attack, _ in built):
        raise PoisoningInputError("attack_invalid", "repair needs a backdoor attack (one with a trigger)")
    device = device or torch.device("cpu")
    setup = VictimSetup(make_model, recipe, seed, shape, num_classes, (low, high), normalization, device)
    job = PoisoningJob(setup, train, evaluation, detectors, retrain_after_removal, register, repairs=plans)
    needs_surrogate = any(attack.needs_surrogate for attack, _ in built)
    tracker = ProgressTracker(_total_units(job, built, needs_surrogate), progress)
    setup.progress = tracker

    job.baseline = setup.train_and_export(train.x, train.y, stage="clean baseline")
    predictions = job.baseline.predict(evaluation.x)
    job.baseline_accuracy = accuracy(predictions, evaluation.y)
    baseline: dict[str, Any] = {}
    detection_rows: list[dict[str, Any]] = []
    if only is None:
        baseline = {
            "clean_accuracy": job.baseline_accuracy,
            "per_class_accuracy": per_class_accuracy(predictions, evaluation.y, num_classes),
            "training_curve": job.baseline.history.curve() if job.baseline.history else [],
        }
        detection_rows = baseline_detection(job) if detectors else []
    mine = [a for i, (a, _) in enumerate(built) if only is None or any(key[0] == i for key in only)]
    crafted_here = done is None or only is not None
    surrogate = None
    if any(a.needs_surrogate and (crafted_here or a.per_target) for a in mine):
        module, _ = setup.train(train.x, train.y, stage="clean surrogate", seed=seed + SURROGATE_SEED_OFFSET)
        surrogate = setup.wrap(module).to(device).eval()
    ctx = PoisonContext(
        x=train.x,
        y=train.y,
        num_classes=num_classes,
        input_range=(low, high),
        seed=seed,
        device=device,
        surrogate=surrogate,
        pattern=pattern,
        progress=tracker,
    )
    if only is not None:
        runs: dict[VictimKey, VictimRun] = {}
        for index, (attack, _) in enumerate(built):
            if attack in mine:
                runs |= run_victims(job, ctx, index, attack, only)
        return PoisoningOutcome(report={}, runs=runs)
    entries = [run_attack(job, ctx, index, attack, done) for index, (attack, _) in enumerate(built)]
    add_attack_checks(job, entries)
    report = {
        "mode": "attack",
        "n_train": int(len(train.y)),
        "n_eval": int(len(evaluation.y)),
        "num_classes": num_classes,
        "input_shape": list(shape),
        "input_range": [low, high],
        "training": {field_name: getattr(recipe, field_name) for field_name in recipe.__dataclass_fields__},
        "surrogate_seed": seed + SURROGATE_SEED_OFFSET if needs_surrogate else None,
        "baseline": baseline,
        "detectors": detection_rows,
        "retrain_after_removal": retrain_after_removal,
        "attacks": entries,
        "checks": job.checks,
    }
    if plans:
        report["repair_clean_share"] = CLEAN_SHARE
    return PoisoningOutcome(report=report, arrays=job.arrays, images=job.images, victims=job.victims)
