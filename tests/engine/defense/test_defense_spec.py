"""Defense specs: the registry keyed by spec type, closed typed parameters, limits, inputs that do not fit."""

import typing

import numpy as np
import pytest
from pydantic import ValidationError

from app.schemas.defense import DefenseEvaluation, DefenseParams, EvaluatedDefenseSpec, evaluation_attacks
from app.schemas.defense_transforms import TransformParams
from tests.engine.defense_helpers import evaluation_of, pgd, run, typed
from worker.engine.defense.preprocessing.transforms import TRANSFORMS, build_transform
from worker.engine.defense.registry import DEFENSES, build_defense
from worker.engine.defense.runner import run_defense
from worker.engine.defense.spec import SpecError


def test_every_typed_defense_and_transform_has_its_engine_class():
    assert set(DEFENSES) == set(typing.get_args(EvaluatedDefenseSpec))
    assert set(TRANSFORMS) == set(typing.get_args(typing.get_args(TransformParams)[0]))
    spec = typed({"name": "randomized_smoothing", "sigma": 0.25})
    defense = build_defense(spec)
    assert type(defense).spec_type is type(spec) and defense.spec is spec
    assert [cls.__name__ for cls in DEFENSES.values() if not cls.spec_type.trains] == ["Preprocessing"]
    jpeg = typed({"name": "preprocessing", "transforms": [{"name": "jpeg"}]}).transforms[0]  # type: ignore[union-attr]
    assert not build_transform(jpeg).differentiable and build_transform(jpeg).name == "jpeg"


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"name": "adversarial_training"}, "eps"),
        ({"name": "adversarial_training", "eps": 0.1, "gamma": 2}, "gamma"),
        ({"name": "adversarial_training", "eps": 0.1, "method": "free"}, "method"),
        ({"name": "adversarial_training", "eps": 0.1, "steps": 101}, "steps"),
        ({"name": "adversarial_training", "eps": 0.1, "epochs": 201}, "epochs"),
        ({"name": "adversarial_training", "eps": 0.1, "init": "imagenet"}, "init"),
        ({"name": "distillation", "temperature": 0}, "temperature"),
        ({"name": "distillation", "teacher": "oracle"}, "teacher"),
        ({"name": "randomized_smoothing"}, "sigma"),
        ({"name": "randomized_smoothing", "sigma": 0.25, "n": 5}, "n"),
        ({"name": "randomized_smoothing", "sigma": 0.25, "alpha": 0.9}, "alpha"),
        ({"name": "preprocessing", "transforms": [{"name": "sharpen"}]}, "sharpen"),
        ({"name": "preprocessing", "transforms": []}, "transforms"),
        ({"name": "feature_squeezing"}, "feature_squeezing"),
    ],
)
def test_bad_specs_are_refused_by_the_typed_spec(spec, message):
    with pytest.raises(ValidationError, match=message):
        typed(spec)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"name": "adversarial_training", "eps": 1.5}, r"eps must lie in \(0, 1\]"),
        ({"name": "randomized_smoothing", "sigma": 2.0}, r"sigma must lie in \(0, 1\]"),
        ({"name": "preprocessing", "transforms": [{"name": "jpeg"}]}, "needs 1 or 3 channels"),
    ],
)
def test_budgets_and_transforms_are_checked_against_the_model_input(small_cnn, spec, message):
    x = (
        np.zeros((4, 2, 8, 8), dtype=np.float32)
        if spec["name"] == "preprocessing"
        else np.zeros((4, 1, 8, 8), dtype=np.float32)
    )
    with pytest.raises(SpecError, match=message):
        run_defense(
            typed(spec),
            evaluation_of(None),
            undefended=small_cnn,
            x=x,
            y=np.zeros(4, dtype=np.int64),
            num_classes=10,
        )


def test_training_set_that_does_not_fit_and_bad_evaluation_blocks_are_refused(small_cnn):
    x, y = np.zeros((4, 1, 8, 8), dtype=np.float32), np.zeros(4, dtype=np.int64)
    spec = typed({"name": "adversarial_training", "eps": 0.1, "epochs": 1})
    evaluation = evaluation_of(None)
    with pytest.raises(SpecError, match="training set has samples of shape"):
        run_defense(
            spec,
            evaluation,
            undefended=small_cnn,
            x=x,
            y=y,
            num_classes=10,
            trainable=lambda init: small_cnn,
            train=(np.zeros((4, 64), dtype=np.float32), y),
        )
    with pytest.raises(SpecError, match="labels in"):
        run_defense(
            spec,
            evaluation,
            undefended=small_cnn,
            x=x,
            y=y,
            num_classes=10,
            trainable=lambda init: small_cnn,
            train=(x, np.full(4, 12)),
        )
    with pytest.raises(SpecError, match="needs a training set"):
        run_defense(spec, evaluation, undefended=small_cnn, x=x, y=y, num_classes=10)
    with pytest.raises(ValidationError, match="budget"):
        evaluation_of({"budget": 3})
    with pytest.raises(ValidationError, match="not an eps-bounded attack"):
        run(
            {"name": "adversarial_training", "eps": 0.1},
            {"attacks": [{"name": "patch", "patch_scales": [0.2]}]},
            small_cnn,
        )


