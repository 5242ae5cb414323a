"""An extraction job's plan from its typed params: defense rows, detectors, the recipe; its cells."""

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from app.schemas.extraction import ExtractionAttackSpec, ExtractionParams, LabelOnlyDefense
from worker.engine.extraction.defenses import Defense, LabelOnly, build_defense
from worker.engine.extraction.detection import Detector, build_detector
from worker.engine.extraction.outputs import ExtractionError
from worker.engine.extraction.strategies import build_strategy
from worker.engine.extraction.surrogate import surrogate_recipe
from worker.engine.training.recipe import TrainingRecipe


@dataclass(frozen=True)
class DefenseRow:
    """One defense row: None is the undefended interface; `implicit` rows are added, not asked for."""

    defense: Defense | None
    implicit: bool = False

    @property
    def name(self) -> str:
        """The defense's name ("none" for the undefended interface)."""
        return self.defense.name if self.defense is not None else "none"

    def params(self) -> dict[str, Any]:
        """The defense's parameters."""
        return self.defense.params() if self.defense is not None else {}


@dataclass(frozen=True)
class Cell:
    """One attack against one defense row: the unit of work a shard runs."""

    attack: int
    row: int


@dataclass(frozen=True)
class Plan:
    """Everything run_extraction will do, checked before any query is sent."""

    params: ExtractionParams
    recipe: TrainingRecipe
    rows: list[DefenseRow]
    detectors: list[Detector] = field(default_factory=list)

    @property
    def budgets(self) -> list[int]:
        """The budgets, increasing."""
        return list(self.params.budgets)

    @property
    def max_budget(self) -> int:
        """The largest budget: what each attack run may spend."""
        return self.params.budgets[-1]

    @property
    def attacks(self) -> list[ExtractionAttackSpec]:
        """The attack specs, in the job's order."""
        return list(self.params.attacks)

    @property
    def min_steps(self) -> int:
        """The fewest optimizer steps of a measured surrogate."""
        return self.params.surrogate.min_steps

    def cells(self) -> list[Cell]:
        """Every (attack, defense row) pair, attack by attack, rows in order."""
        return [Cell(a, r) for a in range(len(self.params.attacks)) for r in range(len(self.rows))]


def _rows(params: ExtractionParams) -> list[DefenseRow]:
    """`none` first, the defenses asked for, and a label-only row whenever none of them is one."""
    rows = [DefenseRow(None)] + [DefenseRow(build_defense(spec)) for spec in params.defenses]
    keys = [(row.name, tuple(sorted(row.params().items()))) for row in rows]
    if len(set(keys)) != len(keys):
        raise ExtractionError("defenses_invalid", "a defense is listed twice with the same parameters")
    if params.victim_output.kind != "label" and not any(isinstance(r.defense, LabelOnly) for r in rows):
        rows.append(DefenseRow(LabelOnly(LabelOnlyDefense(name="label_only")), implicit=True))
    return rows


def build_plan(params: ExtractionParams) -> Plan:
    """The plan of typed params; ExtractionError says what cannot run."""
    return Plan(
        params=params,
        recipe=surrogate_recipe(params.surrogate),
        rows=_rows(params),
        detectors=[build_detector(spec) for spec in params.detection],
    )


def check_pool(
    plan: Plan, pool: np.ndarray, input_shape: tuple[int, ...], input_range: tuple[float, float]
) -> None:
    """The pool fits the victim (shape, range) and is large enough for every attack's largest budget."""
    if pool.ndim != len(input_shape) + 1 or tuple(pool.shape[1:]) != tuple(input_shape):
        raise ExtractionError(
            "pool_shape_mismatch",
            f"pool samples have shape {list(pool.shape[1:])}; the victim takes {list(input_shape)}",
        )
    low, high = input_range
    if len(pool) == 0 or not np.isfinite(pool).all() or pool.min() < low - 1e-6 or pool.max() > high + 1e-6:
        raise ExtractionError("pool_out_of_range", f"pool samples must be finite and inside [{low}, {high}]")
    for spec in plan.attacks:
        need = spec.pool_need(plan.max_budget)
        if need > len(pool):
            raise ExtractionError(
                "budget_above_pool",
                f"{build_strategy(spec).label} queries pool samples without replacement: the largest "
                f"budget {plan.max_budget} needs {need} pool samples, the pool has {len(pool)}",
            )
