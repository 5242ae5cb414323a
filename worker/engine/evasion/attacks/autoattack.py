"""AutoAttack (Croce & Hein, ICML 2020): an ensemble of parameter-free attacks, per-sample worst case."""

from typing import Any, Literal

import torch
from torch import Tensor, nn

from app.schemas.evasion import AutoAttackParams, SquareParams
from worker.engine.evasion.attacks.apgd import apgd_search
from worker.engine.evasion.attacks.autoattack_fast import (
    FAST_COMPONENTS,
    PassCounter,
    fast_targets,
    ranked_targeted_apgd,
)
from worker.engine.evasion.attacks.autoattack_targets import ranked_targets, targeted_component
from worker.engine.evasion.attacks.base import Attack
from worker.engine.evasion.attacks.channels_last import ChannelsLast
from worker.engine.evasion.attacks.dlr import (
    MIN_CLASSES_DLR,
    MIN_CLASSES_TARGETED_DLR,
    ce_objective,
    dlr_objective,
    misclassified,
)
from worker.engine.evasion.attacks.square import SquareAttack

AutoAttackVersion = Literal["standard", "rand", "fast"]
# Fixed settings of the reference's standard and rand versions.
RHO = 0.75
FAB_SETTINGS: dict[str, float] = {"alpha_max": 0.1, "eta": 1.05, "beta": 0.9}
SQUARE_P_INIT, SQUARE_RESTARTS = 0.8, 1


