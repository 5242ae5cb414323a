"""Dataset uploads: headers first, a decompressed-size cap, streamed statistics, a 422 for every bad file."""

import io
import struct
import tracemalloc
import zipfile

import numpy as np
import pytest
from fastapi.testclient import TestClient

from app.errors import InvalidInput
from app.services.dataset_arrays import inspect_npz, load_npz
from tests.app import npz_craft as craft

pytestmark = pytest.mark.service
SMALL_CAP = 256 << 20


def _x(n: int = 4) -> np.ndarray:
    return np.random.default_rng(0).random((n, 1, 8, 8), dtype=np.float32)


def _labels(n: int = 4) -> np.ndarray:
    return np.zeros(n, dtype=np.int64)


def _flip_inside(data: bytes, member: str, at: float, length: int = 8) -> bytes:
    """Overwrite bytes inside a member's stored data (a fraction `at` of the way in)."""
    info = zipfile.ZipFile(io.BytesIO(data)).getinfo(member)
    name_len, extra_len = struct.unpack_from("<HH", data, info.header_offset + 26)
    start = info.header_offset + 30 + name_len + extra_len + int(info.compress_size * at)
    return data[:start] + bytes(b ^ 0xFF for b in data[start : start + length]) + data[start + length :]


def _case_files() -> dict[str, tuple[bytes, str]]:
    """Each hostile or broken file and a fragment of the reason its 422 must give."""
    x, y = _x(), _labels()
    many = [craft.stored_member(f"a{i}.npy", b"") for i in range(100)]
    bz2 = io.BytesIO()
    with zipfile.ZipFile(bz2, "w", compression=zipfile.ZIP_BZIP2) as archive:
        archive.writestr("x.npy", craft.npy_header((4, 1, 8, 8), "<f4") + x.tobytes())
        archive.writestr("y.npy", craft.npy_header((4,), "<i8") + y.tobytes())
    huge_header = craft.npy_header((2**20, 2**20), "<f4")
    trailing = craft.npy_header((4, 1, 8, 8), "<f4") + x.tobytes() + b"extra"
    return {
        "bad-crc": (_flip_inside(craft.savez(x=x, y=y), "x.npy", 0.5), "CRC"),
        "corrupt-deflate": (_flip_inside(craft.savez_compressed(x=x, y=y), "x.npy", 0.3, 64), "readable"),
        "2^40-values": (
            craft.raw_zip([craft.stored_member("x.npy", huge_header), craft.labels_member(4)]),
            "over the dataset limit",
        ),
        "int64-max-label": (craft.savez(x=x, y=np.array([0, 1, 2, 2**63 - 1])), "classes"),
        "uint64-max-label": (craft.savez(x=x, y=np.full(4, 2**64 - 1, dtype=np.uint64)), "classes"),
        "negative-label": (craft.savez(x=x, y=np.array([0, -1, 2, 3])), "non-negative"),
        "x-5x0": (craft.savez(x=np.zeros((5, 0), dtype=np.float32), y=_labels(5)), "at least 1"),
        "nan": (craft.savez(x=np.where(x > 0.5, np.nan, x).astype(np.float32), y=y), "NaN"),
        "float16-inf": (craft.savez(x=np.full((4, 1, 8, 8), np.inf, dtype=np.float16), y=y), "NaN"),
        "object-dtype": (craft.savez(x=np.array([{"a": 1}] * 4, dtype=object), y=y), "object"),
        "structured-dtype": (craft.savez(x=np.zeros(4, dtype=[("a", "f4")]), y=y), "structured"),
        "float-labels": (craft.savez(x=x, y=np.zeros(4)), "integer labels"),
        "wrong-label-count": (craft.savez(x=x, y=_labels(3)), "one label per sample"),
        "no-y": (craft.savez(x=x), "missing ['y']"),
        "100-members": (craft.raw_zip(many), "100 files"),
        "bzip2": (bz2.getvalue(), "compression method"),
        "trailing-data": (
            craft.raw_zip([craft.stored_member("x.npy", trailing), craft.labels_member(4)]),
            "truncated or corrupt",
        ),
        "single-npy": (craft.npy_header((4, 1, 8, 8), "<f4") + x.tobytes(), "single .npy"),
        "garbage": (b"definitely not a zip", "not an .npz"),
    }


CASES = _case_files()


@pytest.fixture(scope="module")
def headers(make_key) -> dict:
    return make_key("dataset-hardening")


@pytest.fixture(scope="module")
def capped_api(settings):
    """The API with a 256 MiB dataset cap, to measure what a request costs in memory."""
    from app.main import create_app

    app = create_app(settings.model_copy(update={"max_dataset_bytes": SMALL_CAP}))
    with TestClient(app, raise_server_exceptions=False) as client:
        yield client


