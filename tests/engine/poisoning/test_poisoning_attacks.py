"""Poisoning attacks: exact shares, labels and eps balls, triggers, bad parameters, reproducibility."""

import numpy as np
import pytest

from tests.engine.poisoning_helpers import SHAPE, attack_specs, context, digits_split
from worker.engine.poisoning.attacks.registry import POISONING_ATTACKS, build_attack
from worker.engine.poisoning.attacks.triggers import PatchTrigger
from worker.engine.poisoning.data import TargetSample

RANGE = (0.0, 1.0)


def _build(entry):
    """The engine attack of a params.attacks entry and its rates."""
    attack = build_attack(attack_specs([entry])[0])
    return attack, attack.rates


@pytest.fixture(scope="module")
def train():
    return digits_split()[0]


def _poison(spec, train, surrogate=None, pattern=None, rate_index=0, seed=0):
    attack, rates = _build(spec)
    attack.check(SHAPE, 10, RANGE, pattern)
    ctx = context(train, surrogate, seed=seed, pattern=pattern)
    return attack, attack.poison(ctx, rates[rate_index], key=rate_index), rates[rate_index]


def _changed(train, poisoned):
    x_changed = (poisoned.x != train.x).reshape(len(train.x), -1).any(axis=1)
    return np.flatnonzero(x_changed | (poisoned.y != train.y))


@pytest.mark.parametrize(
    "spec, base",
    [
        ({"name": "label_flip", "mode": "random", "rate": [0.1]}, 1500),
        (
            {"name": "label_flip", "mode": "targeted", "source_class": 3, "target_class": 8, "rate": [0.05]},
            1500,
        ),
        ({"name": "badnets", "rate": [0.05]}, 1500),
        ({"name": "badnets", "target": "all_to_all", "rate": [0.02]}, 1500),
        ({"name": "blended", "alpha": 0.2, "rate": [0.05]}, 1500),
    ],
)
def test_dirty_label_attacks_poison_exactly_the_share(train, spec, base):
    attack, poisoned, rate = _poison(spec, train)
    expected = int(round(rate * base))
    assert poisoned.n_poisoned == expected == len(np.unique(poisoned.indices))
    np.testing.assert_array_equal(_changed(train, poisoned), poisoned.indices)
    assert poisoned.x.min() >= 0.0 and poisoned.x.max() <= 1.0
    flipped = poisoned.y[poisoned.indices]
    original = train.y[poisoned.indices]
    if spec["name"] == "badnets" and spec.get("target") == "all_to_all":
        np.testing.assert_array_equal(flipped, (original + 1) % 10)
    elif spec["name"] in ("badnets", "blended"):
        assert (flipped == 0).all() and (original != 0).all()
    elif spec.get("mode") == "targeted":
        assert (original == 3).all() and (flipped == 8).all()
    else:
        assert (flipped != original).all()


def test_badnets_stamps_the_patch_and_nothing_else(train):
    _, poisoned, _ = _poison(
        {"name": "badnets", "trigger": {"size": 3, "location": "top_left"}, "rate": [0.02]}, train
    )
    stamped = poisoned.x[poisoned.indices]
    assert (stamped[:, :, :3, :3] == 1.0).all()
    outside = np.ones(SHAPE, dtype=bool)
    outside[:, :3, :3] = False
    np.testing.assert_array_equal(stamped[:, outside], train.x[poisoned.indices][:, outside])


def test_blended_mixes_at_alpha(train):
    attack, poisoned, _ = _poison({"name": "blended", "alpha": 0.3, "test_alpha": 0.5, "rate": [0.02]}, train)
    pattern = attack.train_trigger().pattern
    np.testing.assert_allclose(
        poisoned.x[poisoned.indices], 0.7 * train.x[poisoned.indices] + 0.3 * pattern, atol=1e-6
    )
    assert np.allclose(attack.test_trigger().mask, 0.5)


def test_uploaded_pattern_is_used_and_checked(train):
    pattern = np.random.default_rng(3).uniform(0, 1, SHAPE).astype(np.float32)
    attack, poisoned, _ = _poison(
        {"name": "blended", "pattern": "uploaded", "rate": [0.02]}, train, pattern=pattern
    )
    np.testing.assert_allclose(attack.train_trigger().pattern, pattern)
    for bad in (
        np.zeros((1, 7, 7), np.float32),
        np.full(SHAPE, 2.0, np.float32),
        np.full(SHAPE, np.nan, np.float32),
    ):
        with pytest.raises(ValueError):
            _build({"name": "blended", "pattern": "uploaded", "rate": [0.05]})[0].check(SHAPE, 10, RANGE, bad)
    with pytest.raises(ValueError, match="needs an uploaded pattern"):
        _build({"name": "blended", "pattern": "uploaded", "rate": [0.05]})[0].check(SHAPE, 10, RANGE, None)


def test_nearest_flip_uses_the_surrogates_runner_up(train, small_cnn):
    import torch

    _, poisoned, _ = _poison(
        {"name": "label_flip", "mode": "nearest", "rate": [0.1]}, train, surrogate=small_cnn
    )
    with torch.no_grad():
        logits = small_cnn(torch.as_tensor(train.x[poisoned.indices]))
    logits[torch.arange(len(logits)), torch.as_tensor(train.y[poisoned.indices])] = -float("inf")
    np.testing.assert_array_equal(poisoned.y[poisoned.indices], logits.argmax(1).numpy())


