"""The model under test as every kind sees it: one interface, one small class per source (DESIGN 5)."""

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from torch import nn

from worker.engine.models.black_box import QueryOnlyModel
from worker.engine.models.normalization import Normalized, normalized_classifier
from worker.services.job_state import JobFailure

Classifier = Callable[[np.ndarray], np.ndarray]
Normalization = dict[str, list[float]]


@dataclass(frozen=True)
class Signature:
    """What a caller must know to feed the model: input shape, classes, range, declared normalization."""

    input_shape: tuple[int, ...]
    num_classes: int
    input_range: tuple[float, float]
    normalization: Normalization | None = None


class Target(ABC):
    """The model under test: its signature and the forms it can take (differentiable, NumPy, trainable).

    A form a source cannot give raises `JobFailure` with a stable code (`needs_white_box`,
    `model_not_trainable`); `classifier()` returns None where there is no prediction interface.
    """

    #: Whether a differentiable module of the model exists (gradients through it are the real ones).
    white_box: bool = False
    #: Whether the model carries trained weights (a catalog architecture registered without any does not).
    has_weights: bool = True

    def __init__(self, *, id: str, name: str, signature: Signature) -> None:  # noqa: A002
        self.id, self.name, self.signature = id, name, signature

    @property
    def preprocessing(self) -> list[dict[str, Any]] | None:
        """The deployed input transforms of a defended model; None for a plain one."""
        return None

    def graph_module(self) -> nn.Module:
        """The model's own differentiable graph (eval mode), without declared normalization."""
        raise JobFailure("needs_white_box", f"model {self.id} can only be queried black-box")

    def module(self) -> nn.Module:
        """A differentiable module on inputs in the input range (normalization and preprocessing included)."""
        return self.normalized(self.graph_module())

    def differentiable(self) -> nn.Module | None:
        """`module()` where the model has a local differentiable graph, else None."""
        return self.module() if self.white_box else None

    def raw_classifier(self) -> Classifier | None:
        """The model's own prediction interface (NumPy, before declared normalization), if it has one."""
        return None

    def classifier(self) -> Classifier | None:
        """The model as a NumPy function of inputs in the input range, or None without an interface."""
        raw = self.raw_classifier()
        return None if raw is None else self.normalizing(raw)

    def black_box_model(self) -> QueryOnlyModel | None:
        """The model as black-box attacks see it (no gradient path); None without a prediction interface."""
        classify = self.classifier()
        return None if classify is None else QueryOnlyModel(classify)

    def onnx_bytes(self) -> bytes | None:
        """The uploaded ONNX graph, for sources that have one."""
        return None

    @abstractmethod
    def trainable(self, init: str, seed: int) -> nn.Module:
        """A trainable module of this model's architecture: its own weights ("pretrained") or fresh ones."""

    def close(self) -> None:  # noqa: B027 (a no-op for local models, overridden by remote ones)
        """Release what the target opened (connection pools); a no-op for local models."""

    def normalized(self, module: nn.Module) -> nn.Module:
        """A raw graph behind the declared normalization, so it takes inputs in the input range."""
        norm = self.signature.normalization
        if not norm:
            return module
        return Normalized(module, norm["mean"], norm["std"], len(self.signature.input_shape)).eval()

    def normalizing(self, classify: Classifier) -> Classifier:
        """A raw NumPy classifier behind the declared normalization."""
        norm = self.signature.normalization
        if not norm:
            return classify
        return normalized_classifier(classify, norm["mean"], norm["std"], len(self.signature.input_shape))
