"""A plugin attack: one spec class and one engine class, and no other file (loaded via GAUNTLET_PLUGINS)."""

from typing import Annotated, Any, ClassVar, Literal

import torch
from pydantic import Field
from torch import Tensor, nn

from app.schemas.evasion import AttackParamsBase
from worker.engine.evasion.attacks.base import Attack
from worker.engine.evasion.attacks.norms import project, random_in_ball


class RandomSearchParams(AttackParamsBase):
    """Random search: `tries` random points of the eps ball per sample; a black-box baseline."""

    white_box: ClassVar[bool] = False
    name: Literal["random_search"]
    tries: Annotated[int, Field(ge=1, le=1000)] = 8


class RandomSearch(Attack):
    """Random search (a baseline, not a paper's attack). Threat model: black-box, outputs only.

    Parameters, from the spec (`RandomSearchParams`): tries (random points per sample), norm, targeted.
    Keyword argument: input_range.
    """

    spec_type = RandomSearchParams

    def __init__(self, spec: RandomSearchParams, *, input_range: tuple[float, float] = (0.0, 1.0)) -> None:
        """Read the number of tries from the spec."""
        super().__init__(spec, input_range=input_range)
        self.tries = spec.tries

    def params(self) -> dict[str, Any]:
        """Effective parameters, for the report."""
        return {**super().params(), "tries": self.tries}

    def _attack(
        self, model: nn.Module, x: Tensor, labels: Tensor, *, eps: float, generator: torch.Generator
    ) -> tuple[Tensor, ...]:
        """Keep each sample's first random point that fools the model; count one query per try."""
        best = x.clone()
        found = torch.zeros(len(x), dtype=torch.bool, device=x.device)
        queries = torch.zeros(len(x), dtype=torch.long, device=x.device)
        with torch.no_grad():
            for _ in range(self.tries):
                candidate = project(
                    x, x + random_in_ball(x, eps, self.norm, generator), eps, self.norm, self.input_range
                )
                predictions = model(candidate).argmax(dim=1)
                queries += (~found).long()
                hit = ~found & ((predictions == labels) if self.targeted else (predictions != labels))
                best[hit], found = candidate[hit], found | hit
        return best, labels, queries
