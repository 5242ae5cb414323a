"""The repair methods by the type of their spec; the worker builds them from the typed spec."""

from collections.abc import Mapping

from app.schemas.repair_methods import RepairMethodSpecT, method_spec
from worker.engine.defense.repair.anp import ANP
from worker.engine.defense.repair.base import Repair
from worker.engine.defense.repair.methods import FineTuning, NeuralCleanseUnlearning
from worker.engine.defense.repair.pruning import FinePruning

REPAIRS: dict[type[RepairMethodSpecT], type[Repair]] = {
    cls.spec_type: cls for cls in (NeuralCleanseUnlearning, FinePruning, ANP, FineTuning)
}


def build_repair(spec: RepairMethodSpecT | str, params: Mapping[str, object] | None = None) -> Repair:
    """The repair method of a typed spec; a library caller's method name and parameters are validated into
    that spec first (ValueError for an unknown method or a bad parameter)."""
    if isinstance(spec, str):
        spec = method_spec(spec, params or {})
    return REPAIRS[type(spec)](spec)
