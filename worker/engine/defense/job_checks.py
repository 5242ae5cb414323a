"""The checks of a defense job: attacks and data that fit the model, and exports that agree."""

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import nn

from app.schemas.evasion import AttackParamsBase
from worker.engine.defense.evaluation import Classify, module_classifier, predict_labels
from worker.engine.defense.spec import SpecError
from worker.engine.evasion.attacks.registry import build_attack
from worker.engine.models.intake import OnnxRuntimeClassifier, load_onnx_module


def check_attacks(attacks: list[AttackParamsBase], input_range: tuple[float, float]) -> None:
    """Every attack must fit the input range."""
    for spec in attacks:
        try:
            build_attack(spec, input_range)
        except ValueError as exc:
            raise SpecError(f"evaluation: {exc}") from exc


def check_data(
    x: np.ndarray, y: np.ndarray, sample_shape: tuple[int, ...], num_classes: int, label: str
) -> None:
    """A dataset must fit the model: sample shape and labels."""
    if tuple(x.shape[1:]) != tuple(sample_shape):
        raise SpecError(
            f"the {label} has samples of shape {list(x.shape[1:])}; the model takes {list(sample_shape)}"
        )
    if len(y) != len(x) or len(y) == 0 or int(y.min()) < 0 or int(y.max()) >= num_classes:
        raise SpecError(f"the {label} needs labels in [0, {num_classes}) for every sample")


def default_load(onnx: bytes) -> tuple[nn.Module, Classify]:
    """The exported graph as a white-box module and through onnxruntime."""
    return load_onnx_module(onnx), OnnxRuntimeClassifier(onnx)


def deployed_baseline(
    baseline: nn.Module,
    export: Callable[[nn.Module], bytes] | None,
    load: Callable[[bytes], tuple[nn.Module, Classify]],
    x: np.ndarray,
    device: torch.device,
) -> tuple[nn.Module, Classify, dict[str, Any] | None]:
    """The trained baseline as the evaluation attacks and measures it: exported and loaded back like the
    hardened model (without an exporter, the module itself), and the check that the export agrees."""
    if export is None:
        return baseline, module_classifier(baseline, device), None
    module, classify = load(export(baseline))
    check = export_check(baseline, classify, x, device, name="exported_baseline_matches_trained")
    return module.to(device).eval(), classify, check


def export_check(
    trained: nn.Module,
    exported: Classify,
    x: np.ndarray,
    device: torch.device,
    name: str = "exported_model_matches_trained",
) -> dict[str, Any]:
    """The exported ONNX (onnxruntime) must predict what the trained module predicts."""
    expected = predict_labels(module_classifier(trained, device), x)
    got = predict_labels(exported, x)
    logits_trained = module_classifier(trained, device)(x[:256])
    diff = float(np.abs(np.asarray(exported(x[:256])) - logits_trained).max())
    agree = int((expected == got).sum())
    return {
        "name": name,
        "passed": agree == len(x),
        "detail": f"onnxruntime on the exported ONNX agrees with the trained module on {agree} of {len(x)} "
        f"evaluation samples (max logit difference {diff:.3g})",
    }
