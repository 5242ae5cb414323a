"""Hand-made `.npz` files for the dataset hardening tests: bombs, lies and corruption."""

import io
import struct
import zipfile
import zlib

import numpy as np
from numpy.lib import format as npy_format

ZERO_BLOCK = bytes(16 << 20)


def npy_header(shape: tuple[int, ...], descr: str, fortran_order: bool = False) -> bytes:
    """A version 1.0 `.npy` header declaring any shape and dtype."""
    buffer = io.BytesIO()
    npy_format.write_array_header_1_0(
        buffer, {"descr": descr, "fortran_order": fortran_order, "shape": shape}
    )
    return buffer.getvalue()


def raw_zip(members: list[tuple[str, bytes, int, int, int]]) -> bytes:
    """A zip from (name, stored bytes, crc32, declared uncompressed size, method) without checks."""
    out, directory = io.BytesIO(), io.BytesIO()
    for name, stored, crc, size, method in members:
        offset = out.tell()
        encoded = name.encode()
        out.write(
            struct.pack(
                "<4sHHHHHIIIHH", b"PK\x03\x04", 20, 0, method, 0, 0, crc, len(stored), size, len(encoded), 0
            )
        )
        out.write(encoded + stored)
        directory.write(
            struct.pack(
                "<4sHHHHHHIIIHHHHHII",
                b"PK\x01\x02",
                20,
                20,
                0,
                method,
                0,
                0,
                crc,
                len(stored),
                size,
                len(encoded),
                0,
                0,
                0,
                0,
                0,
                offset,
            )
        )
        directory.write(encoded)
    start = out.tell()
    out.write(directory.getvalue())
    out.write(
        struct.pack(
            "<4sHHHHIIH", b"PK\x05\x06", 0, 0, len(members), len(members), len(directory.getvalue()), start, 0
        )
    )
    return out.getvalue()


def stored_member(name: str, payload: bytes) -> tuple[str, bytes, int, int, int]:
    """An uncompressed member with a correct CRC."""
    return name, payload, zlib.crc32(payload), len(payload), zipfile.ZIP_STORED


def zeros_bomb(name: str, header: bytes, zero_bytes: int, *, declared_size: int | None = None):  # noqa: ANN201
    """A deflated member: the header, then `zero_bytes` zeros (a multiple of 16 MiB) at ~1000:1."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    head = compressor.compress(header) + compressor.flush(zlib.Z_FULL_FLUSH)
    block = compressor.compress(ZERO_BLOCK) + compressor.flush(zlib.Z_FULL_FLUSH)
    blocks = zero_bytes // len(ZERO_BLOCK)
    crc = zlib.crc32(header)
    for _ in range(blocks):
        crc = zlib.crc32(ZERO_BLOCK, crc)
    stored = head + block * blocks + compressor.flush(zlib.Z_FINISH)
    size = len(header) + blocks * len(ZERO_BLOCK) if declared_size is None else declared_size
    return name, stored, crc, size, zipfile.ZIP_DEFLATED


def labels_member(n: int) -> tuple[str, bytes, int, int, int]:
    """A valid y.npy of n zero labels."""
    return stored_member("y.npy", npy_header((n,), "<i8") + bytes(8 * n))


def savez(**arrays: np.ndarray) -> bytes:
    """np.savez into bytes."""
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def savez_compressed(**arrays: np.ndarray) -> bytes:
    """np.savez_compressed into bytes."""
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    return buffer.getvalue()
