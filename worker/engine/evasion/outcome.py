"""The result of an evasion evaluation: the report and the adversarial arrays for artifacts."""

from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class EvasionOutcome:
    """The report (without kind, ids, versions and seed, which the caller adds) and adversarial arrays.

    `adversarial` maps an artifact name ("adversarial_<attack>_<norm>_<index>") to arrays for one
    .npz: x_adv [n_eps, N, ...] float32, eps [n_eps] float64, y [N] int64, success [n_eps, N]
    bool, attacked [N] bool, and targets [N] int64 for targeted attacks; a patch attack's entry
    ("patch_<index>") holds its patches and split indices. `images` maps a file name to PNG bytes (the
    patches, for people).
    """

    report: dict[str, Any]
    adversarial: dict[str, dict[str, np.ndarray]]
    images: dict[str, bytes] = field(default_factory=dict)
