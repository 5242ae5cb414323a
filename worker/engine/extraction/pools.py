"""Query pools an executor makes itself rather than loads: `synthetic:uniform`."""

from collections.abc import Sequence

import numpy as np

SYNTHETIC_UNIFORM = "synthetic:uniform"
SYNTHETIC_POOLS = (SYNTHETIC_UNIFORM,)


def synthetic_uniform(
    input_shape: Sequence[int], n_samples: int, input_range: tuple[float, float], seed: int
) -> np.ndarray:
    """n_samples inputs drawn uniformly from the input range (float32), from `seed`."""
    if n_samples < 1:
        raise ValueError("a synthetic pool needs at least one sample")
    low, high = float(input_range[0]), float(input_range[1])
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0x5A17]))
    shape = (int(n_samples), *(int(d) for d in input_shape))
    return rng.uniform(low, high, size=shape).astype(np.float32).clip(low, high)
