"""Benchmark the model-level backdoor scan (Neural Cleanse) and the repairs on digits.

Usage: python benchmarks/bench_backdoor.py [--models 10 --epochs 8 --steps 600 --repairs 2 --cache DIR
       --groups badnets,blended,clean]

Per group, --models victims alternate small-cnn and bn-cnn (catalog) and seeds, trained on digits-train
with the shared fit loop for --epochs:
  badnets  all-to-one BadNets at 5-10%: white patches of 2 or 3 pixels at the four corners, target class
           cycling over 0..9;
  blended  all-to-one blended injection, alpha 0.2, seeded noise, at 10%;
  clean    no poison.
Scan: Neural Cleanse (--steps, the paper's schedule and threshold 2) on 150 clean held-out digits;
a poisoned model counts as detected when its target class is flagged (and no other), a clean one when
nothing is flagged. Repair: on the first --repairs BadNets victims, each method from a clean set of
10% of the training data (150 samples); attack success of the real trigger and clean accuracy on
digits-test, measured with onnxruntime on the exported model.
Scan times are wall and process CPU time per model (1 thread; the machine is shared, so wall time varies).
ART 1.20.1's NeuralCleanse (art.defences.transformer.poisoning) refuses any classifier but a
KerasClassifier, and its only estimator (KerasNeuralCleanse) builds the search in keras/TensorFlow, which
this environment does not install; no PyTorch or ONNX model can run through it, so no time ratio is
measured here (see the README).
"""

import argparse
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from app.schemas.repair_methods import METHOD_SPECS
from worker.engine.datasets import load_builtin
from worker.engine.defense.repair.base import RepairContext
from worker.engine.defense.repair.registry import build_repair
from worker.engine.defense.repair.runner import RealTrigger, run_repair
from worker.engine.models.export import verified_export
from worker.engine.models.intake import OnnxRuntimeClassifier, load_onnx_module
from worker.engine.poisoning.attacks.triggers import PatchTrigger, Trigger, blend_trigger, noise_pattern
from worker.engine.poisoning.scan.base import ScanData
from worker.engine.poisoning.scan.neural_cleanse import neural_cleanse
from worker.engine.poisoning.victim import VictimSetup
from worker.engine.training.recipe import TrainingRecipe
from worker.engine.training.trainable import build_trainable

SHAPE, RANGE = (1, 8, 8), (0.0, 1.0)
CORNERS = ("bottom_right", "top_left", "top_right", "bottom_left")


def victim(architecture: str, seed: int, epochs: int) -> VictimSetup:
    """A digits victim of a catalog architecture."""

    def make(s: int) -> torch.nn.Module:
        return build_trainable(
            architecture=architecture,
            onnx_bytes=None,
            safetensors_bytes=None,
            input_shape=SHAPE,
            num_classes=10,
            init="random",
            seed=s,
        )

    return VictimSetup(make, TrainingRecipe(epochs=epochs), seed, SHAPE, 10, RANGE)


