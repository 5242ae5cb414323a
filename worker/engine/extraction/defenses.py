"""Victim-side defenses against extraction: transforms of the victim's probabilities before they leave.

Each defense maps probabilities [N, K] to what the interface then shapes (victim_output). Its cost to
honest callers is measured by the runner (label change rate and accuracy on the evaluation set).
`keeps_top_label` is a promise: True only where the argmax provably never changes.
"""

from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import Any, ClassVar, Self

import numpy as np

from worker.engine.extraction.outputs import keep_top_k

_CLIP = 1e-9


def _renormalise(values: np.ndarray) -> np.ndarray:
    """Rows scaled to sum to 1; a row of zeros becomes uniform."""
    total = values.sum(axis=1, keepdims=True)
    uniform = np.full_like(values, 1.0 / values.shape[1])
    return np.where(total > 0, values / np.where(total > 0, total, 1.0), uniform)


class Defense(ABC):
    """A transform of the victim's output probabilities, configured from a spec entry."""

    name: ClassVar[str]
    paper: ClassVar[str] = ""
    keeps_top_label: ClassVar[bool] = False
    labels_only: ClassVar[bool] = False  # the interface then returns labels and no scores
    SPEC_KEYS: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any]) -> Self:
        """Build from a spec entry; unknown keys are an error, None keeps the default."""
        unknown = sorted(set(spec) - {"name", *cls.SPEC_KEYS})
        if unknown:
            raise ValueError(f"defense {cls.name}: unknown parameters {', '.join(unknown)}")
        return cls(**{key: spec[key] for key in cls.SPEC_KEYS if spec.get(key) is not None})

    def params(self) -> dict[str, Any]:
        """Effective parameters, for the report."""
        return {key: getattr(self, key) for key in self.SPEC_KEYS}

    @abstractmethod
    def transform(self, probs: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Defended outputs [N, K] (float64) for probabilities [N, K]."""


class TopK(Defense):
    """Return only the k largest probabilities (the others as 0).

    Threat model: hides the tail of the distribution; the top label and its score are unchanged.
    Parameters: k (default 1).
    """

    name = "top_k"
    keeps_top_label = True
    SPEC_KEYS = ("k",)

    def __init__(self, *, k: int = 1) -> None:
        """Validate k."""
        if int(k) < 1:
            raise ValueError("top_k.k must be at least 1")
        self.k = int(k)

    def transform(self, probs: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Zero all but the k largest entries."""
        return keep_top_k(probs, self.k)


class Rounding(Defense):
    """Round probabilities to a number of decimals (Tramer et al. 2016 discuss it as a countermeasure).

    Threat model: coarsens scores; ties after rounding can change the argmax, so the top label is not
    promised (the runner measures how often it changes). Parameters: decimals (default 1).
    """

    name = "rounding"
    paper = "Tramer, Zhang, Juels, Reiter and Ristenpart, USENIX Security 2016"
    SPEC_KEYS = ("decimals",)

    def __init__(self, *, decimals: int = 1) -> None:
        """Validate decimals."""
        if not 0 <= int(decimals) <= 8:
            raise ValueError("rounding.decimals must be in [0, 8]")
        self.decimals = int(decimals)

    def transform(self, probs: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Round each score."""
        return np.round(probs, self.decimals)


class LabelOnly(Defense):
    """Return the predicted label and no score at all.

    Threat model: the attacker learns only labels (CopycatCNN's setting); the top label is unchanged.
    """

    name = "label_only"
    keeps_top_label = True
    labels_only = True

    def transform(self, probs: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Unchanged: the interface keeps only the argmax."""
        return probs


class ReverseSigmoid(Defense):
    """Reverse sigmoid output perturbation.

    Paper: Lee, Edwards, Molloy and Srivastava, "Defending Against NN Model Stealing Attacks Using
    Deceptive Perturbations", IEEE S&P Workshops 2019.

    Threat model: poisons the scores an attacker trains on (q = alpha * (p - beta * (sigmoid(gamma *
    logit(p)) - 1/2)), clipped to [0, 1] and renormalised by alpha) while mostly keeping the top label;
    it is not promised for flat distributions, so the runner measures the change rate.
    Parameters: beta (default 0.7, the perturbation's size), gamma (default 0.4, its slope).
    """

    name = "reverse_sigmoid"
    paper = "Lee, Edwards, Molloy and Srivastava, IEEE S&P Workshops 2019"
    SPEC_KEYS = ("beta", "gamma")

    def __init__(self, *, beta: float = 0.7, gamma: float = 0.4) -> None:
        """Validate beta and gamma."""
        if not float(beta) > 0 or not float(gamma) > 0:
            raise ValueError("reverse_sigmoid.beta and gamma must be positive")
        self.beta, self.gamma = float(beta), float(gamma)

    def transform(self, probs: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """The reverse-sigmoid perturbation, clipped and renormalised."""
        p = np.clip(probs.astype(np.float64), _CLIP, 1 - _CLIP)
        logit = np.log(p) - np.log1p(-p)
        perturbation = self.beta * (1.0 / (1.0 + np.exp(-self.gamma * logit)) - 0.5)
        return _renormalise(np.clip(probs - perturbation, 0.0, 1.0))


class GaussianNoise(Defense):
    """Add Gaussian noise to the probabilities, clip to [0, 1] and renormalise (output perturbation).

    Threat model: every answer is noisy, honest callers' included; labels change where the noise
    beats the margin (measured). Parameters: sigma (default 0.1), the noise's standard deviation.
    """

    name = "gaussian_noise"
    SPEC_KEYS = ("sigma",)

    def __init__(self, *, sigma: float = 0.1) -> None:
        """Validate sigma."""
        if not float(sigma) > 0:
            raise ValueError("gaussian_noise.sigma must be positive")
        self.sigma = float(sigma)

    def transform(self, probs: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Noisy probabilities, drawn from the interface's seeded generator."""
        noisy = probs + rng.normal(0.0, self.sigma, size=probs.shape)
        return _renormalise(np.clip(noisy, 0.0, 1.0))


DEFENSES: dict[str, type[Defense]] = {
    defense.name: defense for defense in (TopK, Rounding, LabelOnly, ReverseSigmoid, GaussianNoise)
}


def defense_class(name: str) -> type[Defense]:
    """The defense registered under name; ValueError for an unknown one."""
    try:
        return DEFENSES[name]
    except KeyError:
        raise ValueError(f"unknown defense {name!r}; available: {', '.join(sorted(DEFENSES))}") from None
