"""The adaptive policy's gradient bandit: batched, numerically stable, and it learns."""

import numpy as np

from worker.engine.extraction.strategies.bandit import GradientBandit, certainty, stable_softmax


def test_softmax_of_huge_preferences_stays_finite():
    preferences = np.array([1e6, 1e6 - 1.0, -1e6, 5e5])
    pi = stable_softmax(preferences, np.ones(4, dtype=bool))
    assert np.isfinite(pi).all() and abs(pi.sum() - 1) < 1e-12 and pi[0] > pi[1] > 0
    with np.errstate(over="ignore", invalid="ignore"):
        naive = np.exp(preferences) / np.exp(preferences).sum()  # the reference library's form
    assert not np.isfinite(naive).all()


def test_exhausted_actions_get_no_probability():
    pi = stable_softmax(np.zeros(3), np.array([True, False, True]))
    np.testing.assert_allclose(pi, [0.5, 0.0, 0.5])


def test_bandit_learns_the_rewarding_action_with_batched_updates():
    rng = np.random.default_rng(0)
    bandit = GradientBandit(n_actions=5, reward="cert", learning_rate=0.5)
    available = np.ones(5, dtype=bool)
    for _ in range(60):
        pi = bandit.policy(available)
        actions = rng.choice(5, size=32, p=pi)
        rewards = (actions == 3).astype(float) + rng.normal(0, 0.1, size=32)
        bandit.update(actions, rewards, pi)
    assert bandit.policy(available)[3] > 0.9


def test_rewards_are_finite_for_one_hot_and_extreme_answers():
    for reward in ("cert", "div", "loss", "all"):
        bandit = GradientBandit(n_actions=2, reward=reward, learning_rate=0.1)
        labels = np.array([0, 1, 1, 2])
        surrogate = np.array([[1.0, 0, 0], [0, 1.0, 0], [1.0, 0, 0], [0, 0, 1.0]])
        for _ in range(3):
            values = bandit.rewards(labels, surrogate, 3)
            assert values.shape == (4,) and np.isfinite(values).all()
            if reward in ("cert", "div"):  # these need no online surrogate
                assert np.isfinite(GradientBandit(2, reward, 0.1).rewards(labels, None, 3)).all()
    np.testing.assert_allclose(certainty(np.array([[0.7, 0.2, 0.1], [0.4, 0.4, 0.2]])), [0.5, 0.0])


def test_loss_reward_is_highest_where_the_surrogate_is_wrong():
    bandit = GradientBandit(n_actions=1, reward="loss", learning_rate=0.1)
    answers = np.array([[0.9, 0.1], [0.9, 0.1]], dtype=np.float32)
    surrogate = np.array([[0.9, 0.1], [0.0, 1.0]])
    values = bandit.rewards(answers, surrogate, 2)
    assert values[1] > values[0] + 5
