"""The one registry of extraction attacks, keyed by the spec type each engine class is built from."""

from app.schemas.extraction import ExtractionAttackSpec
from worker.engine.extraction.strategies.active import Active
from worker.engine.extraction.strategies.base import Strategy
from worker.engine.extraction.strategies.jacobian import Jacobian
from worker.engine.extraction.strategies.knockoff import Knockoff

STRATEGIES: dict[type[ExtractionAttackSpec], type[Strategy]] = {
    strategy.spec_type: strategy for strategy in (Knockoff, Jacobian, Active)
}


def build_strategy(spec: ExtractionAttackSpec) -> Strategy:
    """A configured attack from its typed spec."""
    return STRATEGIES[type(spec)](spec)
