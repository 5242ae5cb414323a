"""The class gate: does a class's suspect group look like another class once its odd direction is gone?

A clustering or spectral split finds a suspect group in every class, poisoned or not; reporting it
everywhere (what ART's defences do by default) flags a clean model. The gate is an exclusionary
reclassification (Chen et al. 2018, section 4.2) done in feature space, with no retraining:

1. Every class gets a core: the mean feature vector of its samples outside its suspect group.
2. For a class c, the direction u from c's core to the mean of its suspects is what sets the group
   apart (for a backdoor: the trigger). u is projected out of the suspects' features and of every core.
3. Each suspect is assigned to the nearest core. `own_share` is the share assigned to c.

A legitimate sub-population (a different handwriting style, or clean samples that happen to carry
the trigger's pixels) is still nearest its own class once the odd direction is removed. Poisons are
samples of other classes carrying a trigger, relabelled: without the trigger direction they fall to
their source classes. A class is flagged when own_share < threshold (default 0.8, calibrated on
digits: clean classes stay at 0.90 or above, poisoned ones at 0.75 or below). Groups smaller than
`min_group` samples are never flagged.
"""

from dataclasses import dataclass

import numpy as np

DEFAULT_THRESHOLD = 0.8
DEFAULT_MIN_GROUP = 2


@dataclass(frozen=True)
class ClassVerdict:
    """The gate's view of one class: its size, suspect group, own share and whether it is flagged."""

    label: int
    n_samples: int
    n_suspects: int
    own_share: float | None
    flagged: bool

    def as_dict(self) -> dict[str, float | int | bool | None]:
        """Report row."""
        return {
            "class": self.label,
            "n_samples": self.n_samples,
            "n_suspects": self.n_suspects,
            "own_share": self.own_share,
            "flagged": self.flagged,
        }


def _cores(features: np.ndarray, y: np.ndarray, suspects: np.ndarray, num_classes: int) -> np.ndarray:
    """Per class, the mean of its non-suspects (of all its samples if every one is suspect); NaN if empty."""
    cores = np.full((num_classes, features.shape[1]), np.nan, dtype=np.float64)
    for label in range(num_classes):
        members = y == label
        if not members.any():
            continue
        kept = members & ~suspects
        cores[label] = features[kept if kept.any() else members].mean(axis=0)
    return cores


def own_share(
    features: np.ndarray, y: np.ndarray, suspects: np.ndarray, label: int, cores: np.ndarray
) -> float:
    """Share of class `label`'s suspects nearest their own core once the split direction is removed."""
    group = features[suspects & (y == label)].astype(np.float64)
    direction = group.mean(axis=0) - cores[label]
    length = float(np.linalg.norm(direction))
    present = ~np.isnan(cores).any(axis=1)
    centres = cores[present]
    labels = np.flatnonzero(present)
    if length > 0:
        unit = direction / length
        group = group - np.outer(group @ unit, unit)
        centres = centres - np.outer(centres @ unit, unit)
    distances = ((group[:, None, :] - centres[None, :, :]) ** 2).sum(axis=2)
    return float((labels[distances.argmin(axis=1)] == label).mean())


def gate_classes(
    features: np.ndarray,
    y: np.ndarray,
    suspects: np.ndarray,
    num_classes: int,
    *,
    threshold: float = DEFAULT_THRESHOLD,
    min_group: int = DEFAULT_MIN_GROUP,
) -> list[ClassVerdict]:
    """The verdict for every class, given a boolean suspect mask over the training set."""
    cores = _cores(features, y, suspects, num_classes)
    verdicts = []
    for label in range(num_classes):
        members = y == label
        n_suspects = int((suspects & members).sum())
        share = None
        if n_suspects >= min_group and n_suspects < int(members.sum()):
            share = own_share(features, y, suspects, label, cores)
        flagged = share is not None and share < threshold
        verdicts.append(ClassVerdict(label, int(members.sum()), n_suspects, share, flagged))
    return verdicts
