"""Helpers shared by the defense engine tests: trainable copies, a recording exporter, small runs."""

from typing import Any

import numpy as np
import torch
from pydantic import TypeAdapter
from torch import nn

from app.schemas.defense import DefenseEvaluation, DefenseSpec, EvaluatedDefenseSpec
from tests.engine.onnx_fixtures import export_onnx
from worker.engine.datasets import load_builtin
from worker.engine.defense.runner import DefenseOutcome, run_defense
from worker.engine.models.catalog import build_architecture

TRAIN_SAMPLES = 1500
EVAL_SAMPLES = 120


_DEFENSE: TypeAdapter[Any] = TypeAdapter(DefenseSpec)


def typed(defense: dict[str, Any]) -> EvaluatedDefenseSpec:
    """A defense spec entry validated into its typed spec, as the worker reads it."""
    return _DEFENSE.validate_python(defense)  # type: ignore[no-any-return]


def evaluation_of(block: dict[str, Any] | None) -> DefenseEvaluation:
    """An evaluation block validated into its typed spec."""
    return DefenseEvaluation.model_validate(block or {})


def trainable_factory(base: nn.Module, architecture: str = "small-cnn"):
    """init -> a fresh module of the architecture: base's weights ("pretrained") or seeded random ones."""

    def trainable(init: str) -> nn.Module:
        torch.manual_seed(1)
        model = build_architecture(architecture, (1, 8, 8), 10)
        if init == "pretrained":
            model.load_state_dict(base.state_dict())
        return model

    return trainable


class RecordingExport:
    """An exporter (torch.onnx, dynamic batch) that keeps the trained module and the bytes it produced."""

    def __init__(self) -> None:
        self.module: nn.Module | None = None
        self.onnx: bytes | None = None

    def __call__(self, module: nn.Module) -> bytes:
        self.module = module
        self.onnx = export_onnx(module, (1, 8, 8))
        return self.onnx


def digits_split() -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """A training subset and the held-out evaluation subset."""
    train, test = load_builtin("digits-train"), load_builtin("digits-test")
    return (train.x[:TRAIN_SAMPLES], train.y[:TRAIN_SAMPLES]), (test.x[:EVAL_SAMPLES], test.y[:EVAL_SAMPLES])


def pgd(eps: list[float], norm: str = "linf", steps: int = 20) -> dict[str, Any]:
    """An evaluation block with one PGD attack and no sanity runs (fast)."""
    return {"attacks": [{"name": "pgd", "norm": norm, "eps": eps, "steps": steps}], "sanity_runs": False}


def run(
    defense: dict[str, Any], evaluation: dict[str, Any], base: nn.Module, **kwargs: Any
) -> DefenseOutcome:
    """run_defense on the digits subsets with base as the uploaded model."""
    train, (x, y) = digits_split()
    return run_defense(
        typed(defense),
        evaluation_of(evaluation),
        undefended=base,
        x=x,
        y=y,
        num_classes=10,
        trainable=trainable_factory(base),
        train=train,
        **kwargs,
    )


def worst(report: dict[str, Any], role: str, eps: float) -> float:
    """The defended model's worst case of a role (naive, adaptive, all) at eps."""
    rows = report["evaluation"]["defended"]["worst_case"][role]
    return next(row["robust_accuracy"] for row in rows if abs(row["eps"] - eps) < 1e-9)


def check(report: dict[str, Any], name: str) -> dict[str, Any]:
    """The report's check of that name."""
    return next(c for c in report["checks"] if c["name"] == name)
