"""Cancellation reaches inside a batch: a long attack on one batch stops at the next check."""

import pytest
import torch

from worker.engine.evasion.runner import run_evasion
from worker.engine.interrupt import Interruptible, Throttled


class Cancelled(Exception):
    """Raised by the test's progress callback, as the worker's reporter raises JobCancelled."""


def test_a_long_single_batch_attack_is_interrupted_from_inside(small_cnn, held_out, monkeypatch):
    monkeypatch.setattr(Throttled.__init__, "__defaults__", (0.0,))
    calls: list[str] = []
    forwards = {"n": 0}
    original = Interruptible.forward

    def counting(self, x):
        forwards["n"] += 1
        return original(self, x)

    monkeypatch.setattr(Interruptible, "forward", counting)

    def progress(fraction: float, stage: str) -> None:
        calls.append(stage)
        if forwards["n"] > 50:
            raise Cancelled

    spec = [{"name": "cw", "norm": "l2", "eps": [1.0], "binary_search_steps": 9, "steps": 10_000}]
    with pytest.raises(Cancelled):
        # one batch holds every sample: without checks inside the batch this runs for minutes
        run_evasion(small_cnn, held_out[0][:64], held_out[1][:64], spec, batch_size=64, progress=progress)
    assert forwards["n"] < 200


def test_the_check_is_throttled():
    calls = []
    throttled = Throttled(lambda: calls.append(1), interval=3600)
    for _ in range(100):
        throttled()
    assert calls == []
    wrapped = Interruptible(torch.nn.Identity(), lambda: calls.append(1))
    assert torch.equal(wrapped(torch.ones(2)), torch.ones(2))
