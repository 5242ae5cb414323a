"""The query layer, the victim's output granularity and the defenses."""

from typing import get_args

import numpy as np
import pytest

from app.schemas.extraction import LabelOnlyDefense, ReverseSigmoidDefense, VictimOutputParams
from tests.engine.extraction_helpers import SHAPE, CountingVictim, defense_spec
from worker.engine.extraction.defenses import DEFENSES, LabelOnly, ReverseSigmoid, build_defense
from worker.engine.extraction.outputs import ExtractionError, softmax
from worker.engine.extraction.query import BudgetExceeded, QueryInterface

RNG = np.random.default_rng(0)


def interface(victim, output=VictimOutputParams(), defense=None, budget=100, num_classes=10):
    return QueryInterface(
        victim,
        num_classes=num_classes,
        input_shape=SHAPE,
        input_range=(0.0, 1.0),
        output=output,
        defense=defense,
        budget=budget,
        seed=0,
    )


def random_probs(n: int = 2000, k: int = 10, scale: float = 3.0) -> np.ndarray:
    return softmax(RNG.normal(0, scale, size=(n, k)))


@pytest.fixture(scope="module")
def probe(held_out):
    return held_out[0][:64]


def test_budget_is_never_exceeded_and_the_victim_never_sees_the_refused_batch(cnn_onnx, probe):
    victim = CountingVictim(cnn_onnx)
    api = interface(victim, budget=50)
    api.query(probe[:30])
    with pytest.raises(BudgetExceeded):
        api.query(probe[:21])
    assert victim.samples == 30 and api.used == 30 and api.remaining == 20
    api.query(probe[:20])
    with pytest.raises(BudgetExceeded):
        api.query(probe[:1])
    assert victim.samples == api.used == 50
    assert len(api.log().x) == 50


def test_queries_outside_the_input_range_or_shape_are_refused(cnn_onnx, probe):
    victim = CountingVictim(cnn_onnx)
    api = interface(victim)
    with pytest.raises(ValueError):
        api.query(probe[:2] + 2.0)
    with pytest.raises(ValueError):
        api.query(probe[:2, :, :4])
    assert victim.samples == 0 and api.used == 0


def test_probabilities_are_the_victims_softmax(cnn_onnx, probe):
    victim = CountingVictim(cnn_onnx)
    answer = interface(victim).query(probe)
    expected = softmax(victim.classifier(probe))
    np.testing.assert_allclose(answer.scores, expected, atol=1e-6)
    np.testing.assert_array_equal(answer.labels, expected.argmax(1))


@pytest.mark.parametrize("output", [VictimOutputParams(kind="label"), VictimOutputParams()])
def test_label_only_never_leaks_scores(cnn_onnx, probe, output):
    victim = CountingVictim(cnn_onnx)
    defense = None if output.kind == "label" else LabelOnly(LabelOnlyDefense(name="label_only"))
    api = interface(victim, output=output, defense=defense)
    answer = api.query(probe)
    assert answer.scores is None and answer.labels.dtype == np.int64 and answer.labels.ndim == 1
    np.testing.assert_array_equal(answer.labels, victim.classifier(probe).argmax(1))
    log = api.log()
    assert log.outputs.ndim == 1 and log.outputs.dtype == np.int64 and api.sees == "label"
    # Two inputs the victim gives the same label but different scores get identical answers.
    logits = victim.classifier(probe)
    same = np.flatnonzero(logits.argmax(1) == logits.argmax(1)[0])
    assert len(same) > 1 and not np.allclose(softmax(logits[same[:1]]), softmax(logits[same[1:2]]))
    pair = api.query(probe[same[:2]])
    assert pair.labels[0] == pair.labels[1] and pair.scores is None


def test_top_k_output_keeps_the_k_largest_and_rounding_rounds(cnn_onnx, probe):
    victim = CountingVictim(cnn_onnx)
    probs = softmax(victim.classifier(probe))
    answer = interface(victim, output=VictimOutputParams(kind="top_k", top_k=3, decimals=2)).query(probe)
    assert ((answer.scores > 0).sum(1) <= 3).all()
    top3 = np.sort(probs, axis=1)[:, -3:]
    np.testing.assert_allclose(np.sort(answer.scores, axis=1)[:, -3:], np.round(top3, 2), atol=1e-6)
    np.testing.assert_allclose(answer.scores * 100, np.round(answer.scores * 100), atol=1e-4)


