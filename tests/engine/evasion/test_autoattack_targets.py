"""AutoAttack standard's targeted components: the batched (sample, target) run against the target loop."""

import numpy as np
import pytest
import torch
from torch import nn

from tests.engine.attack_helpers import clean_correct, predict, seeded
from worker.engine.evasion.attacks.autoattack import FAB_SETTINGS, RHO
from worker.engine.evasion.attacks.autoattack_targets import ranked_targets, targeted_component
from worker.engine.evasion.attacks.norms import perturbation_norm

EPS = 0.1
TOL = 1e-5


@pytest.mark.parametrize("component", ["apgd-t", "fab-t"])
def test_batched_targets_break_the_same_samples_as_the_loop(
    small_cnn: nn.Module, held_out: tuple[np.ndarray, np.ndarray], component: str
) -> None:
    """Per sample, on a trained CNN: broken by the batch exactly when broken by the loop over targets."""
    x, y = clean_correct(small_cnn, held_out, 60)
    with torch.no_grad():
        targets = ranked_targets(small_cnn(x), 9)
    broken = {}
    for batched in (False, True):
        apgd = {
            "eps": EPS, "norm": "linf", "steps": 15, "rho": RHO, "eot_iter": 1,
            "input_range": (0.0, 1.0), "generator": seeded(5), "stop_when_stuck": batched,
        }  # fmt: skip
        fab = FAB_SETTINGS | {"shrink": batched}
        candidate = targeted_component(
            component, small_cnn, x, y, targets, apgd=apgd, fab=fab, batched=batched
        )
        assert perturbation_norm(candidate - x, "linf").max() <= EPS + TOL
        changed = (candidate != x).flatten(1).any(dim=1)
        broken[batched] = predict(small_cnn, candidate) != y
        # A candidate is x itself unless the component broke the sample.
        assert torch.equal(changed, broken[batched])
    assert broken[False].any() and not broken[False].all()
    assert torch.equal(broken[True], broken[False])


def test_ranked_targets_are_the_most_likely_other_classes() -> None:
    logits = torch.tensor([[0.1, 3.0, 2.0, -1.0], [5.0, 0.0, 1.0, 2.0]])
    assert ranked_targets(logits, 2).tolist() == [[2, 0], [3, 2]]
