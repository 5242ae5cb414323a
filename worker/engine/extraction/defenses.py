"""Victim-side defenses against extraction: transforms of the victim's probabilities before they leave.

Each defense maps probabilities [N, K] to what the interface then shapes (victim_output). Its cost to
honest callers is measured by the runner (label change rate and accuracy on the evaluation set).
`keeps_top_label` (a fact of the defense's spec) is a promise: True only where the argmax provably never
changes.
"""

from abc import ABC, abstractmethod
from typing import ClassVar

import numpy as np

from app.schemas.extraction import (
    ExtractionDefenseSpec,
    GaussianNoiseDefense,
    LabelOnlyDefense,
    ReverseSigmoidDefense,
    RoundingDefense,
    TopKDefense,
)
from worker.engine.extraction.outputs import keep_top_k
from worker.engine.from_spec import FromSpec

_CLIP = 1e-9


def _renormalise(values: np.ndarray) -> np.ndarray:
    """Rows scaled to sum to 1; a row of zeros becomes uniform."""
    total = values.sum(axis=1, keepdims=True)
    uniform = np.full_like(values, 1.0 / values.shape[1])
    return np.where(total > 0, values / np.where(total > 0, total, 1.0), uniform)


class Defense(FromSpec, ABC):
    """A transform of the victim's output probabilities, built from its typed spec (`spec_type`)."""

    spec: ExtractionDefenseSpec
    paper: ClassVar[str] = ""

    @property
    def keeps_top_label(self) -> bool:
        """Whether the argmax provably never changes (the spec's fact)."""
        return self.spec.keeps_top_label

    @property
    def labels_only(self) -> bool:
        """Whether the interface then returns labels and no scores (the spec's fact)."""
        return self.spec.labels_only

    @abstractmethod
    def transform(self, probs: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Defended outputs [N, K] (float64) for probabilities [N, K]."""


class TopK(Defense):
    """Return only the k largest probabilities (the others as 0).

    Threat model: hides the tail of the distribution; the top label and its score are unchanged.
    Parameters: k (default 1).
    """

    spec_type = TopKDefense
    spec: TopKDefense

    def transform(self, probs: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Zero all but the k largest entries."""
        return keep_top_k(probs, self.spec.k)


class Rounding(Defense):
    """Round probabilities to a number of decimals (Tramer et al. 2016 discuss it as a countermeasure).

    Threat model: coarsens scores; ties after rounding can change the argmax, so the top label is not
    promised (the runner measures how often it changes). Parameters: decimals (default 1).
    """

    spec_type = RoundingDefense
    spec: RoundingDefense
    paper = "Tramer, Zhang, Juels, Reiter and Ristenpart, USENIX Security 2016"

    def transform(self, probs: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Round each score."""
        return np.round(probs, self.spec.decimals)


class LabelOnly(Defense):
    """Return the predicted label and no score at all.

    Threat model: the attacker learns only labels (CopycatCNN's setting); the top label is unchanged.
    """

    spec_type = LabelOnlyDefense
    spec: LabelOnlyDefense

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

    spec_type = ReverseSigmoidDefense
    spec: ReverseSigmoidDefense
    paper = "Lee, Edwards, Molloy and Srivastava, IEEE S&P Workshops 2019"

    def transform(self, probs: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """The reverse-sigmoid perturbation, clipped and renormalised."""
        p = np.clip(probs.astype(np.float64), _CLIP, 1 - _CLIP)
        logit = np.log(p) - np.log1p(-p)
        perturbation = self.spec.beta * (1.0 / (1.0 + np.exp(-self.spec.gamma * logit)) - 0.5)
        return _renormalise(np.clip(probs - perturbation, 0.0, 1.0))


class GaussianNoise(Defense):
    """Add Gaussian noise to the probabilities, clip to [0, 1] and renormalise (output perturbation).

    Threat model: every answer is noisy, honest callers' included; labels change where the noise
    beats the margin (measured). Parameters: sigma (default 0.1), the noise's standard deviation.
    """

    spec_type = GaussianNoiseDefense
    spec: GaussianNoiseDefense

    def transform(self, probs: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Noisy probabilities, drawn from the interface's seeded generator."""
        noisy = probs + rng.normal(0.0, self.spec.sigma, size=probs.shape)
        return _renormalise(np.clip(noisy, 0.0, 1.0))


DEFENSES: dict[type[ExtractionDefenseSpec], type[Defense]] = {
    defense.spec_type: defense for defense in (TopK, Rounding, LabelOnly, ReverseSigmoid, GaussianNoise)
}


def build_defense(spec: ExtractionDefenseSpec) -> Defense:
    """The defense of a typed spec."""
    return DEFENSES[type(spec)](spec)
