"""Square's memo of rejected proposals (AutoAttack standard): the same search with fewer forward passes."""

import numpy as np
import pytest
import torch
from torch import nn

from tests.engine.attack_helpers import clean_correct, predict, seeded
from worker.engine.evasion.attacks.autoattack_fast import PassCounter
from worker.engine.evasion.attacks.square import SquareAttack
from worker.engine.evasion.attacks.square_memo import RejectedProposals


@pytest.fixture(scope="module")
def samples(
    small_cnn: nn.Module, held_out: tuple[np.ndarray, np.ndarray]
) -> tuple[torch.Tensor, torch.Tensor]:
    """About 40 held-out digits the CNN classifies correctly."""
    return clean_correct(small_cnn, held_out, 45)


def test_memo_gives_the_same_search_with_fewer_forward_passes(small_cnn, samples):
    """Same candidates and queries per sample with and without the memo; the memo skips real passes."""
    x, y = samples
    runs = []
    for skip in (False, True):
        attack = SquareAttack.configured(norm="linf", queries=400)
        attack.skip_repeats = skip
        counter = PassCounter(small_cnn)
        runs.append((attack.search(counter, x, y, eps=0.1, generator=seeded(2)), counter.count))
    (plain, plain_passes), (memo, memo_passes) = runs
    assert torch.equal(plain.x_adv, memo.x_adv)
    assert plain.queries is not None and memo.queries is not None
    assert torch.equal(plain.queries, memo.queries)
    broken = predict(small_cnn, memo.x_adv) != y
    assert broken.any() and not broken.all()  # some stand all 400 queries: that is where repeats occur
    assert plain_passes == int(plain.queries.sum())
    assert memo_passes < 0.8 * plain_passes  # 0.70 here: the one-pixel windows of the last 90% repeat


def test_memo_marks_forgets_and_resets_on_a_new_side():
    """A key is fresh once per best point; forgetting a sample or changing the side makes it fresh again."""
    memo = RejectedProposals(3, 1, 8, 8, torch.device("cpu"))
    active = torch.tensor([0, 2])
    rows, cols, signs = torch.tensor([[1], [1]]), torch.tensor([[2], [2]]), torch.tensor([1.0, -1.0])
    assert memo.fresh(active, 1, rows, cols, signs).tolist() == [True, True]
    assert memo.fresh(active, 1, rows, cols, signs).tolist() == [False, False]
    assert memo.fresh(active, 1, rows, cols, -signs).tolist() == [True, True]  # other signs, other key
    memo.forget(torch.tensor([2]))
    assert memo.fresh(active, 1, rows, cols, signs).tolist() == [False, True]
    assert memo.fresh(active, 2, rows, cols, signs).tolist() == [True, True]
    too_many_channels = RejectedProposals(3, 8, 8, 8, torch.device("cpu"))
    assert too_many_channels.fresh(active, 1, rows, cols, torch.ones(2, 8)) is None
