"""The rejection error and the report every successful intake returns."""

from dataclasses import dataclass, field

from worker.engine.errors import EngineError


class ModelRejected(EngineError):
    """An upload was refused; `code` is stable and machine-readable, `message` is for people.

    Codes: refused_format, onnx_invalid, external_data, unsupported_ops, unsupported_opset,
    unsupported_input_type, shape_mismatch, parity_failed, resource_limit, control_flow_refused,
    safetensors_invalid, unknown_architecture.
    """

    def __init__(self, code: str, message: str) -> None:
        """Store the code and the human-readable message."""
        super().__init__(message, code=code)


@dataclass
class IntakeReport:
    """What intake learned about an accepted model: white-box usability, parity and notes."""

    white_box: bool
    max_abs_diff: float | None
    missing_ops: list[str] = field(default_factory=list)
    onnx_opset: int | None = None
    notes: list[str] = field(default_factory=list)
    batch_mode: str = "dynamic"  # ONNX: "dynamic", or for a fixed batch of 1 "symbolic" or "chunked"
