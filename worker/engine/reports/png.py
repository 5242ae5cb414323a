"""A minimal, dependency-free PNG encoder for 8-bit grayscale and RGB images (zlib + struct)."""

import struct
import zlib

import numpy as np

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# PNG colour types: 0 is grayscale, 2 is RGB (truecolour), both at 8 bits per channel here.
_COLOR_TYPES = {1: 0, 3: 2}


def _chunk(kind: bytes, data: bytes) -> bytes:
    """One PNG chunk: length, type, data, and the CRC-32 of type and data."""
    crc = zlib.crc32(kind + data) & 0xFFFFFFFF
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)


def encode_png(image: np.ndarray) -> bytes:
    """Encode a uint8 image [H, W] (grayscale), [H, W, 1] or [H, W, 3] (RGB) as PNG bytes."""
    if image.dtype != np.uint8:
        raise ValueError(f"encode_png needs uint8 pixels, got {image.dtype}")
    pixels = image[:, :, None] if image.ndim == 2 else image
    if pixels.ndim != 3 or pixels.shape[2] not in _COLOR_TYPES:
        raise ValueError(f"encode_png needs [H, W], [H, W, 1] or [H, W, 3], got {image.shape}")
    height, width, channels = pixels.shape
    if height < 1 or width < 1:
        raise ValueError("encode_png needs at least one pixel")
    header = struct.pack(">IIBBBBB", width, height, 8, _COLOR_TYPES[channels], 0, 0, 0)
    # Filter type 0 (None) before every scanline.
    rows = np.concatenate(
        [np.zeros((height, 1), dtype=np.uint8), np.ascontiguousarray(pixels).reshape(height, -1)], axis=1
    )
    return (
        PNG_SIGNATURE
        + _chunk(b"IHDR", header)
        + _chunk(b"IDAT", zlib.compress(rows.tobytes(), 9))
        + _chunk(b"IEND", b"")
    )


def to_uint8(values: np.ndarray, input_range: tuple[float, float]) -> np.ndarray:
    """Map values in input_range linearly onto 0..255 (rounded, clipped) as uint8."""
    low, high = float(input_range[0]), float(input_range[1])
    if not low < high:
        raise ValueError(f"input_range must satisfy low < high, got {input_range}")
    scaled = (np.asarray(values, dtype=np.float64) - low) * (255.0 / (high - low))
    return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)


def chw_to_png(image: np.ndarray, input_range: tuple[float, float]) -> bytes:
    """Encode a float image [C, H, W] with C of 1 or 3, values in input_range, as PNG bytes."""
    if image.ndim != 3 or image.shape[0] not in _COLOR_TYPES:
        raise ValueError(f"chw_to_png needs [C, H, W] with C of 1 or 3, got {image.shape}")
    return encode_png(to_uint8(np.transpose(image, (1, 2, 0)), input_range))
