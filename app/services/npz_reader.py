"""A streaming `.npz` reader: headers first, a decompressed-size cap, data in bounded chunks.

An `.npz` is a zip of `.npy` files. Everything a caller controls is checked before any array data is
decompressed: the zip's central directory (size and entry count), each member's compression method and
declared size, and the `.npy` header (dtype, shape, byte count). Array data is then read in chunks of
at most `CHUNK_BYTES`, so reading a member costs constant memory unless the caller keeps the chunks.
Every refusal is an `InvalidInput` with code `dataset_invalid` and a reason; nothing is unpickled.
"""

import io
import struct
import zipfile
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from math import prod
from typing import IO

import numpy as np
from numpy.lib import format as npy_format

from app.errors import InvalidInput

CHUNK_BYTES = 4 * 1024 * 1024
MAX_MEMBERS = 64
MAX_DIRECTORY_BYTES = 64 * 1024
MAX_NPY_HEADER_BYTES = 10_000
ACCEPTED_COMPRESSION = (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED)
_EOCD = b"PK\x05\x06"
_ZIP64_LOCATOR = b"PK\x06\x07"
_ZIP64_EOCD = b"PK\x06\x06"
# What zipfile, zlib and numpy's header parser raise on a damaged or hostile file.
READ_ERRORS = (
    zipfile.BadZipFile,
    zlib.error,
    EOFError,
    OSError,
    ValueError,
    NotImplementedError,
    RuntimeError,
    struct.error,
    SyntaxError,
    OverflowError,
)


def invalid(message: str) -> InvalidInput:
    """The 422 every unreadable or refused dataset gets."""
    return InvalidInput(message, code="dataset_invalid")


@dataclass(frozen=True)
class ArrayHeader:
    """What a member's `.npy` header declares."""

    name: str
    shape: tuple[int, ...]
    dtype: np.dtype
    fortran_order: bool

    @property
    def n_values(self) -> int:
        """Number of elements."""
        return prod(self.shape)

    @property
    def n_bytes(self) -> int:
        """Bytes of array data after the header."""
        return self.n_values * self.dtype.itemsize


def _directory_size(data: bytes) -> tuple[int, int]:
    """(entries, central directory bytes) from the end-of-central-directory record; 422 if absent."""
    start = data.rfind(_EOCD, max(0, len(data) - 22 - 65535))
    if start < 0 or len(data) - start < 22:
        raise invalid("the file is not an .npz (zip) archive")
    entries, size = struct.unpack_from("<HI", data, start + 10)
    locator = start - 20
    if (
        (entries == 0xFFFF or size == 0xFFFFFFFF)
        and locator >= 0
        and data[locator : locator + 4] == _ZIP64_LOCATOR
    ):
        (offset,) = struct.unpack_from("<Q", data, locator + 8)
        if offset + 56 <= len(data) and data[offset : offset + 4] == _ZIP64_EOCD:
            entries, size = struct.unpack_from("<QQ", data, offset + 32)
    return entries, size


def _check_directory(data: bytes) -> None:
    """Refuse archives whose directory alone would cost real memory to parse."""
    if data.startswith(b"\x93NUMPY"):
        raise invalid("the file is a single .npy array; upload an .npz with arrays x and y")
    entries, size = _directory_size(data)
    if entries > MAX_MEMBERS or size > MAX_DIRECTORY_BYTES:
        raise invalid(
            f"the archive lists {entries} files; an .npz dataset holds x and y (at most {MAX_MEMBERS})"
        )


