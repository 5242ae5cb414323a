"""The one registry of extraction attacks by enumerated name; the API's spec schema and the worker read it."""

from collections.abc import Mapping
from typing import Any

from worker.engine.extraction.strategies.active import Active
from worker.engine.extraction.strategies.base import Strategy
from worker.engine.extraction.strategies.jacobian import Jacobian
from worker.engine.extraction.strategies.knockoff import Knockoff

STRATEGIES: dict[str, type[Strategy]] = {strategy.name: strategy for strategy in (Knockoff, Jacobian, Active)}


def strategy_class(name: str) -> type[Strategy]:
    """The attack registered under name; ValueError for an unknown one."""
    try:
        return STRATEGIES[name]
    except KeyError:
        raise ValueError(
            f"unknown extraction attack {name!r}; available: {', '.join(sorted(STRATEGIES))}"
        ) from None


def build_strategy(spec: Mapping[str, Any]) -> Strategy:
    """A configured attack from its spec entry (which names it)."""
    if "name" not in spec:
        raise ValueError("an extraction attack needs a name")
    return strategy_class(spec["name"]).from_spec(spec)
