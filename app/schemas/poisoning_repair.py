"""The poisoning kind's params.repair: repair methods run on each backdoor attack's largest-rate victim."""

from collections.abc import Iterable, Sequence
from typing import Annotated

from pydantic import Field

from app.schemas.repair_methods import RepairMethodSpec

RepairList = Annotated[list[RepairMethodSpec], Field(max_length=4)]


def repair_problem(
    repair: Sequence[RepairMethodSpec], backdoor: bool, backdoor_names: Iterable[str]
) -> str | None:
    """Why params.repair is invalid (`backdoor`: the job has an attack with a trigger), else None."""
    if repair and not backdoor:
        return f"repair needs a backdoor attack (one with a trigger: {', '.join(sorted(backdoor_names))})"
    if len({r.name for r in repair}) != len(repair):
        return "each repair method may appear once"
    return None
