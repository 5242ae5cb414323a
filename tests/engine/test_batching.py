"""Batches fitted to the device: a device out-of-memory halves the batch and retries it."""

import copy

import numpy as np
import pytest
import torch
from torch import Tensor, nn

from app.schemas.evasion import EvasionParams
from worker.engine.batching import BatchFit, is_device_out_of_memory
from worker.engine.evasion.runner import run_evasion

N, BIG, FITS = 64, 32, 8


class TightDevice(nn.Module):
    """A model on a 'device' whose memory holds at most `limit` samples a pass: more raises CUDA's OOM."""

    def __init__(self, inner: nn.Module, limit: int) -> None:
        super().__init__()
        self.inner, self.limit, self.refused = inner, limit, 0

    def forward(self, x: Tensor) -> Tensor:
        if len(x) > self.limit:
            self.refused += 1
            raise torch.OutOfMemoryError(f"CUDA out of memory. Tried to allocate {len(x)} samples")
        return self.inner(x)


def _pieces(fit: BatchFit, bounds: list[tuple[int, int]], limit: int) -> list[tuple[int, int]]:
    """The pieces work ran on to completion, with a work that fails above `limit` samples."""
    done: list[tuple[int, int]] = []

    def work(a: int, b: int) -> None:
        if b - a > limit:
            raise torch.OutOfMemoryError("CUDA out of memory.")
        done.append((a, b))

    for start, stop in bounds:
        fit.run(start, stop, work)
    return done


def test_out_of_memory_halves_the_batch_and_retries_it() -> None:
    """Every sample is done once, in the batches of the size that fits; the size stays halved."""
    fit = BatchFit(32)
    assert _pieces(fit, [(0, 32), (32, 64), (64, 70)], limit=10) == [
        (0, 8), (8, 16), (16, 24), (24, 32), (32, 40), (40, 48), (48, 56), (56, 64), (64, 70)
    ]  # fmt: skip
    assert fit.size == 8
    assert _pieces(BatchFit(4), [(0, 4), (4, 8)], limit=4) == [(0, 4), (4, 8)]


def test_what_is_not_a_device_out_of_memory_propagates() -> None:
    """A model error, the host's memory cap, or an OOM at a single sample are not retried."""

    def fails(error: Exception):  # noqa: ANN202
        def work(_a: int, _b: int) -> None:
            raise error

        return work

    for error in (ValueError("bad input"), MemoryError(), RuntimeError("DefaultCPUAllocator: no memory")):
        fit = BatchFit(16)
        with pytest.raises(type(error)):
            fit.run(0, 16, fails(error))
        assert fit.size == 16
    with pytest.raises(torch.OutOfMemoryError):
        BatchFit(1).run(0, 3, fails(torch.OutOfMemoryError("CUDA out of memory.")))


def test_device_out_of_memory_is_recognised() -> None:
    """torch's OOM class and the RuntimeErrors CUDA raises; not the CPU allocator's failure."""
    assert is_device_out_of_memory(torch.OutOfMemoryError("x"))
    assert is_device_out_of_memory(RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB"))
    assert is_device_out_of_memory(RuntimeError("CUDA error: CUBLAS_STATUS_ALLOC_FAILED when calling"))
    assert not is_device_out_of_memory(RuntimeError("DefaultCPUAllocator: can't allocate memory"))
    assert not is_device_out_of_memory(MemoryError())


def _attacks() -> list[dict]:
    """Random starts, a black-box search and a one-step attack."""
    params = EvasionParams.model_validate(
        {
            "attacks": [
                {"name": "fgsm", "eps": [0.1]},
                {"name": "pgd", "eps": [0.05, 0.1], "steps": 5},
                {"name": "square", "eps": [0.1], "queries": 20},
            ]
        }
    )
    return [attack.model_dump(mode="json") for attack in params.attacks]


def _without_seconds(report: dict) -> dict:
    """The report without wall-clock seconds."""
    report = copy.deepcopy(report)
    for attack in report["attacks"]:
        for row in attack["results"]:
            row.pop("seconds", None)
    return report


def test_an_evaluation_that_runs_out_of_device_memory_gives_the_report_at_the_batch_that_fits(
    small_cnn: nn.Module, held_out: tuple[np.ndarray, np.ndarray]
) -> None:
    """Batch 32 on a device that holds 8: the job does not fail, and the report is the batch-8 report."""
    x, y = held_out[0][:N], held_out[1][:N]
    tight = TightDevice(small_cnn, FITS)
    halved = run_evasion(tight, x, y, _attacks(), batch_size=BIG, seed=5, sanity_runs=False)
    small = run_evasion(small_cnn, x, y, _attacks(), batch_size=FITS, seed=5, sanity_runs=False)
    assert tight.refused > 0
    assert _without_seconds(halved.report) == _without_seconds(small.report)
    for name, arrays in small.adversarial.items():
        for key, value in arrays.items():
            np.testing.assert_array_equal(halved.adversarial[name][key], value, err_msg=f"{name}/{key}")
    # Not equal zeros: the attacks broke samples.
    assert any(row["n_succeeded"] for entry in small.report["attacks"] for row in entry["results"])
    # And the batch size matters here: at 32 unhindered the random streams differ.
    big = run_evasion(small_cnn, x, y, _attacks(), batch_size=BIG, seed=5, sanity_runs=False)
    assert not np.array_equal(big.adversarial["adversarial_pgd_linf_1"]["x_adv"], small.adversarial[
        "adversarial_pgd_linf_1"]["x_adv"])  # fmt: skip
