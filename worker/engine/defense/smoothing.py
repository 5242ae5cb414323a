"""Randomized smoothing (Cohen, Rosenfeld and Kolter, ICML 2019): noise training and l2 certification."""

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn import functional

from app.schemas.defense import RandomizedSmoothingParams
from app.schemas.defense_transforms import GaussianNoiseParams
from app.schemas.evasion import AttackParamsBase
from worker.engine.defense.base import (
    Defense,
    DefenseContext,
    Hardened,
    Inspection,
    check_budget,
    curve,
    train_baseline,
    training_recipe,
)
from worker.engine.defense.certify import NoiseStreams, certified_accuracy, certify, predict_smoothed
from worker.engine.defense.evaluation import AttackRun, Classify
from worker.engine.defense.monitor import EpochMonitor
from worker.engine.defense.preprocessing.defense import pipeline_runs
from worker.engine.defense.preprocessing.pipeline import defended_classifier
from worker.engine.defense.preprocessing.transforms import GaussianNoise
from worker.engine.training.fit import fit

# Keys of the per-sample noise streams: CERTIFY's selection and estimation draws, PREDICT's draws.
_CERTIFY_KEY, _PREDICT_KEY, _ESTIMATE_KEY = 0xCE, 0xCF, 0xD0


class NoisyLoss:
    """Cross-entropy on inputs plus Gaussian noise of standard deviation sigma (Cohen et al.'s training)."""

    def __init__(self, sigma: float) -> None:
        self.sigma = sigma

    def __call__(self, model: nn.Module, x: Tensor, y: Tensor, generator: torch.Generator) -> Tensor:
        """One batch."""
        noise = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
        return functional.cross_entropy(model(x + self.sigma * noise), y)


class RandomizedSmoothing(Defense[RandomizedSmoothingParams]):
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

    spec_type = RandomizedSmoothingParams

    def validate(self, sample_shape: tuple[int, ...], input_range: tuple[float, float]) -> None:
        """sigma must fit the input range."""
        check_budget("sigma", self.spec.sigma, input_range)

    def noise(self) -> GaussianNoiseParams:
        """The deployed random preprocessing: one draw of the smoothing noise."""
        return GaussianNoiseParams(name="gaussian_noise", sigma=self.spec.sigma)

    def training_units(self, n_train: int) -> float:
        """Noise training (and a plain baseline for a random init)."""
        return (1 + (self.spec.init == "random")) * self.spec.epochs * n_train + self.spec.epochs * 200

    def certification_units(self, n_eval: int) -> float:
        """Noise draws of certification and prediction (a forward pass is a third of a unit)."""
        return n_eval * (self.spec.n0 + 2 * self.spec.n) / 3.0

    def harden(self, context: DefenseContext) -> Hardened:
        """Train the base classifier under noise."""
        x, y = context.training_set()
        recipe = training_recipe(self.spec)
        baseline = train_baseline(context, recipe) if self.spec.init == "random" else None
        model = context.fresh(self.spec.init)
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
            loss=NoisyLoss(self.spec.sigma),
            on_epoch=monitor,
            progress=context.tracker,
            stage=f"training under noise sigma={self.spec.sigma:g}",
        )
        training = {
            "sigma": self.spec.sigma,
            "curve": curve(history, monitor.rows),
            "epochs_run": len(history.epochs),
            "monitor": "clean accuracy of the base classifier (no noise) on held-out samples",
        }
        return Hardened(
            model=model.eval(),
            trained=True,
            preprocessing=[self.noise().model_dump(mode="json")],
            training=training,
            baseline=baseline,
        )

    def deployed(self, classify: Classify, context: DefenseContext, stream: int | None = None) -> Classify:
        """One draw of noise in front of the base classifier."""
        return defended_classifier(
            classify, [self.noise()], input_range=context.input_range, seed=context.seed, stream=stream
        )

    def runs(
        self, final: nn.Module, attacks: list[AttackParamsBase], context: DefenseContext
    ) -> list[AttackRun]:
        """Naive (one draw) and EOT attacks on the noisy base classifier."""
        return pipeline_runs(
            final,
            [GaussianNoise(self.noise())],
            attacks,
            eot_draws=self.spec.eot_draws,
            input_range=context.input_range,
            seed=context.seed,
        )

    def inspect(self, final: nn.Module, x: np.ndarray, y: np.ndarray, context: DefenseContext) -> Inspection:
        """Certified accuracy per radius and the smoothed classifier's clean accuracy, on the final model."""
        inputs = torch.as_tensor(np.ascontiguousarray(x, dtype=np.float32)).to(context.device)
        common = {"sigma": self.spec.sigma, "num_classes": context.num_classes, "tracker": context.tracker}
        certificates = certify(
            final,
            inputs,
            n0=self.spec.n0,
            n=self.spec.n,
            alpha=self.spec.alpha,
            streams=(NoiseStreams(context.seed, _CERTIFY_KEY), NoiseStreams(context.seed, _ESTIMATE_KEY)),
            **common,
        )
        predictions = predict_smoothed(
            final,
            inputs,
            n=self.spec.n,
            alpha=self.spec.alpha,
            streams=NoiseStreams(context.seed, _PREDICT_KEY),
            **common,
        )
        correct = certificates.predictions == y
        section = {
            "sigma": self.spec.sigma,
            "n0": self.spec.n0,
            "n": self.spec.n,
            "alpha": self.spec.alpha,
            "n_samples": len(x),
            "certified_accuracy": certified_accuracy(certificates, y, self.spec.radii),
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
