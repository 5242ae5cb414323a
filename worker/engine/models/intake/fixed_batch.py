"""Models exported with a fixed batch of 1 (most model-zoo files): a symbolic batch, or chunks of one.

The declared batch dim of the input and output is rewritten to the symbolic BATCH_PARAM. When the
graph then computes a batch of several samples exactly as it computes each sample alone, it runs
batched; when it does not (a Reshape to [1, -1] baked in, say), it runs one sample at a time. Both
onnxruntime (OrtRunner) and the torch module (PerSampleModule) make that choice by the same test.
"""

from collections.abc import Callable

import numpy as np
import onnx
import onnxruntime as ort
import torch
from torch import nn

BATCH_PARAM = "batch"
AGREEMENT_RTOL = 1e-4


def fixed_batch(value: onnx.ValueInfoProto) -> int | None:
    """The declared fixed size of a value's first dim, or None when it is symbolic or unset."""
    tensor_type = value.type.tensor_type
    if not tensor_type.HasField("shape") or not tensor_type.shape.dim:
        return None
    first = tensor_type.shape.dim[0]
    return int(first.dim_value) if first.HasField("dim_value") else None


def make_batch_symbolic(model: onnx.ModelProto, input_name: str) -> None:
    """Rewrite the input's and outputs' first dim to BATCH_PARAM and drop value_info (in place)."""
    graph = model.graph
    for value in (*(i for i in graph.input if i.name == input_name), *graph.output):
        if fixed_batch(value) is not None:
            first = value.type.tensor_type.shape.dim[0]
            first.Clear()
            first.dim_param = BATCH_PARAM
    del graph.value_info[:]  # intermediate shapes declared with the fixed batch would contradict it


def agrees(batched: np.ndarray, per_sample: np.ndarray) -> bool:
    """True when a batched result equals the per-sample results up to AGREEMENT_RTOL of their scale."""
    if batched.shape != per_sample.shape or not np.isfinite(batched).all():
        return False
    scale = max(float(np.abs(per_sample).max(initial=0.0)), 1.0)
    return bool(np.abs(batched.astype(np.float64) - per_sample).max(initial=0.0) <= AGREEMENT_RTOL * scale)


def runs_batched(run: Callable[[np.ndarray], np.ndarray], x: np.ndarray, per_sample: np.ndarray) -> bool:
    """True when run(x) on the whole batch reproduces the per-sample results."""
    try:
        return agrees(np.asarray(run(x)), per_sample)
    except Exception:  # a graph with the batch baked in fails here; it then runs in chunks of one
        return False


class OrtRunner:
    """Runs an onnxruntime session on a batch, whole or one sample at a time (`chunked`)."""

    def __init__(self, session: ort.InferenceSession, input_name: str, chunked: bool = False) -> None:
        """Keep the session and how to feed it."""
        self.session = session
        self.input_name = input_name
        self.chunked = chunked

    def run_whole(self, x: np.ndarray) -> np.ndarray:
        """One session run on the whole batch."""
        return np.asarray(self.session.run(None, {self.input_name: x})[0])

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """The first output for x, concatenated over single samples when chunked."""
        if not self.chunked or x.shape[0] == 1:
            return self.run_whole(x)
        return np.concatenate([self.run_whole(x[i : i + 1]) for i in range(x.shape[0])])


class PerSampleModule(nn.Module):
    """Runs a module one sample at a time and concatenates the results (gradients flow through).

    For graphs exported with a fixed batch of 1 that cannot run a larger batch correctly.
    """

    def __init__(self, inner: nn.Module) -> None:
        """Wrap the module."""
        super().__init__()
        self.inner = inner

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Concatenate the per-sample outputs along the batch dim."""
        if x.shape[0] == 1:
            return self.inner(x)
        return torch.cat([self.inner(x[i : i + 1]) for i in range(x.shape[0])])


def torch_runs_batched(module: nn.Module, x: torch.Tensor) -> bool:
    """True when the module computes a batch exactly as it computes each sample alone."""
    with torch.no_grad():
        try:
            per_sample = torch.cat([module(x[i : i + 1]) for i in range(x.shape[0])]).numpy()
        except Exception:
            return False
        return runs_batched(lambda batch: module(torch.from_numpy(batch)).numpy(), x.numpy(), per_sample)


def batch_safe_module(module: nn.Module, probe: torch.Tensor | None) -> nn.Module:
    """The module itself when it batches correctly on `probe`, else wrapped in PerSampleModule.

    Without a probe (the sample shape is unknown) the module is wrapped.
    """
    if probe is not None and torch_runs_batched(module, probe):
        return module
    return PerSampleModule(module).eval()
