"""How a poisoning job splits: victims_per_shard victims a piece, at most max_shards pieces."""

from typing import Any

import pytest

from app.schemas.poisoning import PoisoningJobSpec
from app.settings import Settings
from worker.services.shards.poisoning import plan


def _spec(rates: list[float]) -> PoisoningJobSpec:
    return PoisoningJobSpec.model_validate(
        {
            "kind": "poisoning",
            "model_id": "mdl_0123456789abcdef01234567",
            "dataset_id": "builtin:digits-test",
            "params": {
                "train_dataset_id": "builtin:digits-train",
                "attacks": [{"name": "label_flip", "mode": "random", "rate": rates}],
            },
        }
    )


@pytest.mark.parametrize(
    ("rates", "sharding", "expected"),
    [
        ([0.05, 0.1, 0.2], {}, [[0, 1, 2]]),  # at most victims_per_shard (default 4): one piece
        ([0.05, 0.1, 0.2], {"victims_per_shard": 1}, [[0], [1], [2]]),
        ([0.01, 0.02, 0.05, 0.1, 0.2], {"victims_per_shard": 2}, [[0, 1], [2, 3], [4]]),
        ([0.01, 0.02, 0.05, 0.1, 0.2], {"victims_per_shard": 1, "max_shards": 2}, [[0, 1, 2], [3, 4]]),
    ],
)
def test_victims_are_grouped_by_victims_per_shard_within_max_shards(
    rates: list[float], sharding: dict[str, Any], expected: list[list[int]]
) -> None:
    pieces = plan(_spec(rates), None, Settings(), sharding)  # type: ignore[arg-type]
    assert [[rate for _attack, rate, _trial in piece["victims"]] for piece in pieces] == expected
