"""One attack of a job at each of its rates: its victims (run here or by shards), rows, artifacts."""

import base64
from typing import Any

import numpy as np

from worker.engine.poisoning.attacks.base import PoisoningAttack, TargetedPoisoning
from worker.engine.poisoning.data import PoisonContext, PoisonedSet, TargetSample
from worker.engine.poisoning.job import PoisoningJob
from worker.engine.poisoning.metrics import success
from worker.engine.poisoning.samples import sample_pictures, trigger_png
from worker.engine.poisoning.targets import select_targets
from worker.engine.poisoning.victim_run import VictimKey, VictimRun, run_victim, stream_key


def _baseline_success(
    job: PoisoningJob, attack: PoisoningAttack, target: TargetSample | None
) -> float | None:
    """The attack's success measured on the clean baseline (what the trigger or target does unpoisoned)."""
    evaluation = job.evaluation
    measured = success(
        job.need_baseline(),
        attack,
        evaluation.x,
        evaluation.y,
        job.num_classes,
        job.baseline_accuracy,
        target,
    )
    return measured.get("attack_success_rate")


def _mean_detection(trials: list[list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """Per detector, the mean of precision, recall, F1 and after-removal figures over per-target trials."""
    rows = []
    for entries in zip(*trials, strict=True):
        row = {"name": entries[0]["name"], "trials": len(entries)}
        for key in ("precision", "recall", "f1", "n_suspected"):
            row[key] = float(np.mean([entry[key] for entry in entries]))
        removal = [entry["after_removal"] for entry in entries if "after_removal" in entry]
        if removal:
            row["after_removal"] = {
                key: float(np.mean([r[key] for r in removal]))
                for key in ("n_removed", "poisons_left", "clean_accuracy", "attack_success_rate")
            }
        rows.append(row)
    return rows


def attack_targets(
    job: PoisoningJob, ctx: PoisonContext, index: int, attack: PoisoningAttack
) -> list[TargetSample | None]:
    """The held-out targets of a per-target attack (chosen by the clean models), else one None."""
    if not isinstance(attack, TargetedPoisoning):
        return [None]
    return list(
        select_targets(
            attack,
            job.need_baseline(),
            ctx.need_surrogate(),
            job.evaluation.x,
            job.evaluation.y,
            ctx.rng(stream_key(index, 63)),
            ctx.device,
        )
    )


def run_victims(
    job: PoisoningJob, ctx: PoisonContext, index: int, attack: PoisoningAttack, keys: set[VictimKey]
) -> dict[VictimKey, VictimRun]:
    """The victims of one attack named in `keys` (a shard's share), in the attack's order."""
    targets = attack_targets(job, ctx, index, attack)
    return {
        (index, rate_index, trial): run_victim(
            job, ctx, (index, rate_index, trial), attack, target, len(targets)
        )
        for rate_index in range(len(attack.rates))
        for trial, target in enumerate(targets)
        if (index, rate_index, trial) in keys
    }


def run_attack(
    job: PoisoningJob,
    ctx: PoisonContext,
    index: int,
    attack: PoisoningAttack,
    done: dict[VictimKey, VictimRun] | None = None,
) -> dict[str, Any]:
    """The report entry of one attack: parameters, threat model and one result row per rate; victims in
    `done` (run by the shards of a split job) are taken as they are, the others run here."""
    rates = attack.rates
    entry: dict[str, Any] = {
        "name": attack.name,
        "paper": attack.paper,
        "threat_model": attack.threat_model,
        "params": attack.params(),
        "clean_label": attack.clean_label,
        "backdoor": attack.backdoor,
        "per_target": attack.per_target,
        "rate_of": attack.rate_of,
        "results": [],
    }
    targets = attack_targets(job, ctx, index, attack)
    if isinstance(attack, TargetedPoisoning):
        entry["targets"] = [
            {"index": t.index, "label": t.label, "intended": t.intended} for t in targets if t
        ]
    suspects: dict[str, np.ndarray] = {}
    kept: PoisonedSet | None = None
    for rate_index, rate in enumerate(rates):
        seconds = 0.0
        rows = []
        for trial, target in enumerate(targets):
            key = (index, rate_index, trial)
            run = (done or {}).get(key) or run_victim(job, ctx, key, attack, target, len(targets))
            suspects |= run.suspects
            if run.registered is not None:
                job.victims.append(run.registered)
            if run.repair is not None:
                entry["repair"] = run.repair
            if run.poisoned is not None:
                kept = run.poisoned
            rows.append(run.row)
            seconds += run.seconds
        entry["results"].append(_rate_row(job, attack, rate, rows, targets, seconds))
    assert kept is not None, "the first victim at the largest rate keeps its poisoned set"
    _keep_artifacts(job, entry, index, attack, kept, rates[-1])
    if suspects:
        job.arrays[f"suspected_{index}_{attack.name}"] = suspects
    return entry


def _rate_row(
    job: PoisoningJob,
    attack: PoisoningAttack,
    rate: float,
    rows: list[dict[str, Any]],
    targets: list[TargetSample | None],
    seconds: float,
) -> dict[str, Any]:
    """One result row per rate; per-target attacks average over their trials and list each target."""
    first = rows[0]
    out: dict[str, Any] = {
        "rate": rate,
        "n_poisoned": first["n_poisoned"],
        "expected_poisons": first["expected_poisons"],
        "clean_accuracy": float(np.mean([row["clean_accuracy"] for row in rows])),
        "baseline_clean_accuracy": job.baseline_accuracy,
        "attack_success_rate": float(np.mean([row["attack_success_rate"] for row in rows]))
        if all(row.get("attack_success_rate") is not None for row in rows)
        else None,
        "max_perturbation": max(row["facts"]["max_perturbation"] for row in rows),
        "labels_changed": max(row["facts"]["labels_changed"] for row in rows),
        "changed_outside_declared": max(row["facts"]["outside_declared"] for row in rows),
        "in_range": all(row["facts"]["in_range"] for row in rows),
        "seconds": seconds,
    }
    out["clean_accuracy_drop"] = job.baseline_accuracy - out["clean_accuracy"]
    for key in ("accuracy_drop", "source_to_target_rate", "source_class_accuracy", "n_triggered"):
        if key in first:
            out[key] = first[key]
    if attack.per_target:
        out["trials"] = [
            {
                "target": t.index,
                "intended": t.intended,
                "predicted": row["predicted"],
                "success": bool(row["attack_success_rate"]),
                "clean_accuracy": row["clean_accuracy"],
                "baseline_predicted": int(job.need_baseline().predict(t.x[None])[0]),
            }
            for t, row in zip(targets, rows, strict=True)
            if t is not None
        ]
        out["detection"] = _mean_detection([row["detection"] for row in rows]) if rows[0]["detection"] else []
    else:
        out["detection"] = first["detection"]
        out["baseline_attack_success_rate"] = _baseline_success(job, attack, None)
    return out


def _keep_artifacts(
    job: PoisoningJob,
    entry: dict[str, Any],
    index: int,
    attack: PoisoningAttack,
    poisoned: PoisonedSet,
    rate: float,
) -> None:
    """The poisoned training set at the largest rate, the trigger, and pictures for the report."""
    name = f"poisoned_{index}_{attack.name}"
    job.arrays[name] = {
        "x": poisoned.x.astype(np.float32),
        "y": poisoned.y.astype(np.int64),
        "poison_indices": poisoned.indices.astype(np.int64),
        "original_y": job.train.y.astype(np.int64),
        "rate": np.asarray(rate, dtype=np.float64),
    }
    entry["poisoned_set_artifact"] = f"{name}.npz"
    png = trigger_png(attack, tuple(job.train.x.shape[1:]), job.input_range)
    if png is not None:
        file = f"trigger_{index}_{attack.name}.png"
        job.images[file] = png
        entry["trigger_png"] = base64.b64encode(png).decode("ascii")
        entry["trigger_artifact"] = file
    entry["samples"] = sample_pictures(job.train.x, job.train.y, poisoned, job.input_range)
