"""The evaluator never trusts an attack's word: figures come from its own forward pass on projected inputs."""

import numpy as np
import pytest
import torch

from tests.engine.onnx_fixtures import export_onnx
from worker.engine.evasion.attacks.base import Attack
from worker.engine.evasion.attacks.pgd import PGD
from worker.engine.evasion.attacks.registry import ATTACKS
from worker.engine.evasion.runner import run_evasion
from worker.engine.models.intake import OnnxRuntimeClassifier

N = 96
EPS = 0.15


class ClaimsEverySuccess(Attack):
    """Returns the clean input unchanged but claims every sample was fooled."""

    name = "liar-success"

    def _attack(self, model, x, labels, *, eps, generator):
        return x.clone(), (labels + 1) % 10


class HidesItsSuccesses(Attack):
    """Runs a real PGD but claims it never fooled anything, and pushes its output far out of the ball."""

    name = "liar-failure"

    def _attack(self, model, x, labels, *, eps, generator):
        real = PGD(norm="linf", steps=20, input_range=self.input_range).run(
            model, x, labels, eps=eps, generator=generator
        )
        outside = real.x_adv + 3 * eps * torch.sign(real.x_adv - x)
        return outside, labels.clone()


@pytest.fixture
def liars(monkeypatch):
    for cls in (ClaimsEverySuccess, HidesItsSuccesses):
        monkeypatch.setitem(ATTACKS, cls.name, cls)


def _run(model, held_out, attacks):
    x, y = held_out[0][:N], held_out[1][:N]
    return run_evasion(model, x, y, attacks, seed=0, sanity_runs=False)


def test_a_lying_attack_does_not_change_the_report(small_cnn, held_out, liars):
    outcome = _run(small_cnn, held_out, [{"name": "liar-success", "norm": "linf", "eps": [EPS]}])
    row = outcome.report["attacks"][0]["results"][0]
    assert row["robust_accuracy"] == pytest.approx(outcome.report["clean_accuracy"])
    assert row["attack_success_rate"] == 0.0
    assert not outcome.adversarial["adversarial_liar-success_linf_0"]["success"].any()


def test_hidden_successes_are_counted_and_the_output_is_projected(small_cnn, held_out, liars):
    specs = [
        {"name": "liar-failure", "norm": "linf", "eps": [EPS]},
        {"name": "pgd", "norm": "linf", "eps": [EPS], "steps": 20},
    ]
    outcome = _run(small_cnn, held_out, specs)
    lying, honest = (entry["results"][0] for entry in outcome.report["attacks"])
    assert lying["robust_accuracy"] < outcome.report["clean_accuracy"] - 0.2
    assert lying["robust_accuracy"] == pytest.approx(honest["robust_accuracy"], abs=0.03)
    assert lying["max_perturbation"] <= EPS * (1 + 1e-5)
    arrays = outcome.adversarial["adversarial_liar-failure_linf_0"]
    assert np.abs(arrays["x_adv"][0] - held_out[0][:N]).max() <= EPS * (1 + 1e-5)


def test_downloaded_examples_give_the_reported_accuracy_in_onnxruntime(small_cnn, held_out):
    specs = [{"name": "pgd", "norm": "linf", "eps": [0.05, EPS], "steps": 20}, {"name": "fgsm", "eps": [EPS]}]
    outcome = _run(small_cnn, held_out, specs)
    runtime = OnnxRuntimeClassifier(export_onnx(small_cnn, (1, 8, 8)))
    y = held_out[1][:N]
    for index, entry in enumerate(outcome.report["attacks"]):
        arrays = outcome.adversarial[f"adversarial_{entry['name']}_linf_{index}"]
        for position, row in enumerate(entry["results"]):
            predicted = runtime(arrays["x_adv"][position]).argmax(1)
            # one sample of slack: a point on a decision boundary within the intake's parity tolerance
            assert abs(float((predicted == y).mean()) - row["robust_accuracy"]) <= 1 / N + 1e-9


def test_from_spec_rejects_unknown_keys_and_names_missing_ones():
    with pytest.raises(ValueError, match="stepz"):
        PGD.from_spec({"name": "pgd", "eps": [0.1], "stepz": 3})
    with pytest.raises(ValueError, match="missing parameter eps"):
        PGD.from_spec({"name": "pgd", "steps": 3})
    assert PGD.from_spec({"name": "pgd", "eps": [0.1], "steps": 3}).steps == 3


def test_an_attack_sets_eval_mode_itself_and_restores_the_mode(small_cnn, held_out):
    x = torch.as_tensor(held_out[0][:8])
    y = torch.as_tensor(held_out[1][:8])
    model = torch.nn.Sequential(small_cnn, torch.nn.Dropout(0.9))
    model.train()
    first = PGD(steps=5).run(model, x, y, eps=EPS, generator=torch.Generator().manual_seed(1))
    second = PGD(steps=5).run(model, x, y, eps=EPS, generator=torch.Generator().manual_seed(1))
    assert torch.equal(first.x_adv, second.x_adv)
    assert model.training
