"""A real JPEG round trip (encode and decode with Pillow's libjpeg) for batches of images in [0, 1]."""

import io

import numpy as np
import torch
from PIL import Image
from torch import Tensor

MODES = {1: "L", 3: "RGB"}


def jpeg_roundtrip(u: Tensor, quality: int) -> Tensor:
    """Each [C, H, W] image of u (values in [0, 1], C 1 or 3) quantized to 8 bits, JPEG-coded and decoded."""
    if u.dim() != 4 or u.shape[1] not in MODES:
        raise ValueError(f"JPEG needs a batch of 1- or 3-channel images, got shape {list(u.shape)}")
    pixels = (u.detach().clamp(0, 1) * 255.0).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
    mode = MODES[u.shape[1]]
    out = np.empty_like(pixels)
    for index, image in enumerate(pixels):
        buffer = io.BytesIO()
        Image.fromarray(image[..., 0] if mode == "L" else image, mode=mode).save(
            buffer, format="JPEG", quality=int(quality)
        )
        buffer.seek(0)
        decoded = np.asarray(Image.open(buffer).convert(mode))
        out[index] = decoded[..., None] if mode == "L" else decoded
    return torch.from_numpy(out).permute(0, 3, 1, 2).to(device=u.device, dtype=u.dtype) / 255.0
