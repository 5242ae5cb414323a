"""Seeding: independent, reproducible random streams derived from a run seed and a position."""

import numpy as np
import torch


def seeded_generator(device: torch.device, seed: int, *keys: int) -> torch.Generator:
    """A generator on device seeded from the run seed and a position, independent of other streams."""
    state = np.random.SeedSequence([seed, *keys]).generate_state(2, dtype=np.uint32)
    return torch.Generator(device=device).manual_seed(int(state[0]) << 32 | int(state[1]))


def numpy_rng(seed: int, *keys: int) -> np.random.Generator:
    """A NumPy generator seeded from the run seed and a position."""
    return np.random.default_rng(np.random.SeedSequence([seed, *keys]))