def _upload(api: TestClient, headers: dict, data: bytes, name: str = "d"):
    return api.post("/v1/datasets", headers=headers, files={"file": ("d.npz", data)}, data={"name": name})


def _peak_bytes_of(call) -> tuple[object, int]:
    """Run call() under tracemalloc (numpy reports its buffers to it); return its result and peak."""
    tracemalloc.start()
    try:
        result = call()
        return result, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("case", sorted(CASES))
def test_every_broken_or_hostile_file_is_422_dataset_invalid_with_its_reason(api, headers, case):
    data, reason = CASES[case]
    response = _upload(api, headers, data, case)
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "dataset_invalid" and reason in error["message"], error
    assert not any(d["name"] == case for d in api.get("/v1/datasets", headers=headers).json()["items"])


def test_a_zip_bomb_is_refused_before_it_is_decompressed(capped_api, headers):
    header = craft.npy_header((2**24, 1, 8, 8), "|u1")  # 1 GiB of uint8 in about 1 MB of deflate
    labels = craft.zeros_bomb("y.npy", craft.npy_header((2**24,), "<i8"), 128 << 20)
    bomb = craft.raw_zip([craft.zeros_bomb("x.npy", header, 1 << 30), labels])
    assert len(bomb) < 2 << 20
    response, peak = _peak_bytes_of(lambda: _upload(capped_api, headers, bomb, "bomb"))
    assert response.status_code == 422, response.text
    assert "over the dataset limit" in response.json()["error"]["message"]
    assert peak < 32 << 20, f"the refused bomb cost {peak / 2**20:.0f} MiB in the API"


def test_a_member_whose_directory_entry_lies_about_its_size_is_refused(capped_api, headers):
    header = craft.npy_header((2**24, 1, 8, 8), "|u1")
    liar = craft.zeros_bomb("x.npy", header, 1 << 30, declared_size=4096)
    response, peak = _peak_bytes_of(
        lambda: _upload(capped_api, headers, craft.raw_zip([liar, craft.labels_member(4)]), "liar")
    )
    assert response.status_code == 422, response.text
    message = response.json()["error"]["message"]
    assert "truncated or corrupt" in message or "Bad CRC-32" in message, message
    assert peak < 32 << 20


def test_statistics_are_streamed_so_a_large_dataset_costs_little_memory(capped_api, headers):
    n = 2**21  # 128 MiB of uint8 samples and 16 MiB of int64 labels, about 150 KB compressed
    x = craft.zeros_bomb("x.npy", craft.npy_header((n, 1, 8, 8), "|u1"), 128 << 20)
    y = craft.zeros_bomb("y.npy", craft.npy_header((n,), "<i8"), 16 << 20)
    response, peak = _peak_bytes_of(lambda: _upload(capped_api, headers, craft.raw_zip([x, y]), "large"))
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["n_samples"] == n and body["sample_shape"] == [1, 8, 8] and body["dtype"] == "uint8"
    assert (body["x_min"], body["x_max"], body["num_classes"]) == (0.0, 0.0, 1)
    assert peak < 48 << 20, f"reading 144 MiB of arrays cost {peak / 2**20:.0f} MiB in the API"


def test_load_matches_numpy_for_byte_order_layout_and_uint8_scaling():
    rng = np.random.default_rng(1)
    x = np.asfortranarray(rng.random((6, 3, 4, 5)).astype(">f4"))
    y = rng.integers(0, 7, 6).astype(">i4")
    got_x, got_y = load_npz(craft.savez(x=x, y=y), (0.0, 1.0))
    np.testing.assert_array_equal(got_x, x.astype(np.float32))
    np.testing.assert_array_equal(got_y, y.astype(np.int64))
    assert got_x.flags.c_contiguous and got_x.dtype == np.float32
    facts = inspect_npz(craft.savez(x=x, y=y))
    assert facts.sample_shape == (3, 4, 5) and facts.num_classes == int(y.max()) + 1
    assert facts.x_min == pytest.approx(float(x.min())) and facts.x_max == pytest.approx(float(x.max()))

    pixels = rng.integers(0, 256, (5, 1, 2, 2), dtype=np.uint8)
    scaled, _ = load_npz(craft.savez(x=pixels, y=np.arange(5)), (-1.0, 1.0))
    np.testing.assert_allclose(scaled, pixels.astype(np.float32) / 255 * 2 - 1, atol=1e-6)


def test_the_worker_side_load_keeps_the_cap():
    data = craft.savez(x=_x(64), y=_labels(64))
    with pytest.raises(InvalidInput, match="over the dataset limit"):
        load_npz(data, (0.0, 1.0), max_bytes=1024)
    assert load_npz(data, (0.0, 1.0), max_bytes=1 << 20)[0].shape == (64, 1, 8, 8)
