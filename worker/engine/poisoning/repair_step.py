"""Repair of a backdoor attack's largest-rate victim: each repair method on a clean share of the held-out
set, the attack's real trigger measured before and after on the rest, through onnxruntime.

The held-out set is split once: its first half (CLEAN_SHARE) is the defender's clean set the method
trains or prunes on, the second half measures clean accuracy and attack success, so a repair never
sees the samples it is scored on. Each method starts from the victim's exported bytes; the repaired
graph is exported again and measured as the bytes a user would download.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from torch import nn

from app.schemas.repair_methods import RepairMethodSpec
from worker.engine.defense.repair.base import Repair, RepairContext
from worker.engine.defense.repair.registry import build_repair
from worker.engine.models.export import export_onnx
from worker.engine.poisoning.attacks.base import Backdoor
from worker.engine.poisoning.attacks.triggers import Trigger
from worker.engine.poisoning.job import PoisoningJob
from worker.engine.poisoning.metrics import accuracy, backdoor_success
from worker.engine.poisoning.scan.base import ScanData
from worker.engine.poisoning.scan.neural_cleanse import neural_cleanse
from worker.engine.poisoning.victim import Exported
from worker.engine.training.trainable import trainable_from_onnx

# The share of the held-out set (its first samples) given to a repair as the clean set.
CLEAN_SHARE = 0.5


@dataclass
class RepairPlan:
    """One repair method of the job and the Neural Cleanse budget for its reversed triggers."""

    method: Repair
    scan_steps: int


def build_plans(specs: Sequence[RepairMethodSpec]) -> list[RepairPlan]:
    """Repair methods from params.repair entries (the given method parameters, the rest the engine's)."""
    return [RepairPlan(build_repair(spec.method_spec()), spec.scan_steps) for spec in specs]


def split_held_out(job: PoisoningJob) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """(clean set, measurement set): the first CLEAN_SHARE of the held-out set and the rest."""
    x, y = job.evaluation.x, job.evaluation.y
    cut = int(len(y) * CLEAN_SHARE)
    return (x[:cut], y[:cut]), (x[cut:], y[cut:])


def _figures(
    job: PoisoningJob, model: Exported, attack: Backdoor, x: np.ndarray, y: np.ndarray
) -> dict[str, Any]:
    """Clean accuracy and the real trigger's success on the measurement set."""
    measured = backdoor_success(model, attack, x, y, job.num_classes)
    return {
        "clean_accuracy": accuracy(model.predict(x), y),
        "attack_success_rate": measured["attack_success_rate"],
    }


def _reverse(job: PoisoningJob, steps: int, x: np.ndarray, y: np.ndarray) -> Any:
    """Neural Cleanse's reversed triggers of a module on the clean set (for unlearning)."""

    def reverse(module: nn.Module) -> dict[int, Trigger]:
        data = ScanData(x, y, job.num_classes, job.input_range, job.setup.seed, job.setup.progress)
        return dict(neural_cleanse(steps).scan(module, data).triggers)

    return reverse


def repair_victim(
    job: PoisoningJob, attack: Backdoor, victim: Exported, plans: list[RepairPlan]
) -> list[dict[str, Any]]:
    """One report row per method: the victim before and the repaired export after, on the measurement set."""
    (clean_x, clean_y), (eval_x, eval_y) = split_held_out(job)
    clean_x, clean_y = np.asarray(clean_x, dtype=np.float32), np.asarray(clean_y, dtype=np.int64)
    before = _figures(job, victim, attack, eval_x, eval_y)
    setup, rows = job.setup, []
    for plan in plans:
        graph = trainable_from_onnx(victim.onnx, init="pretrained")
        graph.to(setup.device)
        context = RepairContext(
            graph,
            clean_x,
            clean_y,
            job.num_classes,
            job.input_range,
            normalization=setup.normalization,
            reverse=_reverse(job, plan.scan_steps, clean_x, clean_y),
            seed=setup.seed,
            device=setup.device,
            progress=setup.progress,
        )
        result = plan.method.repair(context)
        graph.cpu().eval()
        onnx = export_onnx(graph, input_shape=setup.input_shape, source_onnx=victim.onnx)
        repaired = Exported(onnx=onnx, classify=setup.classifier(onnx))
        rows.append(
            {
                "name": plan.method.name,
                "paper": plan.method.paper,
                "params": plan.method.params(),
                "scan_steps": plan.scan_steps,
                "n_clean": int(len(clean_y)),
                "n_measured": int(len(eval_y)),
                "before": before,
                "after": _figures(job, repaired, attack, eval_x, eval_y),
                "repair": result.summary(),
            }
        )
    return rows
