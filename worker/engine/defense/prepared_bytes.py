"""A prepared defense as bytes: another worker restores it (final and baseline ONNX) without retraining."""

from collections.abc import Callable
from typing import Unpack

import numpy as np
import torch
from torch import nn

from app.schemas.defense import DefenseEvaluation, EvaluatedDefenseSpec, evaluation_attacks
from worker.engine.defense.base import Baseline, DefenseContext, Hardened
from worker.engine.defense.evaluation import module_classifier
from worker.engine.defense.job_checks import default_load
from worker.engine.defense.registry import build_defense
from worker.engine.defense.runner import DefenseInputs, PreparedDefense
from worker.engine.npz_bytes import npz_bytes, read_npz_bytes
from worker.engine.progress import ProgressTracker


def prepared_to_bytes(prepared: PreparedDefense, export: Callable[[nn.Module], bytes] | None = None) -> bytes:
    """The final and baseline ONNX and the hardened metadata, as one .npz (no pickle)."""
    hardened = prepared.hardened
    if hardened.trained and prepared.onnx is None:
        raise ValueError("a trained defense is stored only with its exported ONNX")
    baseline_onnx = b""
    if hardened.baseline is not None:
        if export is None:
            raise ValueError("a trained baseline is stored only through an exporter")
        baseline_onnx = export(hardened.baseline.model)
    meta = {
        "trained": hardened.trained,
        "preprocessing": hardened.preprocessing,
        "training": hardened.training,
        "sections": hardened.sections,
        "checks": hardened.checks,
        "baseline_training": hardened.baseline.training if hardened.baseline is not None else None,
        "export_checks": prepared.export_checks,
    }
    arrays = {
        "onnx": np.frombuffer(prepared.onnx or b"", dtype=np.uint8),
        "baseline": np.frombuffer(baseline_onnx, dtype=np.uint8),
    }
    return npz_bytes(arrays, meta)


def restore_prepared(
    data: bytes,
    spec: EvaluatedDefenseSpec,
    evaluation: DefenseEvaluation,
    **inputs: Unpack[DefenseInputs],
) -> PreparedDefense:
    """The PreparedDefense `prepared_to_bytes` stored, rebuilt through the same loaders as prepare_defense.

    `inputs` as prepare_defense takes them; `export` is unused (the stored bytes hold the exports), and the
    context's tracker counts nothing (a caller evaluating the restored defense sets its own).
    """
    undefended, x, y = inputs["undefended"], inputs["x"], inputs["y"]
    undefended_classify, load_exported = inputs.get("undefended_classify"), inputs.get("load_exported")
    input_range = inputs.get("input_range", (0.0, 1.0))
    device = inputs.get("device") or torch.device("cpu")
    with read_npz_bytes(data) as (stored, meta):
        onnx, baseline_onnx = stored["onnx"].tobytes(), stored["baseline"].tobytes()
    defense = build_defense(spec)
    attacks = evaluation_attacks(spec, evaluation, input_range)
    x, y = x[: evaluation.max_samples], y[: evaluation.max_samples]
    monitor = (x[: evaluation.monitor_samples], y[: evaluation.monitor_samples])
    base = undefended.to(device).eval() if undefended is not None else None
    sample_shape = tuple(int(d) for d in x.shape[1:])
    context = DefenseContext(
        base, inputs.get("trainable"), inputs.get("train"), monitor, input_range, sample_shape,
        inputs["num_classes"], inputs.get("seed", 0), device, ProgressTracker(1.0, inputs.get("progress")),
    )  # fmt: skip
    load = load_exported or default_load
    baseline = None
    if baseline_onnx:
        reference, reference_classify = load(baseline_onnx)
        reference = reference.to(device).eval()
        baseline = Baseline(reference, meta["baseline_training"])
    else:
        if base is None:
            raise ValueError("a stored defense without a baseline needs the uploaded model")
        reference, reference_classify = base, undefended_classify or module_classifier(base, device)
    if onnx:
        final, final_classify = load(onnx)
        final = final.to(device).eval()
    else:
        final, final_classify = reference, reference_classify
    hardened = Hardened(
        final, meta["trained"], meta["preprocessing"], meta["training"], meta["sections"], meta["checks"],
        baseline,
    )  # fmt: skip
    return PreparedDefense(
        spec, defense, context, attacks, evaluation, x, y, hardened, (reference, reference_classify),
        (final, final_classify), onnx or None, meta["export_checks"],
    )  # fmt: skip