class NpzArchive:
    """An opened `.npz` whose members are read header-first and in chunks, within a byte budget."""

    def __init__(self, archive: zipfile.ZipFile, max_bytes: int) -> None:
        self._zip = archive
        self.max_bytes = max_bytes
        self.names = {info.filename.removesuffix(".npy"): info for info in archive.infolist()}

    def _info(self, name: str) -> zipfile.ZipInfo:
        """The member holding array `name`, checked before it is opened."""
        info = self.names[name]
        if info.flag_bits & 0x1:
            raise invalid(f"array {name!r} is encrypted")
        if info.compress_type not in ACCEPTED_COMPRESSION:
            raise invalid(f"array {name!r} uses zip compression method {info.compress_type}; use np.savez")
        if info.file_size > self.max_bytes + MAX_NPY_HEADER_BYTES + 128:
            raise invalid(
                f"array {name!r} decompresses to {info.file_size} bytes, over the dataset limit of "
                f"{self.max_bytes} bytes"
            )
        return info

    def header(self, name: str) -> ArrayHeader:
        """The member's header alone (its declared size checked), without reading its data."""
        with self.open(name) as (header, _stream):
            return header

    @contextmanager
    def open(self, name: str) -> Iterator[tuple[ArrayHeader, IO[bytes]]]:
        """The member's parsed header and a stream positioned at its data."""
        info = self._info(name)
        with self._zip.open(info) as stream:
            header = _read_header(name, stream)
            declared = stream.tell() + header.n_bytes
            if header.n_bytes > self.max_bytes:
                raise invalid(
                    f"array {name!r} of shape {list(header.shape)} and dtype {header.dtype} holds "
                    f"{header.n_bytes} bytes, over the dataset limit of {self.max_bytes} bytes"
                )
            if declared != info.file_size:
                raise invalid(
                    f"array {name!r}: its header declares {declared} bytes but the archive holds "
                    f"{info.file_size}; the file is truncated or corrupt"
                )
            yield header, stream

    def chunks(self, name: str, on_chunk: Callable[[np.ndarray], None]) -> ArrayHeader:
        """Feed the array's values to `on_chunk` as flat arrays of at most CHUNK_BYTES; the CRC is checked."""
        with self.open(name) as (header, stream):
            per_chunk = max(1, CHUNK_BYTES // header.dtype.itemsize)
            remaining = header.n_values
            while remaining:
                count = min(per_chunk, remaining)
                raw = stream.read(count * header.dtype.itemsize)
                if len(raw) != count * header.dtype.itemsize:
                    raise invalid(f"array {name!r} ends before the size its header declares")
                on_chunk(np.frombuffer(raw, dtype=header.dtype))
                remaining -= count
            if stream.read(1):
                raise invalid(f"array {name!r} has data past the size its header declares")
        return header


def _read_header(name: str, stream: IO[bytes]) -> ArrayHeader:
    """Parse a `.npy` header (versions 1 and 2) and refuse what a dataset cannot hold."""
    version = npy_format.read_magic(stream)
    if version == (1, 0):
        shape, fortran_order, dtype = npy_format.read_array_header_1_0(stream, MAX_NPY_HEADER_BYTES)
    elif version == (2, 0):
        shape, fortran_order, dtype = npy_format.read_array_header_2_0(stream, MAX_NPY_HEADER_BYTES)
    else:
        raise invalid(f"array {name!r} uses .npy format version {version}; save it with np.savez")
    if dtype.hasobject or dtype.fields is not None or dtype.subdtype is not None:
        raise invalid(f"array {name!r} has dtype {dtype}; object and structured arrays are refused")
    if not all(isinstance(d, int) and d >= 0 for d in shape):
        raise invalid(f"array {name!r} declares an invalid shape {shape}")
    return ArrayHeader(name=name, shape=tuple(shape), dtype=dtype, fortran_order=bool(fortran_order))


@contextmanager
def open_npz(data: bytes, max_bytes: int) -> Iterator[NpzArchive]:
    """Open an uploaded `.npz`; every read error inside the block becomes a 422 `dataset_invalid`."""
    _check_directory(data)
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            yield NpzArchive(archive, max_bytes)
    except InvalidInput:
        raise
    except READ_ERRORS as exc:
        reason = str(exc)[:300] or type(exc).__name__
        raise invalid(f"the file is not a readable .npz archive: {reason}") from exc
