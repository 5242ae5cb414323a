"""Model intake: refuse code-carrying formats, vet ONNX and safetensors uploads, load them safely."""

from worker.engine.models.intake.errors import IntakeReport, ModelRejected
from worker.engine.models.intake.formats import detect_unsafe_format, refuse_unsafe_format
from worker.engine.models.intake.limits import IntakeLimits
from worker.engine.models.intake.onnx_intake import validate_onnx
from worker.engine.models.intake.onnx_runtime import OnnxRuntimeClassifier, load_onnx_module
from worker.engine.models.intake.safetensors_intake import load_safetensors_module, validate_safetensors

__all__ = [
    "IntakeLimits",
    "IntakeReport",
    "ModelRejected",
    "OnnxRuntimeClassifier",
    "detect_unsafe_format",
    "load_onnx_module",
    "load_safetensors_module",
    "refuse_unsafe_format",
    "validate_onnx",
    "validate_safetensors",
]