def test_default_evaluation_is_autoattack_standard_or_rand_for_random_defenses():
    def default(defense: dict[str, object]) -> dict[str, object]:
        (attack,) = evaluation_attacks(typed(defense), DefenseEvaluation(), (0.0, 1.0))
        return attack.model_dump(mode="json", exclude_unset=True)

    assert default({"name": "adversarial_training", "eps": 0.1}) == {
        "name": "autoattack",
        "norm": "linf",
        "eps": [0.1],
        "version": "standard",
    }
    assert default({"name": "randomized_smoothing", "sigma": 0.25}) == {
        "name": "autoattack",
        "norm": "l2",
        "eps": [0.25, 0.5],
        "version": "rand",
    }
    noisy = [{"name": "jpeg"}, {"name": "gaussian_noise", "sigma": 0.1}]
    assert default({"name": "preprocessing", "transforms": noisy})["version"] == "rand"
    assert default({"name": "preprocessing", "transforms": [{"name": "jpeg"}]})["version"] == "standard"
    assert default({"name": "distillation"})["eps"] == [0.1, 0.2]


def test_repair_schema_names_the_engine_repairs_and_their_parameters():
    from pydantic import ValidationError

    from app.schemas.repair import METHOD_PARAMS, BackdoorRepairParams
    from app.schemas.repair_methods import METHOD_SPECS
    from worker.engine.defense.repair.registry import REPAIRS, build_repair

    methods = set(typing.get_args(BackdoorRepairParams.model_fields["method"].annotation))
    assert methods == set(METHOD_SPECS) == set(METHOD_PARAMS)
    # Every method spec the API accepts builds its engine class (the registry is complete).
    for name, spec_type in METHOD_SPECS.items():
        assert type(build_repair(spec_type())) is REPAIRS[spec_type], name
    # Every method parameter is a field of the schema, and the schema has no other than its own.
    own = {"name", "method", "trigger", "target_class", "scan_steps"}
    assert set(BackdoorRepairParams.model_fields) == own | set().union(*METHOD_PARAMS.values())
    assert BackdoorRepairParams.trains is True

    def params(defense: dict[str, object], **more: object) -> DefenseParams:
        return DefenseParams.model_validate(
            {"train_dataset_id": "builtin:digits-train", "defense": defense, **more}
        )

    ok = params({"name": "backdoor_repair", "method": "anp", "eps": 0.2, "iterations": 50})
    assert isinstance(ok.defense, BackdoorRepairParams)
    assert ok.defense.method_params() == {"eps": 0.2, "iterations": 50}
    trigger = {"name": "badnets", "size": 2, "location": "bottom_right"}
    with_trigger = params(
        {"name": "backdoor_repair", "method": "fine_tuning", "trigger": trigger, "target_class": 0}
    )
    assert with_trigger.defense.trigger is not None  # type: ignore[union-attr]
    for bad, message in (
        ({"name": "backdoor_repair", "method": "fine_tuning", "eps": 0.1}, "takes no eps"),
        ({"name": "backdoor_repair", "method": "anp", "stamp_share": 0.2}, "takes no stamp_share"),
        ({"name": "backdoor_repair", "method": "fine_tuning", "trigger": trigger}, "target_class together"),
        ({"name": "backdoor_repair", "method": "prune_all"}, "method"),
        ({"name": "backdoor_repair", "method": "anp", "unknown": 1}, "unknown"),
    ):
        with pytest.raises(ValidationError, match=message):
            params(bad)
    with pytest.raises(ValidationError, match="leave out params.evaluation"):
        params({"name": "backdoor_repair", "method": "anp"}, evaluation={"max_samples": 10})
    with pytest.raises(ValidationError, match="train_dataset_id"):
        DefenseParams.model_validate({"defense": {"name": "backdoor_repair", "method": "anp"}})


def test_the_sanity_runs_run_only_when_the_evaluation_asks_for_them(small_cnn):
    def defended_checks(sanity_runs: bool) -> set[str]:
        evaluation = {**pgd([0.1], steps=5), "max_samples": 30, "sanity_runs": sanity_runs}
        report = run(
            {"name": "preprocessing", "transforms": [{"name": "bit_depth"}]}, evaluation, small_cnn
        ).report
        return {c["name"] for c in report["checks"] if c["detail"].startswith("[defended")}

    cheap = {"robust_below_clean", "perturbation_within_budget"}
    assert defended_checks(False) == cheap
    assert defended_checks(True) > cheap | {"unbounded_attack_breaks_everything"}