def poison(
    x: np.ndarray, y: np.ndarray, trigger: Trigger, target: int, rate: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Stamp the trigger on `rate` of the non-target samples and relabel them to target."""
    rng = np.random.default_rng(seed)
    picks = rng.choice(np.flatnonzero(y != target), int(rate * len(y)), replace=False)
    x, y = x.copy(), y.copy()
    x[picks] = trigger.apply(x[picks])
    y[picks] = target
    return x, y


def models(group: str, n: int, epochs: int, cache: Path | None = None) -> list[dict[str, Any]]:
    """The group's trained victims with their trigger and target (ONNX kept under `cache` when given)."""
    train = load_builtin("digits-train")
    out = []
    for i in range(n):
        architecture = ("small-cnn", "bn-cnn")[i % 2]
        target, trigger, rate = (3 * i + 1) % 10, None, 0.0
        if group == "badnets":
            trigger = PatchTrigger(size=2 + i % 2, location=CORNERS[i % 4]).build(SHAPE, RANGE)
            rate = (0.05, 0.1)[i % 2]
        elif group == "blended":
            trigger, rate = blend_trigger(noise_pattern(SHAPE, RANGE, i), 0.2), 0.1
        stored = None if cache is None else cache / f"{group}_{i}_{epochs}.onnx"
        if stored is not None and stored.exists():
            onnx_bytes = stored.read_bytes()
        else:
            x, y = (
                (train.x, train.y) if trigger is None else poison(train.x, train.y, trigger, target, rate, i)
            )
            onnx_bytes = victim(architecture, 100 + i, epochs).train_and_export(x, y, stage="bench").onnx
            if stored is not None:
                stored.parent.mkdir(parents=True, exist_ok=True)
                stored.write_bytes(onnx_bytes)
        out.append({"architecture": architecture, "onnx": onnx_bytes, "trigger": trigger, "target": target})
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--models", type=int, default=10)
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--repairs", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--cache", type=Path, default=None, help="keep the trained victims' ONNX here")
    parser.add_argument(
        "--groups", default="badnets,blended,clean", help="scan groups to run (comma-separated; empty: none)"
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"load average at start {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs", flush=True)
    train, test = load_builtin("digits-train"), load_builtin("digits-test")
    clean_picks = np.random.default_rng(0).choice(len(train.x), 150, replace=False)
    scanner = neural_cleanse(args.steps)
    data = ScanData(test.x[:150], test.y[:150], 10, RANGE)
    badnets = []
    groups = [g for g in args.groups.split(",") if g]
    for group in groups:
        hits, seconds, cpu = 0, [], []
        for m in models(group, args.models, args.epochs, args.cache):
            start, start_cpu = time.perf_counter(), time.process_time()
            result = scanner.scan(load_onnx_module(m["onnx"]), data)
            seconds.append(time.perf_counter() - start)
            cpu.append(time.process_time() - start_cpu)
            ok = result.flagged == ([] if m["trigger"] is None else [m["target"]])
            hits += ok
            below = min(result.classes, key=lambda c: c.norm)
            target = f"target {m['target']} index {result.classes[m['target']].anomaly_index:.2f}, "
            print(
                f"  {group} {m['architecture']} {target if m['trigger'] is not None else ''}flagged "
                f"{result.flagged}, smallest mask class {below.label} index {below.anomaly_index:.2f} "
                f"{'ok' if ok else 'MISS'}",
                flush=True,
            )
            if group == "badnets":
                badnets.append(m)
        print(
            f"{group}: {hits}/{args.models} right, scan {np.mean(seconds):.1f} s wall, "
            f"{np.mean(cpu):.1f} s CPU per model",
            flush=True,
        )
    if args.repairs and "badnets" not in groups:
        badnets = models("badnets", args.repairs, args.epochs, args.cache)
    for m in badnets[: args.repairs]:
        real = RealTrigger(m["trigger"], m["target"])
        for name in METHOD_SPECS:
            context = RepairContext(
                trainable_from(m["onnx"]), train.x[clean_picks], train.y[clean_picks], 10, RANGE
            )
            start = time.perf_counter()
            outcome = run_repair(
                build_repair(name),
                context,
                held_out=(test.x, test.y),
                original=OnnxRuntimeClassifier(m["onnx"]),
                export=lambda g: verified_export(g, input_shape=SHAPE, num_classes=10, input_range=RANGE)[0],
                load=lambda b: (load_onnx_module(b), OnnxRuntimeClassifier(b)),
                scanner=scanner,
                real=real,
            )
            r = outcome.report
            before, after = r["before"], r["after"]
            print(
                f"repair {name} on {m['architecture']} target {m['target']}: success "
                f"{before['real_trigger_success']:.3f} -> {after['real_trigger_success']:.3f}, clean "
                f"{before['clean_accuracy']:.3f} -> {after['clean_accuracy']:.3f}, flagged after "
                f"{r['scan_after']['flagged']}, {time.perf_counter() - start:.0f} s",
                flush=True,
            )
    print(f"load average at the end {os.getloadavg()[0]:.1f}", flush=True)


def trainable_from(onnx_bytes: bytes) -> Any:
    """The uploaded graph as a trainable module with its own weights."""
    from worker.engine.training.trainable import trainable_from_onnx

    return trainable_from_onnx(onnx_bytes, init="pretrained")


if __name__ == "__main__":
    main()
