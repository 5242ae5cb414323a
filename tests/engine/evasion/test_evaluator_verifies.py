"""Figures come from a forward pass on projected inputs (lying mutants: test_verification_contract)."""

import pytest
import torch
from pydantic import ValidationError

from app.schemas.evasion import PgdParams
from tests.engine.onnx_fixtures import export_onnx
from worker.engine.evasion.attacks.base import CONFIGURED_EPS
from worker.engine.evasion.attacks.pgd import PGD
from worker.engine.evasion.runner import run_evasion
from worker.engine.models.intake import OnnxRuntimeClassifier

N = 96
EPS = 0.15


def _run(model, held_out, attacks):
    x, y = held_out[0][:N], held_out[1][:N]
    return run_evasion(model, x, y, attacks, seed=0, sanity_runs=False)


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


def test_configured_validates_its_spec_and_rejects_unknown_keys():
    with pytest.raises(ValidationError, match="stepz"):
        PGD.configured(eps=[0.1], stepz=3)
    with pytest.raises(ValidationError, match="eps"):
        PGD.configured(eps=[])
    attack = PGD.configured(eps=[0.1], steps=3)
    assert isinstance(attack.spec, PgdParams) and attack.spec.eps == [0.1] and attack.steps == 3
    assert PGD.configured(steps=3).spec.eps == list(CONFIGURED_EPS)  # the engine takes eps per call


def test_an_attack_sets_eval_mode_itself_and_restores_the_mode(small_cnn, held_out):
    x = torch.as_tensor(held_out[0][:8])
    y = torch.as_tensor(held_out[1][:8])
    model = torch.nn.Sequential(small_cnn, torch.nn.Dropout(0.9))
    model.train()
    first = PGD.configured(steps=5).run(model, x, y, eps=EPS, generator=torch.Generator().manual_seed(1))
    second = PGD.configured(steps=5).run(model, x, y, eps=EPS, generator=torch.Generator().manual_seed(1))
    assert torch.equal(first.x_adv, second.x_adv)
    assert model.training
