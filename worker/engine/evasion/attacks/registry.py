"""The one registry of evasion attacks: spec type -> engine class, filled by the classes themselves.

Every engine attack declares `spec_type`; defining the class registers it (`Attack.__init_subclass__`).
Importing this module imports every module of this package, so the built-in attacks are registered; an
attack defined elsewhere (a plugin module, `GAUNTLET_PLUGINS`) registers when its module is imported.
"""

import importlib
import pkgutil
from collections.abc import Mapping
from typing import Any

from app.schemas.evasion import AttackParamsBase
from app.schemas.evasion_base import validate_attack
from worker.engine.evasion.attacks import __path__ as _package_path
from worker.engine.evasion.attacks.base import REGISTERED, Attack

for _module in pkgutil.iter_modules(_package_path):
    importlib.import_module(f"{__package__}.{_module.name}")


def registered_attacks() -> dict[type[AttackParamsBase], type[Attack]]:
    """Every engine attack class by its spec type."""
    return dict(REGISTERED)


def attack_type(spec_type: type[AttackParamsBase]) -> type[Attack]:
    """The engine class of a spec type (the nearest registered one along its bases)."""
    for base in spec_type.__mro__:
        found = REGISTERED.get(base)  # type: ignore[call-overload]
        if found is not None:
            return found
    raise ValueError(f"no engine attack is registered for {spec_type.__name__}")


def build_attack(spec: AttackParamsBase, input_range: tuple[float, float]) -> Attack:
    """The configured engine attack of a typed spec."""
    return attack_type(type(spec))(spec, input_range=input_range)


def as_spec(spec: Any) -> Any:
    """A typed attack spec from a spec or its JSON form (library callers may pass plain mappings)."""
    return validate_attack(dict(spec) if isinstance(spec, Mapping) else spec)
