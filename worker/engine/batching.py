"""Batch bounds over a dataset, so memory stays flat as it grows."""


def batch_bounds(n: int, batch_size: int) -> list[tuple[int, int]]:
    """Start and stop of each batch."""
    return [(start, min(start + batch_size, n)) for start in range(0, n, batch_size)]
