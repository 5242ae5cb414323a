"""The PNG writer: decode its output with zlib + struct only, check every CRC and compare pixels."""

import struct
import zlib

import numpy as np
import pytest

from worker.engine.reports.png import PNG_SIGNATURE, chw_to_png, encode_png, to_uint8


def _decode(data: bytes) -> np.ndarray:
    """Decode an 8-bit, non-interlaced grayscale or RGB PNG, checking the CRC of every chunk."""
    assert data[:8] == PNG_SIGNATURE
    position, chunks = 8, []
    while position < len(data):
        (length,) = struct.unpack(">I", data[position : position + 4])
        kind = data[position + 4 : position + 8]
        body = data[position + 8 : position + 8 + length]
        (crc,) = struct.unpack(">I", data[position + 8 + length : position + 12 + length])
        assert crc == zlib.crc32(kind + body) & 0xFFFFFFFF, f"bad CRC in {kind!r}"
        chunks.append((kind, body))
        position += 12 + length
    assert position == len(data)
    kinds = [kind for kind, _ in chunks]
    assert kinds[0] == b"IHDR" and kinds[-1] == b"IEND" and b"IDAT" in kinds
    width, height, depth, color, compression, filtering, interlace = struct.unpack(">IIBBBBB", chunks[0][1])
    assert (depth, compression, filtering, interlace) == (8, 0, 0, 0)
    channels = {0: 1, 2: 3}[color]
    raw = zlib.decompress(b"".join(body for kind, body in chunks if kind == b"IDAT"))
    rows = np.frombuffer(raw, dtype=np.uint8).reshape(height, 1 + width * channels)
    assert (rows[:, 0] == 0).all()  # filter type None on every scanline
    return rows[:, 1:].reshape(height, width, channels)


@pytest.mark.parametrize("shape", [(1, 1), (5, 7), (16, 3), (6, 4, 1), (5, 7, 3), (1, 9, 3)])
def test_round_trip_pixels(shape):
    pixels = np.random.default_rng(0).integers(0, 256, size=shape, dtype=np.uint8)
    decoded = _decode(encode_png(pixels))
    expected = pixels if pixels.ndim == 3 else pixels[:, :, None]
    assert decoded.shape == expected.shape
    assert np.array_equal(decoded, expected)


def test_header_records_size_and_colour_type():
    gray, rgb = encode_png(np.zeros((3, 5), np.uint8)), encode_png(np.zeros((3, 5, 3), np.uint8))
    assert struct.unpack(">II", gray[16:24]) == (5, 3) and gray[25] == 0
    assert struct.unpack(">II", rgb[16:24]) == (5, 3) and rgb[25] == 2


def test_corrupted_data_fails_the_crc_check():
    data = bytearray(encode_png(np.arange(64, dtype=np.uint8).reshape(8, 8)))
    data[45] ^= 0xFF  # inside the IDAT payload (IDAT data starts at byte 41)
    with pytest.raises(AssertionError, match="bad CRC"):
        _decode(bytes(data))


def test_to_uint8_maps_the_input_range_onto_0_255():
    assert to_uint8(np.array([0.0, 0.5, 1.0, -0.2, 1.3]), (0.0, 1.0)).tolist() == [0, 128, 255, 0, 255]
    assert to_uint8(np.array([-1.0, 0.0, 1.0]), (-1.0, 1.0)).tolist() == [0, 128, 255]
    with pytest.raises(ValueError):
        to_uint8(np.zeros(3), (1.0, 1.0))


def test_chw_images_are_transposed_per_channel():
    image = np.zeros((3, 2, 4), dtype=np.float32)
    image[0, 0, 0], image[1, 1, 3], image[2] = 1.0, 1.0, 0.5  # red corner, green corner, gray blue
    decoded = _decode(chw_to_png(image, (0.0, 1.0)))
    assert decoded.shape == (2, 4, 3)
    assert decoded[0, 0].tolist() == [255, 0, 128] and decoded[1, 3].tolist() == [0, 255, 128]
    assert decoded[0, 1].tolist() == [0, 0, 128]
    gray = _decode(chw_to_png(np.full((1, 3, 3), -1.0, dtype=np.float32), (-1.0, 1.0)))
    assert gray.shape == (3, 3, 1) and (gray == 0).all()


@pytest.mark.parametrize(
    "bad",
    [
        np.zeros((4, 4), np.float32),
        np.zeros((4, 4, 2), np.uint8),
        np.zeros((4, 4, 4), np.uint8),
        np.zeros((0, 4), np.uint8),
    ],
)
def test_rejects_unsupported_images(bad):
    with pytest.raises(ValueError):
        encode_png(bad)
    with pytest.raises(ValueError):
        chw_to_png(np.zeros((2, 4, 4), np.float32), (0.0, 1.0))
