"""Pick the compute device: CUDA when present, CPU otherwise."""

import torch


def pick_device(preferred: str | None = None) -> torch.device:
    """Return the requested device, or CUDA if available, else CPU."""
    if preferred:
        return torch.device(preferred)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")
