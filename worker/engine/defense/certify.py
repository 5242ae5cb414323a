"""Certification and prediction of a Gaussian-smoothed classifier (Cohen, Rosenfeld and Kolter 2019).

The smoothed classifier g(x) = argmax_c P(f(x + N(0, sigma^2 I)) = c). CERTIFY draws n0 noisy copies to
guess the top class, n more to lower-bound its probability pA (one-sided Clopper-Pearson at level
alpha), and certifies the l2 radius sigma * PhiInverse(pA) when pA > 1/2 (else abstains). PREDICT
draws n copies and abstains unless a two-sided binomial test separates the top two classes at alpha.
"""

from dataclasses import dataclass

import numpy as np
import torch
from scipy.stats import beta, binomtest, norm
from torch import nn

from worker.engine.progress import ProgressTracker
from worker.engine.seeding import seeded_generator

ABSTAIN = -1
# Noisy copies per forward pass.
CHUNK = 4096


@dataclass(frozen=True)
class NoiseStreams:
    """Per-sample noise streams: sample i of x (position offset + i in the evaluated set) draws from a
    generator keyed by (seed, key, position), so its draws do not depend on the other samples."""

    seed: int
    key: int
    offset: int = 0

    def generator(self, device: torch.device, row: int) -> torch.Generator:
        """The stream of x's row `row`."""
        return seeded_generator(device, self.seed, self.key, self.offset + row)


@torch.no_grad()
def noisy_counts(
    model: nn.Module,
    x: torch.Tensor,
    sigma: float,
    n: int,
    num_classes: int,
    streams: NoiseStreams,
    tracker: ProgressTracker | None = None,
) -> np.ndarray:
    """Per sample of x, how often the base classifier predicts each class under n noise draws.

    Each sample draws its noise from its own stream in chunks of at most CHUNK (sizes that depend on n
    only); a forward pass holds the chunks of several samples when n is small.
    """
    counts = np.zeros((len(x), num_classes), dtype=np.int64)
    per_pass = max(1, CHUNK // max(n, 1))
    for start in range(0, len(x), per_pass):
        batch = x[start : start + per_pass]
        generators = [streams.generator(x.device, start + row) for row in range(len(batch))]
        left = n
        while left > 0:
            draws = min(left, CHUNK)
            noise = torch.cat(
                [
                    torch.randn((draws, *x.shape[1:]), generator=generator, device=x.device, dtype=x.dtype)
                    for generator in generators
                ]
            )
            repeated = batch.repeat_interleave(draws, dim=0)
            labels = model(repeated + sigma * noise).argmax(dim=1).reshape(len(batch), draws).cpu()
            for row in range(len(batch)):
                counts[start + row] += np.bincount(labels[row].numpy(), minlength=num_classes)
            left -= draws
            if tracker is not None:
                tracker.advance(len(repeated) / 3.0, "randomized smoothing: sampling noise")
    return counts


def lower_confidence_bound(successes: np.ndarray, n: int, alpha: float) -> np.ndarray:
    """One-sided (1 - alpha) Clopper-Pearson lower bound of a binomial proportion."""
    k = np.asarray(successes, dtype=np.float64)
    bound = beta.ppf(alpha, np.maximum(k, 1e-12), n - k + 1)
    return np.where(k > 0, bound, 0.0)


@dataclass
class Certificates:
    """Per sample: the certified prediction (ABSTAIN = -1) and its l2 radius (0 when abstaining)."""

    predictions: np.ndarray
    radii: np.ndarray


def certify(
    model: nn.Module,
    x: torch.Tensor,
    *,
    sigma: float,
    n0: int,
    n: int,
    alpha: float,
    num_classes: int,
    streams: tuple[NoiseStreams, NoiseStreams],
    tracker: ProgressTracker | None = None,
) -> Certificates:
    """Cohen et al.'s CERTIFY on each sample of x (`streams`: of the selection draws, of the estimation)."""
    guess = noisy_counts(model, x, sigma, n0, num_classes, streams[0], tracker).argmax(axis=1)
    counts = noisy_counts(model, x, sigma, n, num_classes, streams[1], tracker)
    p_lower = lower_confidence_bound(counts[np.arange(len(x)), guess], n, alpha)
    certified = p_lower > 0.5
    radii = np.where(certified, sigma * norm.ppf(np.clip(p_lower, 0.5, 1.0 - 1e-16)), 0.0)
    return Certificates(np.where(certified, guess, ABSTAIN), radii)


def predict_smoothed(
    model: nn.Module,
    x: torch.Tensor,
    *,
    sigma: float,
    n: int,
    alpha: float,
    num_classes: int,
    streams: NoiseStreams,
    tracker: ProgressTracker | None = None,
) -> np.ndarray:
    """Cohen et al.'s PREDICT on each sample of x (ABSTAIN where the top two are not separated)."""
    counts = noisy_counts(model, x, sigma, n, num_classes, streams, tracker)
    order = np.argsort(-counts, axis=1, kind="stable")
    top, second = order[:, 0], order[:, 1]
    rows = np.arange(len(x))
    n_top, n_second = counts[rows, top], counts[rows, second]
    p_values = np.array(
        [
            binomtest(int(a), int(a + b), 0.5).pvalue if a + b else 1.0
            for a, b in zip(n_top, n_second, strict=True)
        ]
    )
    return np.where(p_values <= alpha, top, ABSTAIN)


def certified_accuracy(
    certificates: Certificates, y: np.ndarray, radii: list[float]
) -> list[dict[str, float]]:
    """Share of samples certified correct at l2 radius at least r, for each r."""
    correct = certificates.predictions == y
    return [
        {"radius": float(r), "certified_accuracy": float((correct & (certificates.radii >= r)).mean())}
        for r in radii
    ]
