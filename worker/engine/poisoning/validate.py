"""Bad input found in the engine: a training or held-out set that does not fit the model."""

import numpy as np

from worker.engine.errors import EngineError


class PoisoningInputError(EngineError, ValueError):
    """Input a poisoning job cannot use; `code` is stable and machine-readable."""

    def __init__(self, code: str, message: str) -> None:
        """Keep the code and the message."""
        super().__init__(message, code=code)


def check_dataset(
    x: np.ndarray,
    y: np.ndarray,
    *,
    input_shape: tuple[int, ...],
    num_classes: int,
    input_range: tuple[float, float],
    what: str,
) -> None:
    """Refuse a dataset whose shape, values, range or labels do not fit the architecture."""
    code = "training_set_mismatch" if what == "training set" else "dataset_mismatch"
    if x.ndim < 2 or y.ndim != 1 or len(x) != len(y) or len(x) == 0:
        raise PoisoningInputError(code, f"the {what} needs x [N, ...] and y [N] with N > 0")
    if tuple(x.shape[1:]) != tuple(input_shape):
        raise PoisoningInputError(
            code, f"the {what} has samples of shape {list(x.shape[1:])}; the model takes {list(input_shape)}"
        )
    if not np.isfinite(x).all():
        raise PoisoningInputError(
            "dataset_nan" if what == "training set" else code, f"the {what} holds NaN or inf"
        )
    low, high = input_range
    if x.min() < low - 1e-6 or x.max() > high + 1e-6:
        raise PoisoningInputError(code, f"the {what} has values outside the input range [{low}, {high}]")
    if not np.issubdtype(y.dtype, np.integer) or y.min() < 0 or y.max() >= num_classes:
        raise PoisoningInputError(
            code, f"the {what} has labels outside the model's classes 0..{num_classes - 1}"
        )
    if what == "training set" and len(np.unique(y)) < 2:
        raise PoisoningInputError(code, "the training set needs samples of at least two classes")
