"""The repair methods by name; the API's enumeration and the worker read it."""

from worker.engine.defense.repair.anp import ANP
from worker.engine.defense.repair.base import Repair
from worker.engine.defense.repair.methods import FineTuning, NeuralCleanseUnlearning
from worker.engine.defense.repair.pruning import FinePruning

REPAIRS: dict[str, type[Repair]] = {
    cls.name: cls for cls in (NeuralCleanseUnlearning, FinePruning, ANP, FineTuning)
}


def build_repair(name: str, params: dict[str, object] | None = None) -> Repair:
    """The repair method registered under name with its parameters; ValueError for an unknown one."""
    if name not in REPAIRS:
        raise ValueError(f"unknown repair method {name!r}; available: {', '.join(REPAIRS)}")
    return REPAIRS[name].from_spec(dict(params or {}))
