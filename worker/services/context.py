"""What an executor gets: the job and its inputs, loaded, with no database session held open."""

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from app.settings import Settings
from worker.engine.datasets import ArrayDataset
from worker.engine.models.black_box import QueryOnlyModel
from worker.engine.models.intake import (
    ModelRejected,
    OnnxRuntimeClassifier,
    load_onnx_module,
    load_safetensors_module,
)
from worker.engine.models.intake.limits import DEFAULT_LIMITS, IntakeLimits
from worker.engine.models.normalization import Normalized, normalized_classifier
from worker.engine.progress import ProgressCallback
from worker.remote_model import RemoteClassifier, RemoteModelError
from worker.services.job_state import JobFailure

Classifier = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class ModelSnapshot:
    """A model row and its bytes, copied out of the database so no session stays open while it runs."""

    id: str
    tenant_id: str
    name: str
    format: str
    input_shape: tuple[int, ...]
    num_classes: int
    input_range: tuple[float, float]
    white_box: bool
    blob: bytes | None = None
    architecture: str | None = None
    endpoint_url: str | None = None
    normalization: dict[str, list[float]] | None = None
    preprocessing: list[dict[str, Any]] | None = None
    remote_allowlist: tuple[str, ...] = field(default=())
    # The operator's intake limits (control flow, onnxruntime threads) for this model's graph in jobs too.
    intake_limits: IntakeLimits = DEFAULT_LIMITS
    # Remote clients opened by `classifier()`, closed by `close()` when the job ends.
    _opened: list[RemoteClassifier] = field(default_factory=list, compare=False, repr=False)

    @property
    def has_weights(self) -> bool:
        """Whether the model carries trained weights (an architecture-only model does not)."""
        return self.blob is not None or self.format == "remote"

    def _normalized(self, module: nn.Module) -> nn.Module:
        """The module behind its declared normalization, so attacks work on inputs in the input range."""
        if not self.normalization:
            return module
        norm = self.normalization
        return Normalized(module, norm["mean"], norm["std"], len(self.input_shape)).eval()

    def _normalizing(self, classify: Classifier) -> Classifier:
        """A NumPy classifier behind the model's declared normalization."""
        if not self.normalization:
            return classify
        norm = self.normalization
        return normalized_classifier(classify, norm["mean"], norm["std"], len(self.input_shape))

    def graph_module(self) -> nn.Module:
        """The model's own differentiable graph (eval mode), without declared normalization."""
        if self.blob is None or not self.white_box:
            raise JobFailure("needs_white_box", f"model {self.id} can only be queried black-box")
        try:
            if self.format == "onnx":
                return load_onnx_module(self.blob, limits=self.intake_limits).eval()
            module = load_safetensors_module(
                self.blob, self.architecture or "", self.input_shape, self.num_classes
            )
            return module.eval()
        except ModelRejected as exc:
            raise JobFailure(exc.code, exc.message) from exc

    def white_box_module(self) -> nn.Module:
        """A differentiable module on inputs in the input range: normalization and preprocessing included.

        A defended model's preprocessing runs forward as deployed; gradients go through BPDA and, for random
        transforms, EOT (worker.engine.defense.preprocessing), so gradient attacks on it are adaptive.
        """
        module = self._normalized(self.graph_module())
        if not self.preprocessing:
            return module
        from worker.engine.defense.preprocessing import defended_module

        return defended_module(module, self.preprocessing, input_range=self.input_range)

    def _defending(self, classify: Classifier) -> Classifier:
        """A NumPy classifier behind a defended model's preprocessing (one draw per call)."""
        if not self.preprocessing:
            return classify
        from worker.engine.defense.preprocessing import defended_classifier

        return defended_classifier(classify, self.preprocessing, input_range=self.input_range)

    def classifier(self) -> Classifier | None:
        """The model as a NumPy function of inputs in the input range (onnxruntime or the remote endpoint)."""
        if self.format == "onnx" and self.blob is not None:
            return self._defending(
                self._normalizing(OnnxRuntimeClassifier(self.blob, limits=self.intake_limits))
            )
        if self.format == "remote" and self.endpoint_url:
            remote = RemoteClassifier(
                self.endpoint_url,
                input_shape=list(self.input_shape),
                num_classes=self.num_classes,
                allowlist=list(self.remote_allowlist),
            )
            self._opened.append(remote)

            def classify(x: np.ndarray) -> np.ndarray:
                try:
                    return remote(x)
                except RemoteModelError as exc:
                    raise JobFailure(exc.code, exc.message) from exc

            return self._normalizing(classify)
        return None

    def close(self) -> None:
        """Close the remote clients this snapshot opened (their connection pools)."""
        while self._opened:
            self._opened.pop().close()

    def black_box_model(self) -> QueryOnlyModel | None:
        """The model as black-box attacks see it (no gradient path); None for safetensors."""
        classify = self.classifier()
        return None if classify is None else QueryOnlyModel(classify)

    def trainable(self, init: str, seed: int) -> nn.Module:
        """A trainable module of this model's architecture: its own weights ("pretrained") or fresh ones."""
        from worker.engine.training.trainable import build_trainable

        if self.format == "remote":
            raise JobFailure("needs_white_box", f"model {self.id} is a remote endpoint: it cannot be trained")
        try:
            return build_trainable(
                architecture=self.architecture,
                onnx_bytes=self.blob if self.format == "onnx" else None,
                safetensors_bytes=self.blob if self.format == "safetensors" else None,
                input_shape=self.input_shape,
                num_classes=self.num_classes,
                init=init,
                seed=seed,
            )
        except ValueError as exc:
            raise JobFailure("model_untrainable", str(exc)) from exc


@dataclass
class JobContext:
    """A job ready to execute: its spec, its loaded inputs, the settings, device and progress callback.

    `datasets` maps a params field that names a dataset (`train_dataset_id`, `query_dataset_id`) to the
    loaded arrays, in the model's input range.
    """

    job_id: str
    tenant_id: str
    kind: str
    model_id: str
    dataset_id: str
    params: dict[str, Any]
    seed: int
    created_at: str
    model: ModelSnapshot
    data: ArrayDataset
    datasets: dict[str, ArrayDataset]
    settings: Settings
    device: torch.device
    progress: ProgressCallback
