"""Defense specs: the registry, closed parameters, limits and inputs that do not fit."""

import numpy as np
import pytest

from tests.engine.defense_helpers import run
from worker.engine.defense.registry import DEFENSES, defense_class
from worker.engine.defense.runner import default_attacks
from worker.engine.defense.spec import SpecError


def test_registry_names_every_defense_and_its_facts():
    assert set(DEFENSES) == {"adversarial_training", "distillation", "preprocessing", "randomized_smoothing"}
    assert [name for name, cls in DEFENSES.items() if not cls.trains] == ["preprocessing"]
    with pytest.raises(SpecError, match="unknown defense"):
        defense_class("feature_squeezing")


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"name": "adversarial_training"}, "missing parameters eps"),
        ({"name": "adversarial_training", "eps": 0.1, "gamma": 2}, "unknown parameters gamma"),
        ({"name": "adversarial_training", "eps": 0.1, "method": "free"}, "unknown method"),
        ({"name": "adversarial_training", "eps": 0.1, "steps": 101}, "steps must lie in"),
        ({"name": "adversarial_training", "eps": 0.1, "epochs": 201}, "epochs must lie in"),
        ({"name": "adversarial_training", "eps": 0.1, "init": "imagenet"}, "init must be"),
        ({"name": "distillation", "temperature": 0}, "temperature must lie in"),
        ({"name": "distillation", "temperature": -5}, "temperature must lie in"),
        ({"name": "distillation", "teacher": "oracle"}, "teacher must be"),
        ({"name": "randomized_smoothing"}, "missing parameters sigma"),
        ({"name": "randomized_smoothing", "sigma": 0.25, "n": 5}, "n must lie in"),
        ({"name": "randomized_smoothing", "sigma": 0.25, "alpha": 0.9}, "alpha must lie in"),
        ({"name": "preprocessing", "transforms": [{"name": "sharpen"}]}, "unknown transform"),
        ({"name": "preprocessing", "transforms": []}, "at least one transform"),
    ],
)
def test_bad_specs_are_refused(spec, message):
    with pytest.raises(SpecError, match=message):
        defense_class(spec["name"]).from_spec(spec)


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
        from worker.engine.defense.runner import run_defense

        run_defense(spec, None, undefended=small_cnn, x=x, y=np.zeros(4, dtype=np.int64), num_classes=10)


def test_training_set_that_does_not_fit_and_unknown_evaluation_keys_are_refused(small_cnn):
    from worker.engine.defense.runner import run_defense

    x, y = np.zeros((4, 1, 8, 8), dtype=np.float32), np.zeros(4, dtype=np.int64)
    spec = {"name": "adversarial_training", "eps": 0.1, "epochs": 1}
    with pytest.raises(SpecError, match="training set has samples of shape"):
        run_defense(
            spec,
            None,
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
            None,
            undefended=small_cnn,
            x=x,
            y=y,
            num_classes=10,
            trainable=lambda init: small_cnn,
            train=(x, np.full(4, 12)),
        )
    with pytest.raises(SpecError, match="needs a training set"):
        run_defense(spec, None, undefended=small_cnn, x=x, y=y, num_classes=10)
    with pytest.raises(SpecError, match="unknown parameters budget"):
        run(spec, {"budget": 3}, small_cnn)
    with pytest.raises(SpecError, match="unknown attack"):
        run(spec, {"attacks": [{"name": "patch", "eps": [0.1]}]}, small_cnn)


def test_default_evaluation_is_autoattack_standard_or_rand_for_random_defenses():
    assert default_attacks("linf", [0.1], False) == [
        {"name": "autoattack", "norm": "linf", "eps": [0.1], "version": "standard"}
    ]
    assert default_attacks("l2", [0.5], True)[0]["version"] == "rand"
    assert (
        defense_class("randomized_smoothing")
        .from_spec({"name": "randomized_smoothing", "sigma": 0.25})
        .randomized
    )
    noisy = {
        "name": "preprocessing",
        "transforms": [{"name": "jpeg"}, {"name": "gaussian_noise", "sigma": 0.1}],
    }
    assert defense_class("preprocessing").from_spec(noisy).randomized
    assert (
        not defense_class("preprocessing")
        .from_spec({"name": "preprocessing", "transforms": [{"name": "jpeg"}]})
        .randomized
    )


def test_api_schemas_name_the_engine_defenses_transforms_and_their_facts():
    import dataclasses
    import typing

    from app.schemas.defense import DefenseSpec, PreprocessingParams, TransformParams
    from worker.engine.defense.preprocessing.transforms import TRANSFORMS

    def by_name(union: object) -> dict[str, type]:
        members = typing.get_args(typing.get_args(union)[0])
        return {typing.get_args(m.model_fields["name"].annotation)[0]: m for m in members}

    defenses, transforms = by_name(DefenseSpec), by_name(TransformParams)
    # backdoor_repair runs its own engine (worker.engine.defense.repair), checked in the test below.
    assert set(defenses) == set(DEFENSES) | {"backdoor_repair"} and set(transforms) == set(TRANSFORMS)
    for name, schema in defenses.items():
        if name == "backdoor_repair":
            continue
        engine = {f.name for f in dataclasses.fields(DEFENSES[name])}  # type: ignore[arg-type]
        assert set(schema.model_fields) - {"name"} == engine, name
        assert schema.trains == DEFENSES[name].trains
    for name, schema in transforms.items():
        engine = TRANSFORMS[name]
        assert set(schema.model_fields) - {"name"} == {f.name for f in dataclasses.fields(engine)}, name
        for fact in ("needs_image", "channels", "randomized", "differentiable"):
            assert getattr(schema, fact) == getattr(engine, fact), (name, fact)
    assert PreprocessingParams.trains is False


def test_repair_schema_names_the_engine_repairs_and_their_parameters():
    import dataclasses
    import typing

    from pydantic import ValidationError

    from app.schemas.defense import DefenseParams
    from app.schemas.repair import METHOD_PARAMS, BackdoorRepairParams
    from worker.engine.defense.repair.registry import REPAIRS

    methods = set(typing.get_args(BackdoorRepairParams.model_fields["method"].annotation))
    assert methods == set(REPAIRS) == set(METHOD_PARAMS)
    for name, cls in REPAIRS.items():
        assert METHOD_PARAMS[name] == {f.name for f in dataclasses.fields(cls)}, name  # type: ignore[arg-type]
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
