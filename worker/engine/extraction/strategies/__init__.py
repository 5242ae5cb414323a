"""Extraction attacks: how an attacker spends its query budget (knockoff, jacobian, active)."""

from worker.engine.extraction.strategies.base import Strategy, StrategyContext
from worker.engine.extraction.strategies.registry import STRATEGIES, build_strategy

__all__ = ["STRATEGIES", "Strategy", "StrategyContext", "build_strategy"]