def test_victim_output_spec_is_checked():
    with pytest.raises(ValueError):
        VictimOutputParams(kind="top_k")
    with pytest.raises(ValueError):
        VictimOutputParams(kind="label", decimals=2)
    with pytest.raises(ValueError):
        VictimOutputParams.model_validate({"kind": "probabilities", "temperature": 2})


@pytest.mark.parametrize(
    "name", sorted(get_args(spec.model_fields["name"].annotation)[0] for spec in DEFENSES)
)
def test_each_defense_returns_distributions_and_keeps_the_top_label_where_it_claims_to(name):
    defense = build_defense(defense_spec({"name": name}))
    probs = random_probs()
    out = defense.transform(probs, np.random.default_rng(1))
    assert out.shape == probs.shape and np.isfinite(out).all()
    assert out.min() >= 0 and out.max() <= 1 + 1e-9
    if defense.keeps_top_label:
        np.testing.assert_array_equal(out.argmax(1), probs.argmax(1))
    if name in ("reverse_sigmoid", "gaussian_noise"):
        np.testing.assert_allclose(out.sum(1), 1.0, atol=1e-9)


def test_top_k_defense_zeroes_all_but_k():
    probs = random_probs()
    out = build_defense(defense_spec({"name": "top_k", "k": 2})).transform(probs, RNG)
    assert ((out > 0).sum(1) == 2).all()
    np.testing.assert_allclose(np.sort(out, 1)[:, -2:], np.sort(probs, 1)[:, -2:])


def test_rounding_defense_rounds_to_its_decimals():
    out = build_defense(defense_spec({"name": "rounding", "decimals": 1})).transform(random_probs(), RNG)
    np.testing.assert_allclose(out * 10, np.round(out * 10), atol=1e-9)


def test_reverse_sigmoid_is_lee_et_als_formula_and_keeps_confident_labels():
    beta, gamma = 0.7, 0.4
    probs = random_probs(scale=4.0)
    out = ReverseSigmoid(ReverseSigmoidDefense(name="reverse_sigmoid", beta=beta, gamma=gamma)).transform(
        probs, RNG
    )
    p = np.clip(probs, 1e-9, 1 - 1e-9)
    raw = np.clip(probs - beta * (1 / (1 + (p / (1 - p)) ** -gamma) - 0.5), 0, 1)
    np.testing.assert_allclose(out, raw / raw.sum(1, keepdims=True), atol=1e-9)
    confident = probs.max(1) > 0.5
    assert confident.sum() > 100
    np.testing.assert_array_equal(out[confident].argmax(1), probs[confident].argmax(1))
    # It really distorts the scores an attacker trains on.
    assert np.abs(out - probs).sum(1).mean() > 0.3


def test_gaussian_noise_is_seeded_and_perturbs():
    defense = build_defense(defense_spec({"name": "gaussian_noise", "sigma": 0.1}))
    probs = random_probs()
    a = defense.transform(probs, np.random.default_rng(3))
    b = defense.transform(probs, np.random.default_rng(3))
    np.testing.assert_array_equal(a, b)
    assert np.abs(a - probs).mean() > 0.01


def test_defended_interface_applies_the_defense_before_the_output_granularity(cnn_onnx, probe):
    victim = CountingVictim(cnn_onnx)
    api = interface(victim, defense=ReverseSigmoid(ReverseSigmoidDefense(name="reverse_sigmoid")))
    answer = api.query(probe)
    expected = ReverseSigmoid(ReverseSigmoidDefense(name="reverse_sigmoid")).transform(
        softmax(victim.classifier(probe)), RNG
    )
    np.testing.assert_allclose(answer.scores, expected, atol=1e-6)
    np.testing.assert_array_equal(api.log().victim_labels, victim.classifier(probe).argmax(1))


def test_a_victim_that_answers_garbage_fails_with_a_stable_code(probe):
    def wrong_shape(x):
        return np.zeros((len(x), 7), dtype=np.float32)

    def not_finite(x):
        return np.full((len(x), 10), np.nan, dtype=np.float32)

    for victim in (wrong_shape, not_finite):
        with pytest.raises(ExtractionError) as caught:
            interface(victim).query(probe[:4])
        assert caught.value.code == "victim_bad_output"
