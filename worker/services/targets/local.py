"""Targets whose weights (or architecture) live here: ONNX, safetensors, a bare catalog architecture."""

from torch import nn

from worker.engine.models.intake import (
    ModelRejected,
    OnnxRuntimeClassifier,
    load_onnx_module,
    load_safetensors_module,
)
from worker.engine.models.intake.limits import DEFAULT_LIMITS, IntakeLimits
from worker.engine.training.trainable import build_trainable
from worker.services.job_state import JobFailure
from worker.services.targets.base import Classifier, Signature, Target


def _trainable(
    signature: Signature,
    *,
    init: str,
    seed: int,
    architecture: str | None = None,
    onnx: bytes | None = None,
    safetensors: bytes | None = None,
) -> nn.Module:
    """The shared trainable builder, its refusals as the stable `model_untrainable` code."""
    try:
        return build_trainable(
            architecture=architecture,
            onnx_bytes=onnx,
            safetensors_bytes=safetensors,
            input_shape=signature.input_shape,
            num_classes=signature.num_classes,
            init=init,  # type: ignore[arg-type]
            seed=seed,
        )
    except ValueError as exc:
        raise JobFailure("model_untrainable", str(exc)) from exc


class OnnxTarget(Target):
    """An uploaded ONNX graph: onnxruntime for queries, the engine's graph builder for gradients."""

    def __init__(
        self,
        *,
        id: str,  # noqa: A002
        name: str,
        signature: Signature,
        blob: bytes,
        white_box: bool,
        limits: IntakeLimits = DEFAULT_LIMITS,
    ) -> None:
        super().__init__(id=id, name=name, signature=signature)
        self.blob, self.white_box, self.limits = blob, white_box, limits

    def graph_module(self) -> nn.Module:
        """The graph rebuilt as a torch module with the operator's intake limits."""
        if not self.white_box:
            return super().graph_module()
        try:
            return load_onnx_module(self.blob, limits=self.limits).eval()
        except ModelRejected as exc:
            raise JobFailure(exc.code, exc.message) from exc

    def raw_classifier(self) -> Classifier:
        """An onnxruntime session on the uploaded graph."""
        return OnnxRuntimeClassifier(self.blob, limits=self.limits)

    def onnx_bytes(self) -> bytes:
        """The uploaded graph."""
        return self.blob

    def trainable(self, init: str, seed: int) -> nn.Module:
        """The uploaded graph as trainable parameters (its weights, or re-initialised)."""
        return _trainable(self.signature, init=init, seed=seed, onnx=self.blob)


class SafetensorsTarget(Target):
    """Weights in safetensors for a catalog architecture: white-box, with no separate prediction interface."""

    white_box = True

    def __init__(
        self,
        *,
        id: str,
        name: str,
        signature: Signature,
        blob: bytes,
        architecture: str,  # noqa: A002
    ) -> None:
        super().__init__(id=id, name=name, signature=signature)
        self.blob, self.architecture = blob, architecture

    def graph_module(self) -> nn.Module:
        """The catalog module with the uploaded weights."""
        try:
            module = load_safetensors_module(
                self.blob, self.architecture, self.signature.input_shape, self.signature.num_classes
            )
        except ModelRejected as exc:
            raise JobFailure(exc.code, exc.message) from exc
        return module.eval()

    def trainable(self, init: str, seed: int) -> nn.Module:
        """The catalog module, from the uploaded weights or fresh ones."""
        return _trainable(
            self.signature, init=init, seed=seed, architecture=self.architecture, safetensors=self.blob
        )


class ArchitectureTarget(Target):
    """A catalog architecture registered without weights: only the starting point of a model a job trains."""

    has_weights = False

    def __init__(self, *, id: str, name: str, signature: Signature, architecture: str) -> None:  # noqa: A002
        super().__init__(id=id, name=name, signature=signature)
        self.architecture = architecture

    def trainable(self, init: str, seed: int) -> nn.Module:
        """The catalog module with fresh weights (`pretrained` has nothing to start from)."""
        return _trainable(self.signature, init=init, seed=seed, architecture=self.architecture)
