"""Per-sample random streams: a randomized defense's figures depend on no batch, slice or other pass."""

import numpy as np
import torch
from torch import nn

from app.schemas.defense_transforms import transform_specs
from tests.engine.defense_helpers import digits_split
from worker.engine.defense.certify import NoiseStreams, noisy_counts
from worker.engine.defense.preprocessing import build_transforms, defended_classifier
from worker.engine.defense.preprocessing.pipeline import DefendedPipeline
from worker.engine.evasion.runner import evaluate_slice, finish_evasion, run_evasion
from worker.engine.models.black_box import QueryOnlyModel
from worker.engine.sample_streams import sample_batch

RANDOM = transform_specs(
    [{"name": "random_resize_pad", "min_scale": 0.6}, {"name": "gaussian_noise", "sigma": 0.2}]
)
# Searches without randomness of their own, so only the defense's draws are random.
ATTACKS = [
    {"name": "pgd", "eps": [0.1, 0.3], "steps": 3, "random_start": False},
    {"name": "fgsm", "eps": [0.2]},
]


def _pipeline(model: nn.Module, draws: int = 3) -> DefendedPipeline:
    return DefendedPipeline(model, build_transforms(RANDOM), eot_draws=draws, seed=4)


def _data(n: int = 40) -> tuple[np.ndarray, np.ndarray]:
    x, y = digits_split()[1]
    return x[:n], y[:n]


def _figures(report: dict) -> list:
    """Every figure of an evasion report except the seconds."""
    rows = [
        {k: v for k, v in row.items() if k != "seconds"}
        for entry in report["attacks"]
        for row in entry["results"]
    ]
    return [report["clean_accuracy"], rows, report["worst_case"]]


def test_draws_are_keyed_by_sample_position_and_pass_not_by_batch(small_cnn):
    pipeline = _pipeline(small_cnn)
    x = torch.as_tensor(_data(8)[0])
    with torch.no_grad():
        with sample_batch(range(8), 1):
            whole = pipeline(x)
        with sample_batch([4, 5, 6, 7], 1):
            tail = pipeline(x[4:])
        with sample_batch(range(8), 1):
            again = pipeline(x)
            second = pipeline(x)
        with sample_batch(range(8), 2):
            other_work = pipeline(x)
    assert torch.equal(whole[4:], tail) and torch.equal(whole, again)
    assert not torch.allclose(whole, second) and not torch.allclose(whole, other_work)


def test_the_deployed_classifier_draws_apart_from_the_views(small_cnn):
    classify = defended_classifier(lambda a: small_cnn(torch.as_tensor(a)).detach().numpy(), RANDOM, seed=4)
    x = _data(8)[0]
    with torch.no_grad(), sample_batch(range(8), 1):
        view = _pipeline(small_cnn)(torch.as_tensor(x)).numpy()
    with sample_batch(range(8), 1):
        deployed = classify(x)
    with sample_batch(range(4, 8), 1):
        assert np.array_equal(classify(x[4:]), deployed[4:])
    assert not np.allclose(view, deployed)


def test_a_randomized_defense_gives_the_same_figures_in_any_batches_and_slices(small_cnn):
    x, y = _data()
    judge = QueryOnlyModel(
        defended_classifier(lambda a: small_cnn(torch.as_tensor(a)).detach().numpy(), RANDOM)
    )
    common = {"seed": 2, "sanity_runs": False, "black_box": judge}
    one = run_evasion(_pipeline(small_cnn), x, y, ATTACKS, batch_size=40, **common)
    small = run_evasion(_pipeline(small_cnn), x, y, ATTACKS, batch_size=8, **common)
    halves = [
        evaluate_slice(_pipeline(small_cnn), x[a:b], y[a:b], ATTACKS, start=a, total=40, batch_size=8, seed=2)
        for a, b in ((24, 40), (0, 24))
    ]
    merged = finish_evasion(_pipeline(small_cnn), x, y, ATTACKS, halves, batch_size=8, **common)
    assert _figures(one.report) == _figures(small.report) == _figures(merged.report)
    for name, arrays in one.adversarial.items():
        assert np.array_equal(arrays["x_adv"], small.adversarial[name]["x_adv"])
    # The evaluation used the defense's randomness: another seed of the pipeline's draws moves a figure.
    reseeded = _pipeline(small_cnn)
    reseeded.reseed(5)
    other = run_evasion(reseeded, x, y, ATTACKS, batch_size=40, **common)
    assert _figures(other.report) != _figures(one.report)


def test_an_extra_pass_does_not_shift_later_draws(small_cnn):
    x, y = _data()
    pipeline = _pipeline(small_cnn)
    first = run_evasion(pipeline, x, y, ATTACKS, batch_size=16, seed=2, sanity_runs=False)
    with torch.no_grad():  # an extra pass (a verifying pass, a sanity run) outside the evaluation's work
        pipeline(torch.as_tensor(x))
        with sample_batch(range(16), 0, 0):
            pipeline(torch.as_tensor(x[:16]))
    second = run_evasion(pipeline, x, y, ATTACKS, batch_size=16, seed=2, sanity_runs=False)
    assert _figures(first.report) == _figures(second.report)


def test_smoothing_noise_is_per_sample(small_cnn):
    x = torch.as_tensor(_data(12)[0])
    whole = noisy_counts(small_cnn, x, 0.5, 300, 10, NoiseStreams(3, 0))
    parts = [
        noisy_counts(small_cnn, x[a:b], 0.5, 300, 10, NoiseStreams(3, 0, a)) for a, b in ((0, 5), (5, 12))
    ]
    assert np.array_equal(whole, np.concatenate(parts))
    assert not np.array_equal(whole, noisy_counts(small_cnn, x, 0.5, 300, 10, NoiseStreams(4, 0)))