class AutoAttack(Attack):
    """AutoAttack: APGD-CE, APGD-T, FAB-T and Square, each on the samples the previous ones missed.

    Paper: Croce and Hein, "Reliable evaluation of adversarial robustness with an ensemble of diverse
    parameter-free attacks", ICML 2020 (reference implementation: fra31/auto-attack, autoattack.py).

    Threat model: white-box (input gradients; Square only queries outputs), untargeted, perturbation
    bounded by eps in linf or l2, every input inside the ball and the input range. A sample counts as
    broken as soon as one component finds an adversarial within eps, re-checked with a fresh
    forward pass; later components run only on the samples still classified correctly.

    Versions (the reference's settings; steps is 100 in both):
        standard: APGD-CE (no restarts), APGD-T (targeted DLR loss, one run per target class: the
            2nd, 3rd, ... most likely classes of the clean logits, n_target_classes of them capped at
            classes - 1), FAB-T (FAB with the target-versus-true-class linearisation, the same
            targets, eps-aware: restarts of radius eps / 2, success only within eps; one run each,
            alpha_max 0.1, eta 1.05, beta 0.9), and Square (5000 queries, p_init 0.8, one restart).
        rand (for randomised models): APGD-CE and APGD-DLR, each with EOT over eot_iter gradients.
        fast (the everyday evaluation; see autoattack_fast): APGD-CE, then targeted APGD-DLR on 4
            target classes (capped at n_target_classes): the clean logits' most likely other class
            and the 3 others MALT ranks closest, all targets of a sample in one batched run. No
            FAB-T, no Square. An evasion job compares it with the standard version on a random
            subset (the `fast_vs_standard` check).
    Standard does no work that cannot change which samples break: a sample leaves every component's
    batch once broken (FAB-T included), targeted runs go only to samples still standing, APGD
    (linf) drops a sample whose iterate reached an exact fixed point, and APGD-T and FAB-T run all
    (sample, target) pairs in one batch instead of looping over the targets, a sample's pairs leaving
    together once it is broken (see autoattack_targets: the same samples break, with the same random
    start per pair), and Square asks no query whose answer it already has (a linf proposal rejected
    at the same best point, see square_memo: the same search, without that forward pass). Every
    pass of a convolutional model runs on channels-last inputs (see channels_last: the same
    function, about 30% less CPU time per pass on 3 x 32 x 32 images).
    `accelerated=False` (tests and benchmarks only) turns the FAB-T shrinking, the fixed-point exit,
    the batching, Square's memo and the channels-last layout off: the unaccelerated reference path
    (the targets looped).
    APGD uses rho 0.75 throughout. A component that cannot run is skipped and reported (APGD-DLR
    needs 3 classes, APGD-T 4; Square needs image inputs; use_square False drops it): see
    `breakdown` and `params`.

    Parameters, from the spec (`AutoAttackParams`, which holds their defaults and limits and refuses
    targeted: the targeted components serve an untargeted evaluation):
        norm: "linf" or "l2".
        version: "standard", "rand" or "fast".
        steps: iterations of APGD and FAB per run.
        n_target_classes: target classes of APGD-T and FAB-T.
        square_queries: query budget of Square.
        eot_iter: gradients averaged per APGD step in the rand version.
        use_square: False leaves Square out (the report then lists it as skipped).
        fast_vs_standard: samples of the `fast_vs_standard` check (fast only; None means
            min(100, n), 0 turns it off). Read by the evaluation, not by the attack.
    Keyword arguments: input_range, (low, high), default (0.0, 1.0); accelerated, default True (see
    above). Square runs as the `SquareAttack` of a `SquareParams` spec built from these settings.
    eps is given per call to `run`. Samples no component broke are returned at APGD-CE's
    highest-loss point.

    `breakdown(eps)` gives, summed over every batch run at that eps: "attacked" (samples classified
    correctly before the attack), "broken" (per component, in order, the samples it newly broke),
    "robust" (attacked samples no component broke), "skipped" (component: reason), "passes"
    (per component, model passes over samples, a forward and its backward counting one),
    "passes_per_sample" (all passes over the attacked samples) and "targets" (how targets were picked).
    """

    spec_type = AutoAttackParams

    def __init__(
        self,
        spec: AutoAttackParams,
        *,
        input_range: tuple[float, float] = (0.0, 1.0),
        accelerated: bool = True,
    ) -> None:
        """Read the ensemble's settings from the spec."""
        super().__init__(spec, input_range=input_range)
        self.version: AutoAttackVersion = spec.version
        self.steps, self.n_target_classes = spec.steps, spec.n_target_classes
        self.square_queries, self.eot_iter, self.use_square = (
            spec.square_queries,
            spec.eot_iter,
            spec.use_square,
        )
        self.fast_vs_standard = spec.fast_vs_standard
        self.accelerated = bool(accelerated)
        self.square = SquareAttack(
            SquareParams(
                name="square",
                norm=spec.norm,
                eps=spec.eps,
                queries=spec.square_queries,
                p_init=SQUARE_P_INIT,
                restarts=SQUARE_RESTARTS,
            ),
            input_range=self.input_range,
        )
        self._targets_per_sample = 0
        self._breakdown: dict[float, dict[str, Any]] = {}

    def components(self) -> list[str]:
        """The components in the order they run."""
        if self.version == "rand":
            return ["apgd-ce", "apgd-dlr"]
        if self.version == "fast":
            return list(FAST_COMPONENTS)
        return ["apgd-ce", "apgd-t", "fab-t", "square"]

    def params(self) -> dict[str, Any]:
        """Effective settings, the components and any components skipped in the runs so far."""
        skipped: dict[str, str] = {}
        for row in self._breakdown.values():
            skipped |= row["skipped"]
        params: dict[str, Any] = {
            **super().params(),
            "version": self.version,
            "components": self.components(),
            "components_skipped": skipped,
            "steps": self.steps,
            "rho": RHO,
        }
        if self.version == "rand":
            return params | {"eot_iter": self.eot_iter}
        if self.version == "fast":
            return params | {
                "n_target_classes": fast_targets(self.n_target_classes, 1000),
                "target_ranking": (
                    "the most likely other class, then malt (linear distance to each class's boundary)"
                ),
                "fast_vs_standard": self.fast_vs_standard,
            }
        return params | {
            "n_target_classes": self.n_target_classes,
            "fab": dict(FAB_SETTINGS),
            "square": {"queries": self.square_queries, "p_init": SQUARE_P_INIT, "restarts": SQUARE_RESTARTS}
            if self.use_square
            else None,
        }

    def details_at(self, eps: float) -> dict[str, Any]:
        """The per-component breakdown at eps, for the report."""
        return {"breakdown": self.breakdown(eps)}

    def breakdown(self, eps: float) -> dict[str, Any]:
        """Per-component counts of newly broken samples at eps, summed over the batches run."""
        row = self._breakdown.get(float(eps))
        if row is None:
            return {}
        passes = sum(row["passes"].values())
        return row | {"passes_per_sample": passes / row["attacked"] if row["attacked"] else 0.0}

    def reset_breakdown(self) -> None:
        """Forget the counts of earlier runs."""
        self._breakdown.clear()

    def _record(
        self,
        eps: float,
        attacked: int,
        counts: dict[str, int],
        robust: int,
        skipped: dict[str, str],
        passes: dict[str, int],
    ) -> None:
        """Add one batch's counts to the breakdown at eps."""
        ranking = "runner_up_then_malt" if self.version == "fast" else "clean_logits"
        row = self._breakdown.setdefault(
            float(eps),
            {
                "attacked": 0, "broken": dict.fromkeys(self.components(), 0), "robust": 0,
                "skipped": {}, "passes": dict.fromkeys(self.components(), 0),
                "targets": {"ranking": ranking, "per_sample": 0},
            },
        )  # fmt: skip
        row["attacked"] += attacked
        row["robust"] += robust
        for component, count in counts.items():
            row["broken"][component] += count
            row["passes"][component] += passes.get(component, 0)
        row["skipped"] |= skipped
        row["targets"]["per_sample"] = max(row["targets"]["per_sample"], self._targets_per_sample)

    def _attack(
        self, model: nn.Module, x: Tensor, labels: Tensor, *, eps: float, generator: torch.Generator
    ) -> tuple[Tensor, Tensor]:
        """Run the components in turn on the samples still robust; keep each sample's first break."""
        y = labels
        counter = PassCounter(ChannelsLast(model, enabled=self.accelerated))
        model = counter
        self._targets_per_sample = 0
        with torch.no_grad():
            clean_logits = model(x)
        x_adv, predictions = x.clone(), clean_logits.argmax(dim=1)
        robust = predictions == y
        attacked = int(robust.sum())
        counts: dict[str, int] = {}
        skipped: dict[str, str] = {}
        passes: dict[str, int] = {}
        for position, component in enumerate(self.components()):
            active = robust.nonzero()[:, 0]
            counts[component] = 0
            reason = self._unavailable(component, x, clean_logits.shape[1])
            if reason:
                skipped[component] = reason
                continue
            if not active.numel():
                continue
            before = counter.count
            candidate = self._run(
                component, model, x[active], y[active], clean_logits[active], eps, generator
            )
            with torch.no_grad():
                found = model(candidate).argmax(dim=1)
            broken = found != y[active]
            keep = torch.ones_like(broken) if position == 0 else broken
            x_adv[active[keep]], predictions[active[keep]] = candidate[keep], found[keep]
            robust[active[broken]] = False
            counts[component] = int(broken.sum())
            passes[component] = counter.count - before
        self._record(eps, attacked, counts, int(robust.sum()), skipped, passes)
        return x_adv, predictions

    def _unavailable(self, component: str, x: Tensor, classes: int) -> str | None:
        """Why a component cannot run on these inputs, or None."""
        if component == "apgd-dlr" and classes < MIN_CLASSES_DLR:
            return f"the DLR loss needs at least {MIN_CLASSES_DLR} classes"
        if component == "apgd-t" and classes < MIN_CLASSES_TARGETED_DLR:
            return f"the targeted DLR loss needs at least {MIN_CLASSES_TARGETED_DLR} classes"
        if component == "square" and not self.use_square:
            return "disabled (use_square is False)"
        if component == "square" and (x.dim() != 4 or min(x.shape[2:]) < 2):
            return "Square needs image inputs [C, H, W] with H and W at least 2"
        return None

    def _run(
        self,
        component: str,
        model: nn.Module,
        x: Tensor,
        y: Tensor,
        clean_logits: Tensor,
        eps: float,
        generator: torch.Generator,
    ) -> Tensor:
        """One component's candidate inputs for the samples it is given."""
        apgd: dict[str, Any] = {
            "eps": eps, "norm": self.norm, "steps": self.steps, "rho": RHO,
            "eot_iter": self.eot_iter if self.version == "rand" else 1,
            "input_range": self.input_range, "generator": generator,
            "stop_when_stuck": self.accelerated,
        }  # fmt: skip
        if component in ("apgd-ce", "apgd-dlr"):
            objective = ce_objective(y) if component == "apgd-ce" else dlr_objective(y)
            return apgd_search(model, x, objective, misclassified(y), **apgd)[0]
        if component == "square":
            self.square.skip_repeats = self.accelerated
            return self.square.search(model, x, y, eps=eps, generator=generator).x_adv
        if self.version == "fast":
            count = fast_targets(self.n_target_classes, clean_logits.shape[1])
            self._targets_per_sample = count
            return ranked_targeted_apgd(model, x, y, count=count, norm=self.norm, apgd=apgd)[0]
        count = min(self.n_target_classes, clean_logits.shape[1] - 1)
        self._targets_per_sample = count
        return targeted_component(
            component, model, x, y, ranked_targets(clean_logits, count), apgd=apgd,
            fab=FAB_SETTINGS | {"shrink": self.accelerated}, batched=self.accelerated,
        )  # fmt: skip
