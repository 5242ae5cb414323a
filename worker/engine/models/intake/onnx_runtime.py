"""Loading a validated ONNX model: the white-box torch module and the black-box onnxruntime classifier."""

import numpy as np
import torch

from worker.engine.models.intake.errors import ModelRejected
from worker.engine.models.intake.fixed_batch import OrtRunner, batch_safe_module, runs_batched
from worker.engine.models.intake.limits import DEFAULT_LIMITS, IntakeLimits
from worker.engine.models.intake.onnx_parse import make_session
from worker.engine.models.intake.onnx_prepare import PreparedOnnx, prepare_onnx
from worker.engine.models.onnx_graph import GraphBuildError, build_torch_module

PROBE_SAMPLES = 2


def _probe(prepared: PreparedOnnx) -> np.ndarray | None:
    """Deterministic [0, 1) inputs of the declared sample shape, or None when a dim is not fixed."""
    graph_input = next(i for i in prepared.model.graph.input if i.name == prepared.input_name)
    dims = graph_input.type.tensor_type.shape.dim[1:]
    if not all(d.HasField("dim_value") and d.dim_value > 0 for d in dims):
        return None
    shape = (PROBE_SAMPLES, *(int(d.dim_value) for d in dims))
    return np.random.default_rng(0).random(shape, dtype=np.float32)


def load_onnx_module(data: bytes, *, limits: IntakeLimits = DEFAULT_LIMITS) -> torch.nn.Module:
    """The white-box PyTorch module for a vetted ONNX upload, in eval mode.

    A graph exported with a fixed batch of 1 that does not batch correctly is wrapped so it runs
    one sample at a time (PerSampleModule); old opsets are upgraded as in validation.
    """
    prepared = prepare_onnx(data, limits)
    prepared.ort_bytes = b""  # only the parsed model is needed here
    try:
        module = build_torch_module(prepared.model).eval()
    except GraphBuildError as exc:
        raise ModelRejected("unsupported_ops", str(exc)) from exc
    if not prepared.fixed_batch:
        return module
    probe = _probe(prepared)
    return batch_safe_module(module, None if probe is None else torch.from_numpy(probe))


class OnnxRuntimeClassifier:
    """Black-box access to an ONNX model through onnxruntime; counts every sample queried.

    The session has bounded threads and no memory arena (see make_session). A graph exported with a
    fixed batch of 1 runs with a symbolic batch when that reproduces single-sample results, otherwise
    one sample at a time.
    """

    def __init__(self, data: bytes, *, limits: IntakeLimits = DEFAULT_LIMITS) -> None:
        """Vet the bytes and open an onnxruntime CPU session."""
        prepared = prepare_onnx(data, limits)
        probe, ort_bytes, input_name, fixed = (
            _probe(prepared) if prepared.fixed_batch else None,
            prepared.ort_bytes,
            prepared.input_name,
            prepared.fixed_batch,
        )
        del prepared  # no parsed copy is kept while (and after) onnxruntime loads its own
        self._runner = OrtRunner(make_session(ort_bytes, limits), input_name)
        del ort_bytes
        if fixed:
            if probe is None:
                self._runner.chunked = True
            else:
                single = np.concatenate([self._runner.run_whole(probe[i : i + 1]) for i in range(len(probe))])
                self._runner.chunked = not runs_batched(self._runner.run_whole, probe, single)
        self.queries = 0

    @property
    def chunked(self) -> bool:
        """True when batches are run one sample at a time."""
        return self._runner.chunked

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """Return float32 logits for a float32 batch and add its size to `queries`."""
        batch = np.ascontiguousarray(x, dtype=np.float32)
        logits = self._runner(batch)
        self.queries += int(batch.shape[0])
        return np.asarray(logits, dtype=np.float32)
