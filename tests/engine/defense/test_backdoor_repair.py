"""Backdoor repair: the planted success falls below 0.1 on the exported ONNX, in the user's own graph."""

import numpy as np
import onnx
import pytest
import torch

from tests.engine.onnx_fixtures import export_onnx
from tests.engine.poisoning_helpers import digits_split, make_model, setup, stamp_badnets
from worker.engine.defense.repair.base import RepairContext
from worker.engine.defense.repair.registry import REPAIRS, build_repair
from worker.engine.defense.repair.runner import RealTrigger, run_repair
from worker.engine.defense.repair.units import find_units, last_conv, prune
from worker.engine.models.export import verified_export
from worker.engine.models.intake import OnnxRuntimeClassifier, load_onnx_module
from worker.engine.models.intake.onnx_parse import make_session
from worker.engine.poisoning.attacks.triggers import PatchTrigger
from worker.engine.poisoning.scan.neural_cleanse import neural_cleanse
from worker.engine.training.trainable import trainable_from_onnx

SHAPE = (1, 8, 8)


@pytest.fixture(scope="module")
def split():
    return digits_split()


@pytest.fixture(scope="module")
def planted(split):
    """small-cnn with BadNets at 5% (2x2 white bottom-right patch, all to class 0), as ONNX."""
    train, _ = split
    x, y, _ = stamp_badnets(train, 0.05)
    return setup("small-cnn", epochs=8, seed=1).train_and_export(x, y, stage="test").onnx


def _repair(name: str, onnx_bytes: bytes, split, **params):
    train, test = split
    picks = np.random.default_rng(0).choice(len(train.x), 150, replace=False)
    context = RepairContext(
        trainable_from_onnx(onnx_bytes, init="pretrained"), train.x[picks], train.y[picks], 10, (0.0, 1.0)
    )
    real = RealTrigger(PatchTrigger(size=2).build(SHAPE, (0.0, 1.0)), 0)
    return run_repair(
        build_repair(name, params),
        context,
        held_out=(test.x, test.y),
        original=OnnxRuntimeClassifier(onnx_bytes),
        export=lambda m: verified_export(m, input_shape=SHAPE, num_classes=10, input_range=(0.0, 1.0))[0],
        load=lambda b: (load_onnx_module(b), OnnxRuntimeClassifier(b)),
        scanner=neural_cleanse(200),
        real=real,
    )


def _success(onnx_bytes: bytes, split) -> float:
    """The planted trigger's success on the held-out digits of other classes, through onnxruntime."""
    _, test = split
    triggered = test.x[test.y != 0].copy()
    triggered[:, :, -2:, -2:] = 1.0
    return float((OnnxRuntimeClassifier(onnx_bytes)(triggered).argmax(1) == 0).mean())


@pytest.mark.slow
def test_neural_cleanse_unlearning_removes_the_backdoor(planted, split):
    assert _success(planted, split) >= 0.5
    outcome = _repair("neural_cleanse", planted, split)
    report = outcome.report
    assert _success(outcome.onnx, split) < 0.1
    assert report["after"]["real_trigger_success"] == pytest.approx(_success(outcome.onnx, split))
    assert report["before"]["real_trigger_success"] >= 0.5
    assert report["after"]["clean_accuracy"] >= report["before"]["clean_accuracy"] - 0.03
    assert report["scan_before"]["flagged"] == [0]
    assert report["after"]["reversed_trigger_success"]["0"] < 0.2
    # The repaired model is the user's own graph with new weights: same nodes, same names.
    before, after = onnx.load_model_from_string(planted), onnx.load_model_from_string(outcome.onnx)
    assert [n.name for n in before.graph.node] == [n.name for n in after.graph.node]


@pytest.mark.slow
@pytest.mark.parametrize("name", ["fine_pruning", "anp", "fine_tuning"])
def test_other_repairs_run_and_report(planted, split, name):
    outcome = _repair(name, planted, split, **({"iterations": 300} if name == "anp" else {}))
    report = outcome.report
    assert report["method"]["name"] == name
    assert 0 <= report["after"]["real_trigger_success"] <= 1
    assert report["after"]["clean_accuracy"] >= 0.5
    assert report["after"]["real_trigger_success"] == pytest.approx(_success(outcome.onnx, split))


@pytest.mark.parametrize("architecture", ["small-cnn", "bn-cnn"])
def test_units_and_pruning_zero_a_channel_in_the_export(architecture):
    module = make_model(architecture)(0)
    graph = trainable_from_onnx(export_onnx(module, SHAPE), init="pretrained")
    units = find_units(graph)
    assert [u.kind for u in units] == ["conv", "conv", "linear"]
    unit = last_conv(units)
    assert unit.channels == 64
    prune(graph, unit, [3, 5])
    exported = verified_export(graph, input_shape=SHAPE, num_classes=10, input_range=(0.0, 1.0))[0]
    model = onnx.load_model_from_string(exported)
    model.graph.output.append(onnx.helper.make_tensor_value_info(unit.value, onnx.TensorProto.FLOAT, None))
    session = make_session(model.SerializeToString())
    x = np.random.default_rng(0).random((4, *SHAPE), dtype=np.float32)
    activation = session.run(None, {session.get_inputs()[0].name: x})[1]
    assert np.abs(activation[:, [3, 5]]).max() == 0
    assert np.abs(activation[:, 4]).max() > 0
    assert torch.is_tensor(graph.onnx_tensors()[unit.zero[0][0]])


