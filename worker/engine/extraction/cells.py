"""A cell's result (an attack against a defense row) and its bytes, so a shard can hand it to the merge.

A cell's figures depend on the run seed and the cell's position (attack, row) only, never on which cells
ran before it or where: the merge of cells run anywhere is the report of one run. The bytes are an
`.npz` (no pickles): the report row as JSON, and for the undefended row its query stream and the
measured surrogate's ONNX with its intake report.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from worker.engine.extraction.evaluate import Measured
from worker.engine.extraction.plan import Cell
from worker.engine.extraction.query import QueryLog
from worker.engine.npz_bytes import npz_bytes, read_npz_bytes


@dataclass(frozen=True)
class CellResult:
    """The report row of one cell; the undefended row (row 0) also keeps its stream and surrogate."""

    cell: Cell
    entry: dict[str, Any]
    log: QueryLog | None = None
    surrogate: Measured | None = None


def cells_to_bytes(results: Sequence[CellResult], victim_probs: np.ndarray) -> bytes:
    """An `.npz` of cells: a JSON header, the streams and surrogates where there are, and the victim's
    probabilities on the evaluation set (so the merge need not query the victim for them again)."""
    header: list[dict[str, Any]] = []
    arrays: dict[str, np.ndarray] = {"victim_probs": victim_probs}
    for i, result in enumerate(results):
        meta: dict[str, Any] = {"attack": result.cell.attack, "row": result.cell.row, "entry": result.entry}
        if result.log is not None:
            arrays |= {f"c{i}_log_{name}": value for name, value in result.log.arrays().items()}
        if result.surrogate is not None:
            measured = result.surrogate
            arrays[f"c{i}_onnx"] = np.frombuffer(measured.onnx, dtype=np.uint8)
            meta["surrogate"] = {
                "intake": measured.intake,
                "fidelity": measured.fidelity,
                "surrogate_accuracy": measured.surrogate_accuracy,
            }
        header.append(meta)
    return npz_bytes(arrays, header)


def cells_from_bytes(data: bytes) -> tuple[list[CellResult], np.ndarray]:
    """The cells and the victim's evaluation-set probabilities that cells_to_bytes stored."""
    results = []
    with read_npz_bytes(data) as (npz, header):
        for i, meta in enumerate(header):
            log = None
            if f"c{i}_log_x" in npz.files:
                log = QueryLog(npz[f"c{i}_log_x"], npz[f"c{i}_log_outputs"], npz[f"c{i}_log_victim_labels"])
            surrogate = None
            if "surrogate" in meta:
                facts = meta["surrogate"]
                surrogate = Measured(
                    npz[f"c{i}_onnx"].tobytes(),
                    facts["intake"],
                    facts["fidelity"],
                    facts["surrogate_accuracy"],
                )
            cell = Cell(int(meta["attack"]), int(meta["row"]))
            results.append(CellResult(cell, meta["entry"], log, surrogate))
        victim_probs = npz["victim_probs"]
    return results, victim_probs
