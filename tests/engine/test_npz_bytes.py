"""Shard results' bytes: arrays and a JSON header round-trip, and nothing is ever pickled."""

import numpy as np
import pytest

from worker.engine.npz_bytes import npz_bytes, read_npz_bytes


def test_arrays_and_header_round_trip_exactly() -> None:
    arrays = {"x": np.arange(12, dtype=np.float32).reshape(3, 4)}
    arrays["onnx"] = np.frombuffer(b"\x00\x01", np.uint8)
    header = {"start": 4, "rows": [{"eps": 0.1, "names": ["a", "b"]}]}
    with read_npz_bytes(npz_bytes(arrays, header)) as (npz, read_header):
        assert read_header == header
        assert np.array_equal(npz["x"], arrays["x"]) and npz["x"].dtype == np.float32
        assert npz["onnx"].tobytes() == b"\x00\x01"


def test_object_arrays_are_refused_not_pickled() -> None:
    with pytest.raises(ValueError):
        npz_bytes({"bad": np.asarray([{"a": 1}], dtype=object)}, {})