def test_repair_registry_and_bad_params():
    assert {cls.spec_type for cls in REPAIRS.values()} == set(REPAIRS)
    assert {spec.model_fields["name"].default for spec in REPAIRS} == {
        "neural_cleanse",
        "fine_pruning",
        "anp",
        "fine_tuning",
    }
    with pytest.raises(ValueError):
        build_repair("nope")
    with pytest.raises(ValueError):
        build_repair("anp", {"eps": 2.0})
    with pytest.raises(ValueError):
        build_repair("fine_tuning", {"unknown": 1})


def _repair_report(after_success: float, after_clean: float, flagged_after: list[int]) -> dict:
    """A defense report of a backdoor repair, as the worker writes it (envelope included)."""
    scan = {
        "scanner": "neural_cleanse",
        "paper": "Wang et al., IEEE S&P 2019 (Neural Cleanse)",
        "statistic": "anomaly index",
        "threshold": 2.0,
        "classes": [
            {"label": 0, "mask_l1": 3.0, "anomaly_index": 4.0, "flagged": True, "trigger_success": 0.98}
        ],
    }
    return {
        "kind": "defense",
        "job_id": "job_x",
        "model_id": "mdl_x",
        "dataset_id": "builtin:digits-test",
        "seed": 0,
        "versions": {},
        "device": "cpu",
        "generated_at": "2026-01-01T00:00:00Z",
        "threat_model": "t",
        "checks": [],
        "derived_model_ids": ["mdl_y"],
        "defense": {"name": "backdoor_repair", "method": "anp"},
        "training": None,
        "preprocessing": None,
        "repair": {
            "method": {"name": "anp", "paper": "Wu and Wang, NeurIPS 2021 (ANP)", "params": {"eps": 0.4}},
            "before": {
                "clean_accuracy": 0.9,
                "reversed_trigger_success": {"0": 0.95},
                "real_trigger_success": 0.8,
            },
            "after": {
                "clean_accuracy": after_clean,
                "reversed_trigger_success": {"0": 0.1},
                "real_trigger_success": after_success,
            },
            "repair": {"pruned": {"/3/Conv_output_0": {"pruned": 5, "of": 64}}, "fine_tuning_epochs": 0},
            "training_curve": [],
            "scan_before": {**scan, "flagged": [0]},
            "scan_after": {**scan, "flagged": flagged_after},
            "n_clean": 150,
            "n_held_out": 297,
            "real_trigger": {"target_class": 0},
        },
    }


def test_repair_report_contract_verdict_and_page():
    from pydantic import ValidationError

    from app.schemas.reports import REPORT_ADAPTER
    from app.schemas.reports.headline import headline, metric
    from worker.engine.reports.defense import render_defense_sections

    removed = _repair_report(0.02, 0.89, [])
    REPORT_ADAPTER.validate_python(removed)
    assert metric(removed, "attack_success_rate") == 0.02
    assert metric(removed, "clean_accuracy") == 0.89
    assert "the backdoor is removed" in headline(removed).verdict
    survived = _repair_report(0.6, 0.89, [0])
    assert (
        "the backdoor survives" in headline(survived).verdict
        and "still flags class 0" in headline(survived).verdict
    )
    assert "clean accuracy fell" in headline(_repair_report(0.02, 0.7, [])).verdict
    page = render_defense_sections(removed)
    assert (
        "Backdoor repair" in page and "Neural Cleanse before and after" in page and "/3/Conv_output_0" in page
    )
    # A repair report carries no evasion evaluation; another defense's report needs one.
    with pytest.raises(ValidationError, match="no evasion evaluation"):
        REPORT_ADAPTER.validate_python({**removed, "robust_accuracy_vs_eps": []})
    other = {**removed, "defense": {"name": "adversarial_training"}}
    with pytest.raises(ValidationError, match="no repair"):
        REPORT_ADAPTER.validate_python(other)


def test_poisoning_page_shows_an_attacks_repair_rows():
    from worker.engine.reports.poisoning import render_poisoning_sections

    row = {
        "name": "anp",
        "n_clean": 148,
        "n_measured": 149,
        "before": {"clean_accuracy": 0.9, "attack_success_rate": 0.83},
        "after": {"clean_accuracy": 0.88, "attack_success_rate": 0.04},
        "repair": {
            "pruned": {"/3/Conv_output_0": {"pruned": 5, "of": 64}, "/7/Gemm": {"pruned": 1, "of": 128}}
        },
    }
    attack = {"name": "badnets", "results": [], "repair": [row]}
    page = render_poisoning_sections({"mode": "attack", "attacks": [attack]})
    assert "<h4>Repair</h4>" in page and "trained on 148 held-out samples" in page and "other 149" in page
    cells = ["anp", "90.0%", "88.0%", "83.0%", "4.0%", "6 of 192"]
    assert "".join(f"<td>{cell}</td>" for cell in cells) in page
    assert "<h4>Repair</h4>" not in render_poisoning_sections({"mode": "attack", "attacks": [{"name": "x"}]})
