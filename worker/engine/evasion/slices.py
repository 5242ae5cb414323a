"""One attack's per-sample outcomes on a slice of the evaluated samples, and how slices join.

A slice holds whole batches of consecutive samples. Everything in it is per sample (or a count summed
over samples), so the slices of a split evaluation concatenate into exactly what one slice over all
samples holds: the metrics are computed once, from the joined arrays.
"""

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from worker.engine.npz_bytes import npz_bytes, read_npz_bytes

# Arrays whose sample axis is 1 ([n_eps, N, ...]); the others have it first.
_PER_EPS = ("x_adv", "success")
_SHARED = ("eps",)


@dataclass
class AttackSlice:
    """Per-sample outcomes of one attack on a slice, at each of its eps.

    arrays: the artifact arrays of the slice (x_adv [n_eps, n, ...], eps [n_eps], y [n], success
    [n_eps, n], attacked [n], targets [n] for targeted attacks). predictions, perturbation and queries
    are [n_eps, n]; seconds [n_eps]; details: the attack's per-eps tallies summed over batches
    (AutoAttack's per-component breakdown), keyed by eps.
    """

    arrays: dict[str, np.ndarray]
    predictions: np.ndarray
    perturbation: np.ndarray
    queries: np.ndarray
    seconds: list[float]
    details: dict[float, dict[str, Any]] = field(default_factory=dict)


@dataclass
class EvasionSlice:
    """Clean logits and every eps-bounded attack's outcomes on samples [start, start + n)."""

    start: int
    logits: np.ndarray
    attacks: dict[int, AttackSlice]


def _sum_tallies(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Add per-eps tallies: numbers add, dicts add key by key, `skipped` notes merge, maxima stay maxima."""
    merged: dict[str, Any] = json.loads(json.dumps(rows[0]))
    for row in rows[1:]:
        for key, value in row.items():
            if key == "skipped":
                merged[key] = {**merged.get(key, {}), **value}
            elif key == "targets":
                merged[key]["per_sample"] = max(merged[key]["per_sample"], value["per_sample"])
            elif isinstance(value, dict):
                for inner, count in value.items():
                    merged[key][inner] = merged[key].get(inner, 0) + count
            elif isinstance(value, int | float) and not isinstance(value, bool):
                merged[key] = merged.get(key, 0) + value
    return merged


def join_attack(parts: Sequence[AttackSlice]) -> AttackSlice:
    """The slices of one attack, in sample order, as one slice."""
    if len(parts) == 1:
        return parts[0]
    arrays = {
        name: parts[0].arrays[name]
        if name in _SHARED
        else np.concatenate([p.arrays[name] for p in parts], axis=1 if name in _PER_EPS else 0)
        for name in parts[0].arrays
    }
    details: dict[float, dict[str, Any]] = {}
    for eps in {eps for part in parts for eps in part.details}:
        details[eps] = _sum_tallies([part.details[eps] for part in parts if eps in part.details])
    return AttackSlice(
        arrays=arrays,
        predictions=np.concatenate([p.predictions for p in parts], axis=1),
        perturbation=np.concatenate([p.perturbation for p in parts], axis=1),
        queries=np.concatenate([p.queries for p in parts], axis=1),
        seconds=[float(sum(values)) for values in zip(*(p.seconds for p in parts), strict=True)],
        details=details,
    )


def join_slices(parts: Sequence[EvasionSlice]) -> EvasionSlice:
    """Slices of the same evaluation (any order) as one slice from the first sample."""
    ordered = sorted(parts, key=lambda part: part.start)
    return EvasionSlice(
        start=ordered[0].start,
        logits=np.concatenate([part.logits for part in ordered]),
        attacks={
            index: join_attack([part.attacks[index] for part in ordered]) for index in ordered[0].attacks
        },
    )


def slice_to_bytes(part: EvasionSlice) -> bytes:
    """An .npz (no pickles) of the slice: its arrays plus a JSON header."""
    arrays: dict[str, np.ndarray] = {"logits": part.logits}
    header: dict[str, Any] = {"start": part.start, "attacks": {}}
    for index, attack in part.attacks.items():
        prefix = f"a{index}_"
        arrays |= {prefix + name: value for name, value in attack.arrays.items()}
        arrays |= {
            prefix + "~predictions": attack.predictions,
            prefix + "~perturbation": attack.perturbation,
            prefix + "~queries": attack.queries,
        }
        header["attacks"][str(index)] = {
            "arrays": sorted(attack.arrays),
            "seconds": attack.seconds,
            "details": [[eps, row] for eps, row in attack.details.items()],
        }
    return npz_bytes(arrays, header)


def slice_from_bytes(data: bytes) -> EvasionSlice:
    """The slice that slice_to_bytes stored."""
    with read_npz_bytes(data) as (npz, header):
        attacks = {}
        for key, meta in header["attacks"].items():
            prefix = f"a{key}_"
            attacks[int(key)] = AttackSlice(
                arrays={name: npz[prefix + name] for name in meta["arrays"]},
                predictions=npz[prefix + "~predictions"],
                perturbation=npz[prefix + "~perturbation"],
                queries=npz[prefix + "~queries"],
                seconds=[float(value) for value in meta["seconds"]],
                details={float(eps): row for eps, row in meta["details"]},
            )
        return EvasionSlice(start=int(header["start"]), logits=npz["logits"], attacks=attacks)
