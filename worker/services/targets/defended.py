"""A defended model: another target behind its deployed preprocessing (BPDA and EOT on the gradient path)."""

from typing import Any

from torch import nn

from app.schemas.defense_transforms import transform_specs
from worker.services.targets.base import Classifier, Target


class DefendedTarget(Target):
    """A target with input transforms in front, as a preprocessing defense job deployed it.

    Forward passes run the transforms as deployed; gradients go through BPDA and, for random transforms,
    EOT (worker.engine.defense.preprocessing), so gradient attacks on it are adaptive by default.
    """

    def __init__(self, inner: Target, transforms: list[dict[str, Any]]) -> None:
        super().__init__(id=inner.id, name=inner.name, signature=inner.signature)
        self.inner, self.transforms = inner, transforms
        self.specs = transform_specs(transforms)
        self.white_box, self.has_weights = inner.white_box, inner.has_weights

    @property
    def preprocessing(self) -> list[dict[str, Any]]:
        """The deployed transforms."""
        return self.transforms

    def graph_module(self) -> nn.Module:
        """The inner model's own graph (no preprocessing)."""
        return self.inner.graph_module()

    def module(self) -> nn.Module:
        """The inner module behind the transforms, differentiable with BPDA/EOT."""
        from worker.engine.defense.preprocessing import defended_module

        return defended_module(self.inner.module(), self.specs, input_range=self.signature.input_range)

    def raw_classifier(self) -> Classifier | None:
        """The inner model's own prediction interface."""
        return self.inner.raw_classifier()

    def classifier(self) -> Classifier | None:
        """The inner classifier behind the transforms (one random draw per call)."""
        from worker.engine.defense.preprocessing import defended_classifier

        classify = self.inner.classifier()
        if classify is None:
            return None
        return defended_classifier(classify, self.specs, input_range=self.signature.input_range)

    def onnx_bytes(self) -> bytes | None:
        """The inner model's graph."""
        return self.inner.onnx_bytes()

    def trainable(self, init: str, seed: int) -> nn.Module:
        """The inner model's trainable copy."""
        return self.inner.trainable(init, seed)

    def close(self) -> None:
        """Close the inner target."""
        self.inner.close()
