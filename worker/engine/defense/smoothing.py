"""Randomized smoothing (Cohen, Rosenfeld and Kolter, ICML 2019): noise training and l2 certification."""

from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn import functional

from worker.engine.defense.base import (
    Defense,
    DefenseContext,
    Hardened,
    Inspection,
    TrainingFields,
    check_budget,
    curve,
    train_baseline,
)
from worker.engine.defense.certify import certified_accuracy, certify, predict_smoothed
from worker.engine.defense.evaluation import AttackRun, Classify
from worker.engine.defense.monitor import EpochMonitor
from worker.engine.defense.preprocessing.defense import pipeline_runs
from worker.engine.defense.preprocessing.pipeline import defended_classifier
from worker.engine.defense.preprocessing.transforms import GaussianNoise
from worker.engine.defense.spec import check_range
from worker.engine.seeding import seeded_generator
from worker.engine.training.fit import fit

_CERTIFY_KEY, _PREDICT_KEY = 0xCE, 0xCF


class NoisyLoss:
    """Cross-entropy on inputs plus Gaussian noise of standard deviation sigma (Cohen et al.'s training)."""

    def __init__(self, sigma: float) -> None:
        self.sigma = sigma

    def __call__(self, model: nn.Module, x: Tensor, y: Tensor, generator: torch.Generator) -> Tensor:
        """One batch."""
        noise = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
        return functional.cross_entropy(model(x + self.sigma * noise), y)


