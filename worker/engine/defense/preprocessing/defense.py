"""The preprocessing defense: transforms in front of the model, attacked naively and with BPDA and EOT."""

from typing import Any

import numpy as np
from torch import nn

from app.schemas.defense import PreprocessingParams
from app.schemas.evasion import AttackParamsBase, AutoAttackParams
from worker.engine.defense.base import Defense, DefenseContext, Hardened, Inspection
from worker.engine.defense.evaluation import AttackRun, Classify
from worker.engine.defense.preprocessing.pipeline import (
    DefendedPipeline,
    build_transforms,
    defended_classifier,
)
from worker.engine.defense.preprocessing.transforms import Transform


def has_own_eot(spec: AttackParamsBase) -> bool:
    """Whether an attack spec averages gradients over draws itself (AutoAttack rand, APGD with eot_iter)."""
    if isinstance(spec, AutoAttackParams):
        return spec.version == "rand"
    return int(getattr(spec, "eot_iter", 1)) > 1


def without_eot(spec: AttackParamsBase) -> AttackParamsBase:
    """The spec as a defense-unaware attacker runs it: one draw per gradient."""
    return spec.model_copy(update={"eot_iter": 1}) if "eot_iter" in type(spec).model_fields else spec


def pipeline_runs(
    final: nn.Module,
    transforms: list[Transform[Any]],
    attacks: list[AttackParamsBase],
    *,
    eot_draws: int,
    input_range: tuple[float, float],
    seed: int,
) -> list[AttackRun]:
    """Naive (autograd's gradient, one draw) and adaptive (BPDA, EOT) runs on a model behind transforms."""
    randomized = any(t.randomized for t in transforms)
    exact = all(t.differentiable for t in transforms)

    def pipeline(gradient: str, draws: int) -> DefendedPipeline:
        return DefendedPipeline(
            final,
            transforms,
            input_range=input_range,
            gradient=gradient,  # type: ignore[arg-type]
            eot_draws=draws,
            seed=seed,
            fixed_draw=gradient == "naive",
        )

    bpda = (
        "exact gradients"
        if exact
        else "BPDA (identity backward for "
        + ", ".join(t.name for t in transforms if not t.differentiable)
        + ")"
    )
    runs = [
        AttackRun(
            "naive",
            "autograd's own gradient" + (" through one fixed random draw" if randomized else ""),
            pipeline("naive", 1),
            [without_eot(spec) for spec in attacks],
        )
    ]
    own = [spec for spec in attacks if has_own_eot(spec)]
    rest = [spec for spec in attacks if not has_own_eot(spec)]
    draws = eot_draws if randomized else 1
    if rest:
        label = bpda + (f" + EOT over {draws} draws" if draws > 1 else "")
        runs.append(AttackRun("adaptive", label, pipeline("bpda", draws), rest, sanity_runs=True))
    if own:
        runs.append(
            AttackRun(
                "adaptive", bpda + " + the attack's own EOT", pipeline("bpda", 1), own, sanity_runs=not rest
            )
        )
    return runs


class Preprocessing(Defense[PreprocessingParams]):
    """Input transforms in front of the model, applied in order at every prediction.

    Papers: JPEG compression (Das et al. 2017), feature squeezing: bit depth and median filtering (Xu et al.
    2018), Gaussian denoising, random resizing and padding (Xie et al. 2018), Gaussian noise; all broken by
    adaptive attacks (Athalye, Carlini and Wagner, ICML 2018): BPDA for the non-differentiable ones and
    EOT for the random ones, which is how this defense is evaluated.

    Threat model of the evaluation: the evaluation's norm and eps on the input before the transforms.

    Parameters: transforms, an ordered list of {"name": ..., parameters} (jpeg quality; median size;
    gaussian sigma; bit_depth bits; random_resize_pad min_scale; gaussian_noise sigma); eot_draws, the
    random draws the adaptive attacks average over (default 10).
    """

    spec_type = PreprocessingParams

    def built(self, input_range: tuple[float, float]) -> list[Transform[Any]]:
        """The transform objects."""
        return build_transforms(self.spec.transforms, None, input_range)

    def validate(self, sample_shape: tuple[int, ...], input_range: tuple[float, float]) -> None:
        """Every transform must fit the input."""
        build_transforms(self.spec.transforms, sample_shape, input_range)

    def spec_list(self) -> list[dict[str, Any]]:
        """The defended model's preprocessing record, defaults resolved."""
        return [transform.model_dump(mode="json") for transform in self.spec.transforms]

    def harden(self, context: DefenseContext) -> Hardened:
        """Nothing to train: the defended model is the base model behind the transforms."""
        return Hardened(model=context.uploaded(), trained=False, preprocessing=self.spec_list())

    def deployed(self, classify: Classify, context: DefenseContext, stream: int | None = None) -> Classify:
        """The transforms (one draw) in front of the base classifier."""
        return defended_classifier(
            classify, self.spec.transforms, input_range=context.input_range, seed=context.seed, stream=stream
        )

    def runs(
        self, final: nn.Module, attacks: list[AttackParamsBase], context: DefenseContext
    ) -> list[AttackRun]:
        """Naive, and BPDA + EOT."""
        return pipeline_runs(
            final,
            self.built(context.input_range),
            attacks,
            eot_draws=self.spec.eot_draws,
            input_range=context.input_range,
            seed=context.seed,
        )

    def inspect(self, final: nn.Module, x: np.ndarray, y: np.ndarray, context: DefenseContext) -> Inspection:
        """The transforms as run."""
        return Inspection({"preprocessing": self.spec_list()})
