"""How a defense job splits: slices of whole evaluation batches within max_shards; a repair stays whole."""

from typing import Any

import numpy as np
import pytest

from app.schemas.defense import DefenseJobSpec
from app.settings import Settings
from worker.engine.datasets import ArrayDataset
from worker.services.context import JobData
from worker.services.shards.defense import plan
from worker.services.shards.kinds import SHARDED

AT = {"name": "adversarial_training", "method": "fast", "eps": 0.1, "epochs": 1}


def _spec(defense: dict[str, Any], **evaluation: Any) -> DefenseJobSpec:
    params: dict[str, Any] = {"defense": defense, "train_dataset_id": "builtin:digits-train"}
    if evaluation:
        params["evaluation"] = {"attacks": [{"name": "fgsm", "eps": [0.1]}], **evaluation}
    return DefenseJobSpec.model_validate(
        {
            "kind": "defense",
            "model_id": "mdl_0123456789abcdef01234567",
            "dataset_id": "builtin:digits-test",
            "params": params,
        }
    )


def _data(n: int) -> JobData:
    return JobData(ArrayDataset(np.zeros((n, 1, 8, 8), dtype=np.float32), np.zeros(n, dtype=np.int64)))


@pytest.mark.parametrize(
    ("samples", "batch", "sharding", "expected"),
    [
        (100, 16, {}, [(0, 100)]),  # under the default samples per shard: one piece
        (100, 16, {"samples_per_shard": 32}, [(0, 32), (32, 64), (64, 96), (96, 100)]),
        (100, 16, {"samples_per_shard": 20}, [(0, 32), (32, 64), (64, 96), (96, 100)]),  # whole batches
        (100, 16, {"samples_per_shard": 16, "max_shards": 3}, [(0, 48), (48, 96), (96, 100)]),
        (100, 16, {"samples_per_shard": 16, "max_shards": 1}, [(0, 100)]),
        (30, 8, {"samples_per_shard": 1}, [(0, 8), (8, 16), (16, 24), (24, 30)]),
    ],
)
def test_slices_are_whole_batches_within_max_shards(
    samples: int, batch: int, sharding: dict[str, int], expected: list[tuple[int, int]]
) -> None:
    spec = _spec(AT, max_samples=samples, batch_size=batch)
    pieces = plan(spec, _data(500), Settings(), sharding)
    assert [(piece["start"], piece["stop"]) for piece in pieces] == expected
    assert all(piece["start"] % batch == 0 and piece["total"] == samples for piece in pieces)


def test_the_service_limit_caps_max_shards_and_a_small_set_caps_the_samples() -> None:
    spec = _spec(AT, max_samples=400, batch_size=10)
    pieces = plan(spec, _data(500), Settings(max_shards_per_job=2), {"samples_per_shard": 10})
    assert [(piece["start"], piece["stop"]) for piece in pieces] == [(0, 200), (200, 400)]
    pieces = plan(spec, _data(45), Settings(), {"samples_per_shard": 20})  # 45 samples in the set
    assert [(piece["start"], piece["stop"], piece["total"]) for piece in pieces] == [
        (0, 20, 45),
        (20, 40, 45),
        (40, 45, 45),
    ]


def test_a_backdoor_repair_stays_in_one_piece_and_defenses_train_once() -> None:
    repair = _spec({"name": "backdoor_repair", "method": "fine_pruning"})
    assert plan(repair, _data(500), Settings(), {"samples_per_shard": 1}) == [{}]
    kind = SHARDED[DefenseJobSpec]
    assert kind.prepare is not None  # the defense is trained by the splitting worker, once
