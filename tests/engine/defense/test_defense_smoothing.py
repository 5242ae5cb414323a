"""Randomized smoothing: noise training, Clopper-Pearson bounds, certificates that attacks cannot break."""

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn import functional

from tests.engine.defense_helpers import digits_split, pgd, run
from worker.engine.defense.certify import (
    ABSTAIN,
    Certificates,
    NoiseStreams,
    certified_accuracy,
    certify,
    lower_confidence_bound,
)
from worker.engine.evasion.attacks.norms import normalize_l2

SIGMA = 0.25


def test_clopper_pearson_lower_bound():
    n, alpha = 100, 0.001
    assert lower_confidence_bound(np.array([n]), n, alpha)[0] == pytest.approx(alpha ** (1 / n))
    assert lower_confidence_bound(np.array([0]), n, alpha)[0] == 0.0
    bounds = lower_confidence_bound(np.array([50, 80, 95]), n, alpha)
    assert (np.diff(bounds) > 0).all() and (bounds < np.array([0.5, 0.8, 0.95])).all()


def test_certified_accuracy_counts_correct_certificates_within_each_radius():
    certificates = Certificates(np.array([1, 2, ABSTAIN, 0]), np.array([0.3, 0.6, 0.0, 1.0]))
    rows = certified_accuracy(certificates, np.array([1, 2, 0, 1]), [0.0, 0.5, 0.9])
    assert [r["certified_accuracy"] for r in rows] == [0.5, 0.25, 0.0]


@pytest.fixture(scope="module")
def smoothing(small_cnn):
    """The CNN fine-tuned under noise (sigma 0.25, 3 epochs) and certified on 60 samples with n = 500."""
    defense = {
        "name": "randomized_smoothing",
        "sigma": SIGMA,
        "epochs": 3,
        "n0": 50,
        "n": 500,
        "alpha": 0.001,
        "radii": [0.0, 0.25, 0.5],
    }
    return run(defense, {**pgd([0.5], norm="l2", steps=10), "max_samples": 60}, small_cnn)


def test_smoothing_report_has_certified_accuracy_per_radius_and_the_smoothed_clean_accuracy(smoothing):
    report = smoothing.report
    certification = report["certification"]
    rows = certification["certified_accuracy"]
    assert [r["radius"] for r in rows] == [0.0, 0.25, 0.5]
    values = [r["certified_accuracy"] for r in rows]
    assert values[0] >= 0.8 and values == sorted(values, reverse=True) and values[1] > 0.3
    assert certification["smoothed_clean_accuracy"] >= 0.8
    arrays = smoothing.arrays["certificates"]
    correct = arrays["prediction"] == arrays["y"]
    assert values[1] == pytest.approx(float((correct & (arrays["radius"] >= 0.25)).mean()))
    assert smoothing.model.preprocessing == [{"name": "gaussian_noise", "sigma": SIGMA}]
    assert (
        report["headline"]["norm"] == "l2" and report["evaluation"]["defended"]["runs"][0]["role"] == "naive"
    )


def _smoothed_attack(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: torch.Tensor, steps: int = 20, draws: int = 32
) -> torch.Tensor:
    """l2 PGD with EOT on the smoothed soft classifier (mean softmax under noise), per-sample radius eps."""
    generator = torch.Generator().manual_seed(7)
    x_adv = x.clone()
    for _ in range(steps):
        x_in = x_adv.detach().requires_grad_(True)
        repeated = x_in.repeat_interleave(draws, dim=0)
        noise = torch.randn(repeated.shape, generator=generator)
        probs = functional.softmax(model(repeated + SIGMA * noise), dim=1).reshape(len(x), draws, -1).mean(1)
        loss = functional.nll_loss(torch.log(probs + 1e-12), y)
        (grad,) = torch.autograd.grad(loss, x_in)
        with torch.no_grad():
            step = normalize_l2(grad) * (2.5 * eps / steps).view(-1, 1, 1, 1)
            delta = x_adv + step - x
            scale = torch.clamp(eps / delta.flatten(1).norm(dim=1).clamp_min(1e-12), max=1.0)
            x_adv = (x + delta * scale.view(-1, 1, 1, 1)).clamp(0, 1)
    return x_adv.detach()


def test_certificates_are_sound_against_an_eot_attack_inside_the_certified_radius(smoothing):
    model = smoothing.model.module
    x_all = torch.as_tensor(digits_split()[1][0][:60])
    streams = (NoiseStreams(11, 0), NoiseStreams(11, 1))
    certificates = certify(
        model, x_all, sigma=SIGMA, n0=50, n=500, alpha=0.001, num_classes=10, streams=streams
    )
    chosen = np.flatnonzero(certificates.radii > 0.1)[:30]
    assert len(chosen) >= 15
    x, labels = x_all[chosen], torch.as_tensor(certificates.predictions[chosen])
    radii = torch.as_tensor(certificates.radii[chosen], dtype=torch.float32)

    def votes(at: torch.Tensor) -> torch.Tensor:
        from worker.engine.defense.certify import noisy_counts

        counts = noisy_counts(model, at, SIGMA, 2000, 10, NoiseStreams(5, 0))
        return torch.as_tensor(counts.argmax(1))

    inside = _smoothed_attack(model, x, labels, 0.8 * radii)
    assert ((inside - x).flatten(1).norm(dim=1) <= 0.8 * radii + 1e-5).all()
    assert torch.equal(votes(inside), labels)  # never changes the smoothed prediction
    # The same attack is not toothless: far outside the radius it flips smoothed predictions.
    outside = _smoothed_attack(model, x, labels, torch.full_like(radii, 2.5))
    assert (votes(outside) != labels).float().mean() >= 0.3


def test_certified_accuracy_is_plotted_against_the_radius(smoothing):
    from worker.engine.reports.defense import render_defense_sections

    html = render_defense_sections(smoothing.report)
    assert "Certification (randomized smoothing)" in html and "l2 radius" in html
