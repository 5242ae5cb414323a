"""Pictures for the report: the trigger and a few poisoned samples beside their clean originals."""

import base64
from typing import Any

import numpy as np

from worker.engine.poisoning.attacks.base import Backdoor, PoisoningAttack
from worker.engine.poisoning.data import PoisonedSet
from worker.engine.reports.png import chw_to_png

SAMPLES_SHOWN = 4


def is_image(sample_shape: tuple[int, ...]) -> bool:
    """Whether inputs can be drawn: [C, H, W] with 1 or 3 channels."""
    return len(sample_shape) == 3 and sample_shape[0] in (1, 3)


def _b64(png: bytes) -> str:
    """PNG bytes as base64 text for the JSON report."""
    return base64.b64encode(png).decode("ascii")


def trigger_png(
    attack: PoisoningAttack, sample_shape: tuple[int, ...], input_range: tuple[float, float]
) -> bytes | None:
    """The test-time trigger as a PNG (its pattern where it applies), None for no trigger or no image."""
    if not isinstance(attack, Backdoor) or not is_image(sample_shape):
        return None
    return chw_to_png(attack.test_trigger().image(input_range), input_range)


def sample_pictures(
    clean_x: np.ndarray, clean_y: np.ndarray, poisoned: PoisonedSet, input_range: tuple[float, float]
) -> list[dict[str, Any]]:
    """Up to SAMPLES_SHOWN poisoned samples beside their originals, as base64 PNGs with both labels."""
    if not is_image(tuple(clean_x.shape[1:])):
        return []
    rows = []
    for index in poisoned.indices[:SAMPLES_SHOWN]:
        rows.append(
            {
                "index": int(index),
                "label": int(clean_y[index]),
                "poisoned_label": int(poisoned.y[index]),
                "original_png": _b64(chw_to_png(clean_x[index], input_range)),
                "poisoned_png": _b64(chw_to_png(poisoned.x[index], input_range)),
            }
        )
    return rows
