"""An extraction job's plan from its validated params: budgets, attacks, defense rows, detectors, transfer."""

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from worker.engine.extraction.defenses import Defense, LabelOnly, defense_class
from worker.engine.extraction.detection import Detector, detector_class
from worker.engine.extraction.outputs import ExtractionError, VictimOutput
from worker.engine.extraction.strategies import build_strategy
from worker.engine.extraction.surrogate import surrogate_min_steps, surrogate_recipe
from worker.engine.extraction.transfer import transfer_spec
from worker.engine.training.recipe import TrainingRecipe

PARAM_KEYS = frozenset(
    {
        "query_dataset_id",
        "victim_output",
        "budgets",
        "attacks",
        "surrogate",
        "defenses",
        "detection",
        "transfer",
        "max_samples",
    }
)
MAX_BUDGET = 1_000_000


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
class Plan:
    """Everything run_extraction will do, checked before any query is sent."""

    output: VictimOutput
    budgets: list[int]
    attack_specs: list[dict[str, Any]]
    recipe: TrainingRecipe
    surrogate_spec: dict[str, Any]
    rows: list[DefenseRow]
    detectors: list[Detector] = field(default_factory=list)
    transfer: dict[str, Any] | None = None
    max_samples: int | None = None
    min_steps: int = 0

    @property
    def max_budget(self) -> int:
        """The largest budget: what each attack run may spend."""
        return self.budgets[-1]


def _budgets(values: Any) -> list[int]:
    """Strictly increasing positive integers up to MAX_BUDGET."""
    budgets = [int(b) for b in values or []]
    if not budgets or any(b < 1 or b > MAX_BUDGET for b in budgets):
        raise ExtractionError(
            "budgets_invalid", f"budgets must be a non-empty list of integers in [1, {MAX_BUDGET}]"
        )
    if any(a >= b for a, b in zip(budgets, budgets[1:], strict=False)):
        raise ExtractionError("budgets_invalid", f"budgets must be strictly increasing, got {budgets}")
    return budgets


def _rows(output: VictimOutput, specs: list[Mapping[str, Any]]) -> list[DefenseRow]:
    """`none` first, the defenses asked for, and a label-only row whenever none of them is one."""
    rows = [DefenseRow(None)] + [DefenseRow(defense_class(s["name"]).from_spec(s)) for s in specs]
    keys = [(row.name, tuple(sorted(row.params().items()))) for row in rows]
    if len(set(keys)) != len(keys):
        raise ExtractionError("defenses_invalid", "a defense is listed twice with the same parameters")
    names = [row.name for row in rows]
    if output.kind != "label" and LabelOnly.name not in names:
        rows.append(DefenseRow(LabelOnly(), implicit=True))
    return rows


def build_plan(params: Mapping[str, Any]) -> Plan:
    """The plan of validated params; ExtractionError or ValueError says what is wrong."""
    unknown = sorted(set(params) - PARAM_KEYS)
    if unknown:
        raise ValueError(f"extraction: unknown params {', '.join(unknown)}")
    output = VictimOutput.from_spec(params.get("victim_output"))
    attacks = [dict(spec) for spec in params.get("attacks") or []]
    if not attacks:
        raise ValueError("extraction: at least one attack is needed")
    for spec in attacks:
        build_strategy(spec)  # validates now, built fresh per run
    surrogate = dict(params.get("surrogate") or {})
    transfer = params.get("transfer")
    max_samples = params.get("max_samples")
    return Plan(
        output=output,
        budgets=_budgets(params.get("budgets")),
        attack_specs=attacks,
        recipe=surrogate_recipe(surrogate),
        surrogate_spec=surrogate,
        rows=_rows(output, list(params.get("defenses") or [])),
        detectors=[detector_class(s["name"]).from_spec(s) for s in params.get("detection") or []],
        transfer=transfer_spec(transfer) if transfer else None,
        max_samples=None if max_samples is None else int(max_samples),
        min_steps=surrogate_min_steps(surrogate),
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
    for spec in plan.attack_specs:
        strategy = build_strategy(spec)
        need = strategy.min_pool(plan.max_budget)
        if need > len(pool):
            raise ExtractionError(
                "budget_above_pool",
                f"{strategy.label} queries pool samples without replacement: the largest budget "
                f"{plan.max_budget} needs {need} pool samples, the pool has {len(pool)}",
            )
