"""Every figure of a defense evaluation is the deployed judge's, from inside the attack's verified call."""

import numpy as np
import torch

from app.schemas.evasion import PgdParams
from tests.engine.defense_helpers import digits_split
from worker.engine.defense.evaluation import AttackRun, EvaluationPlan, evaluate_defense, module_classifier
from worker.engine.progress import ProgressTracker

N = 40


def test_every_figure_is_the_deployed_judges_and_the_views_word_is_kept_apart(small_cnn, mlp):
    """The attack searches on the CNN; the deployed model is the MLP: the MLP decides what is attacked
    and every robust figure, the CNN's verdict is only attack_reported_robust_accuracy."""
    x, y = (array[:N] for array in digits_split()[1])
    cpu = torch.device("cpu")
    judge, view = module_classifier(mlp, cpu), module_classifier(small_cnn, cpu)
    spec = [PgdParams(name="pgd", eps=[0.1, 0.2], steps=3)]
    plan = EvaluationPlan(
        undefended=small_cnn,
        undefended_classify=view,
        undefended_black_box=None,
        runs=[AttackRun("adaptive", "the CNN", small_cnn, spec)],
        deployed=judge,
        attacks=spec,
        input_range=(0.0, 1.0),
        seed=1,
        device=cpu,
        batch_size=8,
        sanity_runs=False,
    )
    section, arrays = evaluate_defense(plan, x, y, ProgressTracker(1.0, None))
    (entry,) = section["defended"]["runs"][0]["attacks"]
    (found,) = (value for name, value in arrays.items() if name.startswith("defended_"))
    assert np.array_equal(found["attacked"], judge(x).argmax(1) == y)
    assert section["defended"]["clean_accuracy"] == float((judge(x).argmax(1) == y).mean())
    for position, row in enumerate(entry["results"]):
        x_adv = found["x_adv"][position]
        assert row["robust_accuracy"] == float((judge(x_adv).argmax(1) == y).mean())
        assert row["attack_reported_robust_accuracy"] == float((view(x_adv).argmax(1) == y).mean())
        broken = found["attacked"] & (judge(x_adv).argmax(1) != y)
        assert row["n_succeeded"] == int(broken.sum())
    assert any(row["robust_accuracy"] != row["attack_reported_robust_accuracy"] for row in entry["results"])