@dataclass(frozen=True, kw_only=True)
class RandomizedSmoothing(TrainingFields, Defense):
    """Randomized smoothing with Gaussian noise: a certified l2 defense.

    Paper: Cohen, Rosenfeld and Kolter, "Certified Adversarial Robustness via Randomized Smoothing",
    ICML 2019. The base classifier is trained on inputs with Gaussian noise of standard deviation sigma;
    the smoothed classifier predicts the class the base classifier most often gives under that noise.

    Threat model of the certificate: any l2 perturbation smaller than the certified radius, with
    probability at least 1 - alpha over the sampling. The empirical evaluation attacks the base
    classifier behind one draw of noise (the deployed random defense) with EOT.

    Parameters: sigma (required, in (0, width of the input range]); n0 (noise draws that pick the class,
    default 100); n (draws that bound its probability, default 1000; the paper uses 100000); alpha
    (default 0.001); radii (l2 radii of the certified accuracy curve, default 0, 0.25, 0.5, 0.75, 1);
    eot_draws of the adaptive attacks (default 10); and the training recipe.
    """

    name: ClassVar[str] = "randomized_smoothing"
    sigma: float
    n0: int = 100
    n: int = 1000
    alpha: float = 0.001
    radii: tuple[float, ...] = field(default=(0.0, 0.25, 0.5, 0.75, 1.0))
    eot_draws: int = 10

    def __post_init__(self) -> None:
        """Validate the certification budget."""
        self.check_training()
        check_range("n0", self.n0, 1, 10_000)
        check_range("n", self.n, 10, 100_000)
        check_range("alpha", self.alpha, 0.0, 0.5, low_open=True)
        check_range("eot_draws", self.eot_draws, 1, 100)
        object.__setattr__(self, "radii", tuple(sorted(float(r) for r in self.radii)))
        if not self.radii or self.radii[0] < 0:
            raise ValueError("radii must be a non-empty list of non-negative numbers")

    def validate(self, sample_shape: tuple[int, ...], input_range: tuple[float, float]) -> None:
        """sigma must fit the input range."""
        check_budget("sigma", self.sigma, input_range)

    @property
    def randomized(self) -> bool:
        """The deployed classifier draws noise per prediction."""
        return True

    def default_threat(self, input_range: tuple[float, float]) -> tuple[str, list[float]]:
        """l2 at 0.25 and 0.5 of the range's width."""
        width = input_range[1] - input_range[0]
        return "l2", [0.25 * width, 0.5 * width]

    def noise(self) -> list[dict[str, Any]]:
        """The deployed random preprocessing: one draw of the smoothing noise."""
        return [GaussianNoise(sigma=self.sigma).describe()]

    def training_units(self, n_train: int) -> float:
        """Noise training (and a plain baseline for a random init)."""
        return (1 + (self.init == "random")) * self.epochs * n_train + self.epochs * 200

    def certification_units(self, n_eval: int) -> float:
        """Noise draws of certification and prediction (a forward pass is a third of a unit)."""
        return n_eval * (self.n0 + 2 * self.n) / 3.0

    def harden(self, context: DefenseContext) -> Hardened:
        """Train the base classifier under noise."""
        x, y = context.training_set()
        recipe = self.recipe()
        baseline = train_baseline(context, recipe) if self.init == "random" else None
        model = context.fresh(self.init)
        monitor = EpochMonitor(
            *context.monitor, budget=None, device=context.device, seed=context.seed, tracker=context.tracker
        )
        history = fit(
            model,
            x,
            y,
            recipe=recipe,
            seed=context.seed,
            device=context.device,
            loss=NoisyLoss(self.sigma),
            on_epoch=monitor,
            progress=context.tracker,
            stage=f"training under noise sigma={self.sigma:g}",
        )
        training = {
            "sigma": self.sigma,
            "curve": curve(history, monitor.rows),
            "epochs_run": len(history.epochs),
            "monitor": "clean accuracy of the base classifier (no noise) on held-out samples",
        }
        return Hardened(
            model=model.eval(), trained=True, preprocessing=self.noise(), training=training, baseline=baseline
        )

    def deployed(self, classify: Classify, context: DefenseContext) -> Classify:
        """One draw of noise in front of the base classifier."""
        return defended_classifier(classify, self.noise(), input_range=context.input_range, seed=context.seed)

    def runs(
        self, final: nn.Module, attacks: list[dict[str, Any]], context: DefenseContext
    ) -> list[AttackRun]:
        """Naive (one draw) and EOT attacks on the noisy base classifier."""
        transforms = [GaussianNoise(sigma=self.sigma)]
        return pipeline_runs(
            final,
            transforms,
            attacks,
            eot_draws=self.eot_draws,  # type: ignore[arg-type]
            input_range=context.input_range,
            seed=context.seed,
        )

    def inspect(self, final: nn.Module, x: np.ndarray, y: np.ndarray, context: DefenseContext) -> Inspection:
        """Certified accuracy per radius and the smoothed classifier's clean accuracy, on the final model."""
        inputs = torch.as_tensor(np.ascontiguousarray(x, dtype=np.float32)).to(context.device)
        common = {"sigma": self.sigma, "num_classes": context.num_classes, "tracker": context.tracker}
        certificates = certify(
            final,
            inputs,
            n0=self.n0,
            n=self.n,
            alpha=self.alpha,
            generator=seeded_generator(context.device, context.seed, _CERTIFY_KEY),
            **common,
        )
        predictions = predict_smoothed(
            final,
            inputs,
            n=self.n,
            alpha=self.alpha,
            generator=seeded_generator(context.device, context.seed, _PREDICT_KEY),
            **common,
        )
        correct = certificates.predictions == y
        section = {
            "sigma": self.sigma,
            "n0": self.n0,
            "n": self.n,
            "alpha": self.alpha,
            "n_samples": len(x),
            "certified_accuracy": certified_accuracy(certificates, y, list(self.radii)),
            "abstain_rate": float((certificates.predictions < 0).mean()),
            "mean_certified_radius": float(np.where(correct, certificates.radii, 0.0).mean()),
            "smoothed_clean_accuracy": float((predictions == y).mean()),
            "smoothed_abstain_rate": float((predictions < 0).mean()),
        }
        arrays = {
            "certificates": {
                "prediction": certificates.predictions.astype(np.int64),
                "radius": certificates.radii.astype(np.float64),
                "y": y.astype(np.int64),
                "smoothed_prediction": predictions.astype(np.int64),
            }
        }
        return Inspection({"certification": section}, [], arrays)
