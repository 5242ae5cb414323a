"""Repair in a poisoning attack-mode job: the schema refuses repair without a backdoor, and a BadNets
victim repaired by Neural Cleanse unlearning loses its backdoor, measured on the export by onnxruntime."""

import numpy as np
import pytest
from pydantic import ValidationError

from app.schemas.poisoning import PoisoningParams
from app.schemas.reports.poisoning import PoisoningReport
from tests.engine.poisoning_helpers import SHAPE, attack_specs, digits_split, make_model, repair_specs
from worker.engine.poisoning.repair_step import CLEAN_SHARE
from worker.engine.poisoning.runner import run_poisoning
from worker.engine.poisoning.validate import PoisoningInputError
from worker.engine.training.recipe import TrainingRecipe

BADNETS = {"name": "badnets", "trigger": {"size": 2}, "target_class": 0, "rate": [0.1]}
FLIP = {"name": "label_flip", "rate": [0.1]}


def test_schema_refuses_repair_without_a_backdoor_attack():
    base = {"train_dataset_id": "builtin:digits-train", "repair": [{"name": "neural_cleanse"}]}
    with pytest.raises(ValidationError, match="repair needs a backdoor attack"):
        PoisoningParams.model_validate({**base, "attacks": [FLIP]})
    with pytest.raises(ValidationError, match="repair needs a backdoor attack"):
        PoisoningParams.model_validate({**base, "detection": [{"name": "strip"}]})
    with pytest.raises(ValidationError, match="takes no eps"):
        PoisoningParams.model_validate(
            {**base, "attacks": [BADNETS], "repair": [{"name": "fine_tuning", "eps": 0.1}]}
        )
    with pytest.raises(ValidationError, match="once"):
        PoisoningParams.model_validate(
            {**base, "attacks": [BADNETS], "repair": [{"name": "anp"}, {"name": "anp"}]}
        )
    params = PoisoningParams.model_validate({**base, "attacks": [FLIP, BADNETS]})
    assert params.repair[0].method_params() == {}


def test_engine_refuses_repair_without_a_backdoor_attack():
    train, test = digits_split()
    with pytest.raises(PoisoningInputError, match="backdoor"):
        run_poisoning(
            make_model("mlp"),
            train,
            test,
            attack_specs([FLIP]),
            recipe=TrainingRecipe(epochs=1),
            input_shape=SHAPE,
            num_classes=10,
            repair=repair_specs([{"name": "fine_tuning"}]),
        )


@pytest.mark.slow
def test_neural_cleanse_repair_lowers_the_planted_success():
    train, test = digits_split()
    outcome = run_poisoning(
        make_model("small-cnn"),
        train,
        test,
        attack_specs([BADNETS]),
        recipe=TrainingRecipe(epochs=3),
        input_shape=SHAPE,
        num_classes=10,
        repair=repair_specs([{"name": "neural_cleanse", "scan_steps": 100}]),
    )
    report = outcome.report
    assert report["repair_clean_share"] == CLEAN_SHARE
    (row,) = report["attacks"][0]["repair"]
    cut = int(len(test.y) * CLEAN_SHARE)
    assert row["name"] == "neural_cleanse"
    assert row["n_clean"] == cut and row["n_measured"] == len(test.y) - cut
    before, after = row["before"], row["after"]
    assert before["attack_success_rate"] >= 0.5
    assert after["attack_success_rate"] < before["attack_success_rate"]
    assert after["attack_success_rate"] <= 0.1
    assert after["clean_accuracy"] >= before["clean_accuracy"] - 0.1
    assert row["repair"]["unlearned_classes"]
    print("repair figures", before, after, row["repair"])
    # The typed report accepts the section (the envelope as the job runner writes it).
    envelope = {
        "job_id": "job_x",
        "model_id": "mdl_x",
        "dataset_id": "builtin:digits-test",
        "seed": 0,
        "versions": {},
        "device": "cpu",
        "generated_at": "2026-01-01T00:00:00Z",
        "threat_model": "t",
        "derived_model_ids": [],
        "kind": "poisoning",
    }
    typed = PoisoningReport.model_validate({**envelope, **report})
    assert typed.attacks is not None and typed.attacks[0].repair is not None
    assert np.isclose(typed.attacks[0].repair[0].after.clean_accuracy, after["clean_accuracy"])
