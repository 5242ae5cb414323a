"""One trained victim of a poisoning job: an attack at one rate (and one target for per-target attacks).

A victim is the unit a split job runs on its own: poison (the random stream keyed by attack, rate and
trial, never by run order), train, measure, detect (with retraining after removal), repair, and what the
report keeps of it. `VictimRun` travels between workers as an .npz with a JSON header (no pickles).
"""

import time
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from worker.engine.models.intake.errors import IntakeReport
from worker.engine.npz_bytes import npz_bytes, read_npz_bytes
from worker.engine.poisoning.attacks.base import Backdoor, PoisoningAttack, TargetedPoisoning
from worker.engine.poisoning.data import PoisonContext, PoisonedSet, TargetSample
from worker.engine.poisoning.detect_step import run_detectors
from worker.engine.poisoning.job import PoisoningJob, RegisteredVictim
from worker.engine.poisoning.metrics import accuracy, success, threat_model_facts
from worker.engine.poisoning.repair_step import repair_victim

VictimKey = tuple[int, int, int]  # attack index, rate index, trial


def stream_key(attack_index: int, rate_index: int, trial: int = 0) -> int:
    """A distinct random-stream key per attack, rate and trial."""
    return (attack_index * 64 + rate_index) * 4096 + trial


@dataclass
class VictimRun:
    """What the report keeps of one victim: its row, the seconds it took, suspect arrays, the poisoned set
    the artifacts keep (largest rate, first trial), the victim to register and its repair rows."""

    row: dict[str, Any]
    seconds: float = 0.0
    suspects: dict[str, np.ndarray] = field(default_factory=dict)
    poisoned: PoisonedSet | None = None
    registered: RegisteredVictim | None = None
    repair: list[dict[str, Any]] | None = None


def run_victim(
    job: PoisoningJob,
    ctx: PoisonContext,
    key: VictimKey,
    attack: PoisoningAttack,
    target: TargetSample | None,
    n_targets: int,
) -> VictimRun:
    """Poison, train, measure and detect one victim; register and repair it when it is the kept one."""
    started = time.perf_counter()
    index, rate_index, trial = key
    rates = attack.rates
    rate, last = rates[rate_index], rate_index == len(rates) - 1
    stage = f"{attack.name} rate {rate:g}" + (f" target {trial + 1}/{n_targets}" if target else "")
    stream = stream_key(index, rate_index, trial)
    if isinstance(attack, TargetedPoisoning):
        assert target is not None
        poisoned = attack.poison_target(ctx, rate, target, stream)
    else:
        poisoned = attack.poison(ctx, rate, stream)
    kept = last and trial == 0
    register = job.register and kept
    victim = job.setup.train_and_export(poisoned.x, poisoned.y, stage=stage, verified=register)
    evaluation = job.evaluation
    row: dict[str, Any] = {"clean_accuracy": accuracy(victim.predict(evaluation.x), evaluation.y)}
    row |= success(
        victim, attack, evaluation.x, evaluation.y, job.num_classes, job.baseline_accuracy, poisoned.target
    )
    detections, arrays = run_detectors(job, victim, poisoned, attack, stage) if job.detectors else ([], {})
    row["detection"] = detections
    row["facts"] = threat_model_facts(job.train.x, job.train.y, poisoned, job.input_range)
    row["n_poisoned"] = poisoned.n_poisoned
    row["expected_poisons"] = attack.count(job.train.y, rate)
    suffix = f"_rate{rate_index}" + (f"_target{trial}" if target else "")
    run = VictimRun(row, suspects={f"{name}{suffix}": values for name, values in arrays.items()})
    if kept:
        run.poisoned = poisoned
    if register and victim.intake is not None:
        run.registered = RegisteredVictim(index, attack.name, rate, victim.onnx, victim.intake)
    if kept and job.repairs and isinstance(attack, Backdoor):
        run.repair = repair_victim(job, attack, victim, job.repairs)
    run.seconds = time.perf_counter() - started
    return run


def runs_to_bytes(runs: dict[VictimKey, VictimRun]) -> bytes:
    """An .npz (no pickles) of victim runs: their arrays plus a JSON header."""
    arrays: dict[str, np.ndarray] = {}
    header = []
    for number, (key, run) in enumerate(runs.items()):
        prefix = f"v{number}_"
        arrays |= {f"{prefix}s_{name}": values for name, values in run.suspects.items()}
        meta: dict[str, Any] = {
            "key": list(key),
            "row": run.row,
            "repair": run.repair,
            "seconds": run.seconds,
        }
        meta["suspects"] = sorted(run.suspects)
        if run.poisoned is not None:
            p = run.poisoned
            arrays |= {prefix + "px": p.x, prefix + "py": p.y, prefix + "pi": p.indices}
        if run.registered is not None:
            arrays[prefix + "onnx"] = np.frombuffer(run.registered.onnx, dtype=np.uint8)
            meta["registered"] = {"attack": run.registered.attack, "rate": run.registered.rate}
            meta["intake"] = asdict(run.registered.intake)
        header.append(meta)
    return npz_bytes(arrays, header)


def runs_from_bytes(data: bytes) -> dict[VictimKey, VictimRun]:
    """The victim runs that runs_to_bytes stored."""
    runs: dict[VictimKey, VictimRun] = {}
    with read_npz_bytes(data) as (npz, header):
        for number, meta in enumerate(header):
            prefix = f"v{number}_"
            key: VictimKey = (int(meta["key"][0]), int(meta["key"][1]), int(meta["key"][2]))
            suspects = {name: npz[f"{prefix}s_{name}"] for name in meta["suspects"]}
            run = VictimRun(meta["row"], float(meta["seconds"]), suspects)
            run.repair = meta["repair"]
            if prefix + "px" in npz:
                run.poisoned = PoisonedSet(
                    x=npz[prefix + "px"], y=npz[prefix + "py"], indices=npz[prefix + "pi"]
                )
            if "registered" in meta:
                registered = meta["registered"]
                intake = IntakeReport(**meta["intake"])
                onnx = npz[prefix + "onnx"].tobytes()
                run.registered = RegisteredVictim(
                    key[0], registered["attack"], registered["rate"], onnx, intake
                )
            runs[key] = run
    return runs