def test_label_consistent_keeps_labels_and_stays_in_eps(train, small_cnn):
    attack, poisoned, rate = _poison(
        {"name": "label_consistent", "target_class": 2, "eps": 0.1, "steps": 5, "rate": [0.4]},
        train,
        small_cnn,
    )
    assert poisoned.n_poisoned == int(round(rate * (train.y == 2).sum()))
    np.testing.assert_array_equal(poisoned.y, train.y)
    assert (train.y[poisoned.indices] == 2).all()
    np.testing.assert_array_equal(_changed(train, poisoned), poisoned.indices)
    free = attack.train_trigger().support
    delta = np.abs(poisoned.x - train.x)[poisoned.indices]
    assert delta[:, ~free].max() <= 0.1 + 1e-6 and delta[:, ~free].max() > 0.05
    assert (poisoned.x[poisoned.indices][:, free] == 1.0).all()


@pytest.mark.parametrize("name", ["feature_collision", "gradient_matching"])
def test_targeted_clean_label_poisons(train, small_cnn, held_out, name):
    attack, rates = _build({"name": name, "eps": 0.05, "steps": 8, "rate": [0.01]})
    attack.check(SHAPE, 10, RANGE)
    target = TargetSample(
        index=0, x=held_out[0][0], label=int(held_out[1][0]), intended=(int(held_out[1][0]) + 1) % 10
    )
    poisoned = attack.poison_target(context(train, small_cnn), rates[0], target, key=0)
    assert poisoned.n_poisoned == 15
    np.testing.assert_array_equal(poisoned.y, train.y)
    assert (train.y[poisoned.indices] == target.intended).all()
    delta = np.abs(poisoned.x - train.x)
    assert delta.max() <= 0.05 + 1e-6 and delta[poisoned.indices].max() > 0.01
    assert poisoned.x.min() >= 0 and poisoned.x.max() <= 1
    assert set(_changed(train, poisoned)) <= set(poisoned.indices)


def test_feature_collision_pulls_poisons_towards_the_target(train, small_cnn, held_out):
    import torch

    from worker.engine.poisoning.attacks.surrogate_features import penultimate

    attack, rates = _build({"name": "feature_collision", "eps": 0.1, "steps": 60, "rate": [0.01]})
    target = TargetSample(
        index=0, x=held_out[0][0], label=int(held_out[1][0]), intended=(int(held_out[1][0]) + 1) % 10
    )
    poisoned = attack.poison_target(context(train, small_cnn), rates[0], target, key=0)
    features, _ = penultimate(small_cnn)
    with torch.no_grad():
        goal = features(torch.as_tensor(target.x[None]))
        before = (features(torch.as_tensor(train.x[poisoned.indices])) - goal).norm(dim=1)
        after = (features(torch.as_tensor(poisoned.x[poisoned.indices])) - goal).norm(dim=1)
    assert after.mean() < 0.8 * before.mean()


def test_same_seed_same_poisons_other_seed_other_poisons(train):
    spec = {"name": "badnets", "rate": [0.05]}
    _, first, _ = _poison(spec, train, seed=4)
    _, again, _ = _poison(spec, train, seed=4)
    _, other, _ = _poison(spec, train, seed=5)
    np.testing.assert_array_equal(first.indices, again.indices)
    np.testing.assert_array_equal(first.x, again.x)
    assert not np.array_equal(first.indices, other.indices)


@pytest.mark.parametrize(
    "spec, message",
    [
        ({"name": "badnets", "rate": [0.0]}, "greater than 0"),
        ({"name": "badnets", "rate": [1.0]}, "less than 1"),
        ({"name": "badnets", "rate": [0.0001]}, "poisons no sample"),
        ({"name": "label_flip", "mode": "random", "rate": [0.95]}, "clean"),
        (
            {"name": "label_flip", "mode": "targeted", "source_class": 1, "target_class": 2, "rate": [0.2]},
            "only",
        ),
        ({"name": "label_consistent", "rate": [0.95]}, "clean"),
        ({"name": "badnets", "target_class": 10, "rate": [0.05]}, "outside the model's classes"),
        ({"name": "badnets", "trigger": {"size": 9}, "rate": [0.05]}, "larger than"),
        ({"name": "badnets", "trigger": {"size": 3, "row": 6, "col": 0}, "rate": [0.05]}, "outside"),
        ({"name": "badnets", "trigger": {"value": 1.5}, "rate": [0.05]}, "outside the input range"),
        ({"name": "badnets", "trigger": {"shape": 2}, "rate": [0.05]}, "Extra inputs"),
        ({"name": "badnets", "colour": 1, "rate": [0.05]}, "Extra inputs"),
        ({"name": "gradient_matching", "intended_class": -1, "rate": [0.01]}, "greater than or equal"),
        ({"name": "nope", "rate": [0.1]}, "does not match"),
    ],
)
def test_bad_parameters_are_refused(train, spec, message):
    with pytest.raises(ValueError, match=message):
        attack, rates = _build(spec)
        attack.check(SHAPE, 10, RANGE)
        for rate in rates:
            attack.count(train.y, rate)


def test_patch_trigger_locations():
    assert PatchTrigger(size=2).origin(8, 8) == (6, 6)
    assert PatchTrigger(size=2, location="top_left").origin(8, 8) == (0, 0)
    assert PatchTrigger(size=2, location="center").origin(8, 8) == (3, 3)
    assert PatchTrigger(size=2, row=1, col=5).origin(8, 8) == (1, 5)


def test_every_attack_documents_paper_and_threat_model():
    for spec_type, cls in POISONING_ATTACKS.items():
        assert cls.spec_type is spec_type and cls.paper and cls.threat_model
        assert "Paper" in (cls.__doc__ or "") and "Threat model" in (cls.__doc__ or "")
