"""Per-sample random streams of randomized models (preprocessing draws, a deployed random defense).

The evaluator says which samples of the evaluated set a forward pass is over: `sample_batch(positions,
*key)` around the pass (the evasion engine does it for the clean pass, every attack call and every
sanity run; `key` names the work, e.g. the attack and eps). A randomized model then draws sample i's
randomness from a generator keyed by (run seed, the model's stream, the work's key, i's position, i's
own pass count in that work), so a sample's draws depend neither on the other samples of its batch, nor
on the batch size, nor on how the set is sliced, nor on any other pass (the verifying pass included).

A pass whose rows are not the batch's samples (an attack querying a subset of them) draws from one
generator keyed by the work's key, the batch's first position and the count of such passes: as
split-invariant as the attacks' own streams (`seeding.py`: whole batches). Outside any sample batch
(library use, a unit test) the model draws from its own sequential stream, as before.
"""

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field

import torch

from worker.engine.seeding import seeded_generator

# Stream offsets: a pass over rows that are not the batch's samples, and a fixed per-sample draw.
_SUBSET, _FIXED = 1 << 30, 1 << 29
KEY_LENGTH = 2

Generators = list[torch.Generator] | torch.Generator


@dataclass
class SampleBatch:
    """The samples a pass is over (positions in the evaluated set, None when unknown) and the work's key."""

    positions: tuple[int, ...] | None
    key: tuple[int, ...]
    passes: dict[tuple[int, int], int] = field(default_factory=dict)
    subset_passes: dict[int, int] = field(default_factory=dict)


_CURRENT: ContextVar[SampleBatch | None] = ContextVar("sample_batch", default=None)


def _key(key: Sequence[int]) -> tuple[int, ...]:
    """The work's key padded to a fixed length (seed sequences of one length never collide by padding)."""
    if len(key) > KEY_LENGTH:
        raise ValueError(f"a sample batch key has at most {KEY_LENGTH} parts, got {tuple(key)}")
    return tuple(int(part) for part in key) + (0,) * (KEY_LENGTH - len(key))


@contextmanager
def sample_batch(positions: Sequence[int] | None, *key: int) -> Iterator[SampleBatch]:
    """Passes inside are over the samples at `positions` (in order), for the work named by `key`."""
    batch = SampleBatch(None if positions is None else tuple(int(p) for p in positions), _key(key))
    token = _CURRENT.set(batch)
    try:
        yield batch
    finally:
        _CURRENT.reset(token)


def current_batch() -> SampleBatch | None:
    """The sample batch passes now run in, if any."""
    return _CURRENT.get()


def pass_generators(device: torch.device, seed: int, stream: int, rows: int) -> Generators | None:
    """Generators of one pass over `rows` samples: one per sample when they are the batch's samples, one for
    the pass when they are not, None outside any sample batch (the caller's own stream)."""
    batch = _CURRENT.get()
    if batch is None:
        return None
    if batch.positions is not None and len(batch.positions) == rows:
        generators = []
        for position in batch.positions:
            count = batch.passes.get((stream, position), 0)
            batch.passes[(stream, position)] = count + 1
            generators.append(seeded_generator(device, seed, stream, *batch.key, position, count))
        return generators
    count = batch.subset_passes.get(stream, 0)
    batch.subset_passes[stream] = count + 1
    first = batch.positions[0] if batch.positions else 0
    return seeded_generator(device, seed, stream + _SUBSET, *batch.key, first, count)


def fixed_generators(device: torch.device, seed: int, stream: int, rows: int) -> Generators | None:
    """One fixed draw per sample (the same in every pass and work) when the rows are the batch's samples,
    else None (the caller's fixed stream)."""
    batch = _CURRENT.get()
    if batch is None or batch.positions is None or len(batch.positions) != rows:
        return None
    padding = _key(())
    return [seeded_generator(device, seed, stream + _FIXED, *padding, p, 0) for p in batch.positions]
