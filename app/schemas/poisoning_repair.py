"""The poisoning kind's params.repair: repair methods run on each backdoor attack's largest-rate victim."""

from collections.abc import Sequence
from typing import Annotated

from pydantic import Field

from app.schemas.repair_methods import RepairMethodSpec

# The attacks with a trigger: params.repair runs on their victims.
BACKDOOR_ATTACKS = frozenset({"badnets", "blended", "label_consistent"})

RepairList = Annotated[list[RepairMethodSpec], Field(max_length=4)]


def repair_problem(repair: Sequence[RepairMethodSpec], attack_names: Sequence[str]) -> str | None:
    """Why params.repair is invalid for these attacks, else None."""
    if repair and not any(name in BACKDOOR_ATTACKS for name in attack_names):
        return f"repair needs a backdoor attack (one with a trigger: {', '.join(sorted(BACKDOOR_ATTACKS))})"
    if len({r.name for r in repair}) != len(repair):
        return "each repair method may appear once"
    return None
