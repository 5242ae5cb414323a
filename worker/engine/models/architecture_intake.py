"""Intake of a catalog architecture registered without weights: it must build for the declared shape."""

from collections.abc import Sequence

from worker.engine.models.intake import IntakeReport, ModelRejected


def validate_architecture(architecture: str, input_shape: Sequence[int], num_classes: int) -> IntakeReport:
    """Build the architecture with fresh weights and check its output; raises ModelRejected otherwise."""
    from worker.engine.training.trainable import build_trainable

    try:
        build_trainable(
            architecture=architecture,
            onnx_bytes=None,
            safetensors_bytes=None,
            input_shape=input_shape,
            num_classes=num_classes,
            init="random",
            seed=0,
        )
    except (ValueError, KeyError) as exc:
        raise ModelRejected("shape_mismatch", f"architecture {architecture!r} does not fit: {exc}") from exc
    return IntakeReport(
        white_box=True,
        max_abs_diff=None,
        notes=["architecture only, no trained weights: a training job starts it from fresh weights"],
    )
