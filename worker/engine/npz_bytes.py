"""Bytes of named arrays plus a JSON header, as an .npz that loads without pickles (shard results)."""

import io
import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np

HEADER = "~header"


def npz_bytes(arrays: dict[str, np.ndarray], header: Any) -> bytes:
    """An uncompressed .npz of the arrays and the JSON-encoded header (no object arrays, no pickles)."""
    buffer = io.BytesIO()
    np.savez(buffer, allow_pickle=False, **arrays, **{HEADER: np.asarray(json.dumps(header))})
    return buffer.getvalue()


@contextmanager
def read_npz_bytes(data: bytes) -> Iterator[tuple["np.lib.npyio.NpzFile", Any]]:
    """The arrays (read lazily, pickles refused) and the decoded header of npz_bytes' output."""
    with np.load(io.BytesIO(data), allow_pickle=False) as npz:
        yield npz, json.loads(str(npz[HEADER]))
