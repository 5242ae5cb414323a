"""Per-sample outcomes of a defense evaluation on a slice of the evaluated samples, and their bytes.

A slice holds, for samples [start, start + n) (whole batches), the undefended model's evasion slice and
one evasion slice per attack run on the defended model (the extra attacks at index EXTRA_INDEX + k),
each judged by its deployed classifier, plus the attack's own view's predictions on every output (the
`attack_reported_robust_accuracy`). Everything is per sample, so slices of any split join into exactly
the slice over all samples.
"""

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from worker.engine.evasion.slices import EvasionSlice, join_slices, slice_from_bytes, slice_to_bytes
from worker.engine.npz_bytes import npz_bytes, read_npz_bytes

# Attack index of a run's extra attacks (instances outside the registry): apart from the spec attacks.
EXTRA_INDEX = 1000


@dataclass
class JudgedSlice:
    """One evasion slice (verdicts of the judge) and, per attack index, the view's predictions [n_eps, n]."""

    evasion: EvasionSlice
    view: dict[int, np.ndarray]


@dataclass
class DefenseSlice:
    """The undefended side and every run on the defended model, on samples [start, start + n)."""

    start: int
    undefended: JudgedSlice
    runs: list[JudgedSlice]

    @property
    def size(self) -> int:
        """Samples in the slice."""
        return len(self.undefended.evasion.logits)


def join_judged(parts: Sequence[JudgedSlice]) -> JudgedSlice:
    """Judged slices of one side in sample order as one."""
    ordered = sorted(parts, key=lambda part: part.evasion.start)
    views = {
        index: np.concatenate([part.view[index] for part in ordered], axis=1) for index in ordered[0].view
    }
    return JudgedSlice(join_slices([part.evasion for part in ordered]), views)


def join_defense(parts: Sequence[DefenseSlice]) -> DefenseSlice:
    """Slices of one evaluation (any order) as one slice from the first sample."""
    ordered = sorted(parts, key=lambda part: part.start)
    runs = [join_judged([part.runs[number] for part in ordered]) for number in range(len(ordered[0].runs))]
    return DefenseSlice(ordered[0].start, join_judged([part.undefended for part in ordered]), runs)


def _pack(prefix: str, judged: JudgedSlice, arrays: dict[str, np.ndarray]) -> list[int]:
    """Store one judged slice under prefix; its view's attack indices."""
    arrays[prefix] = np.frombuffer(slice_to_bytes(judged.evasion), dtype=np.uint8)
    for index, predictions in judged.view.items():
        arrays[f"{prefix}~view{index}"] = predictions
    return sorted(judged.view)


def _unpack(prefix: str, indices: list[int], npz: "np.lib.npyio.NpzFile") -> JudgedSlice:
    """The judged slice stored under prefix."""
    evasion = slice_from_bytes(npz[prefix].tobytes())
    return JudgedSlice(evasion, {index: npz[f"{prefix}~view{index}"] for index in indices})


def defense_slice_to_bytes(part: DefenseSlice) -> bytes:
    """An .npz (no pickles) of the slice: each side's evasion slice as bytes, the views, a JSON header."""
    arrays: dict[str, np.ndarray] = {}
    header = {
        "start": part.start,
        "undefended": _pack("undefended", part.undefended, arrays),
        "runs": [_pack(f"run{number}", run, arrays) for number, run in enumerate(part.runs)],
    }
    return npz_bytes(arrays, header)


def defense_slice_from_bytes(data: bytes) -> DefenseSlice:
    """The slice that defense_slice_to_bytes stored."""
    with read_npz_bytes(data) as (npz, header):
        undefended = _unpack("undefended", header["undefended"], npz)
        runs = [_unpack(f"run{number}", indices, npz) for number, indices in enumerate(header["runs"])]
        return DefenseSlice(int(header["start"]), undefended, runs)
