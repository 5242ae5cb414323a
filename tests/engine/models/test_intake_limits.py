"""Intake safety limits: memory bombs, huge inputs and control flow are refused before anything runs."""

import dataclasses
import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from tests.engine.onnx_fixtures import MLP, export_onnx, linear_head, make_model, seeded_model
from worker.engine.models.intake import (
    IntakeLimits,
    ModelRejected,
    OnnxRuntimeClassifier,
    load_onnx_module,
    validate_onnx,
)

FEATURES = 6
REPO = Path(__file__).resolve().parents[3]


@pytest.fixture
def no_runtime(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Fail the test if onnxruntime opens a session or onnx propagates data (both can allocate)."""

    def forbidden(*args: object, **kwargs: object) -> None:
        """Fail loudly."""
        raise AssertionError("intake created an onnxruntime session for a refused model")

    real_infer = onnx.shape_inference.infer_shapes

    def infer_without_data_prop(*args: object, **kwargs: object) -> onnx.ModelProto:
        """onnx's data propagation materialises Range outputs, so it must never run."""
        assert not kwargs.get("data_prop"), "onnx data propagation would allocate the bomb"
        return real_infer(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(ort, "InferenceSession", forbidden)
    monkeypatch.setattr(onnx.shape_inference, "infer_shapes", infer_without_data_prop)
    yield


def _classifier(nodes: list[onnx.NodeProto], inits: dict[str, np.ndarray], shape: list) -> bytes:
    """nodes map x to 'h' [N, FEATURES]; a linear head maps 'h' to 3 logits."""
    head, weights = linear_head(FEATURES, 3)
    model = make_model([*nodes, *head], shape, {**inits, **weights}, output_shape=["N", 3])
    data = model.SerializeToString()
    assert len(data) < 3000  # a few KB of upload
    return data


def _expanded(k: list[int], name: str = "") -> list[onnx.NodeProto]:
    """Nodes expanding the per-sample mean of x, [N, 1], to Shape(x) * k, written to 'e'."""
    return [
        helper.make_node("ReduceMean", ["x"], ["col"], axes=[1]),
        helper.make_node("Shape", ["x"], ["s"]),
        helper.make_node("Mul", ["s", "k"], ["s2"]),
        helper.make_node("Expand", ["col", "s2"], ["e"], name=name),
    ]


def _add_scalar_of(tensor: str) -> list[onnx.NodeProto]:
    """Nodes adding the mean of `tensor` to x, writing 'h' (so the bomb feeds the logits)."""
    return [
        helper.make_node("ReduceMean", [tensor], ["bomb_mean"], keepdims=0),
        helper.make_node("Add", ["x", "bomb_mean"], ["h"]),
    ]


I64 = np.int64
BOMBS = {
    "constant-of-shape": (  # 40000 x 40000 float32 = 6.4 GB from a constant shape
        [helper.make_node("ConstantOfShape", ["s"], ["c"], name="fill"), *_add_scalar_of("c")],
        {"s": np.array([40000, 40000], I64)}, "fill",
    ),
    "input-dependent-expand": (  # Shape(x) * [1, 10**7] -> Expand to [batch, 6e7]: 240 MB per sample
        [*_expanded([1, 10**7], "grow"), *_add_scalar_of("e")], {"k": np.array([1, 10**7], I64)}, "grow",
    ),
    "range": (  # Range(0, 10**9) int64: 8 GB; onnx's data propagation alone would allocate it
        [helper.make_node("Range", ["a", "b", "d"], ["r"], name="count"),
         helper.make_node("Cast", ["r"], ["rf"], to=TensorProto.FLOAT), *_add_scalar_of("rf")],
        {"a": np.array(0, I64), "b": np.array(10**9, I64), "d": np.array(1, I64)}, "count",
    ),
    "tile": (
        [helper.make_node("Tile", ["x", "r"], ["t"], name="repeat"), *_add_scalar_of("t")],
        {"r": np.array([1, 10**8], I64)}, "repeat",
    ),
    "outer-product": (  # [batch, 8004, 1] + [batch, 1, 8004] once the Expand's shape is folded in
        [*_expanded([1, 1334]), helper.make_node("Unsqueeze", ["e", "a2"], ["col2"]),
         helper.make_node("Unsqueeze", ["e", "a1"], ["row"]),
         helper.make_node("Add", ["col2", "row"], ["sq"], name="outer"), *_add_scalar_of("sq")],
        {"k": np.array([1, 1334], I64), "a1": np.array([1], I64), "a2": np.array([2], I64)}, "outer",
    ),
}  # fmt: skip


@pytest.mark.parametrize("name", sorted(BOMBS))
def test_memory_bombs_are_refused_without_running(name: str, no_runtime: None) -> None:
    """A few-KB graph that would allocate gigabytes is refused with the node and its size, unrun."""
    nodes, inits, node_name = BOMBS[name]
    data = _classifier(nodes, inits, ["N", FEATURES])
    with pytest.raises(ModelRejected) as info:
        validate_onnx(data, (FEATURES,), 3)
    assert info.value.code == "resource_limit"
    message = info.value.message
    assert repr(node_name) in message and "MiB" in message and "max_intermediate_bytes" in message


def test_intermediate_limit_is_a_setting() -> None:
    """A 48 MB intermediate passes the default limit, is refused under a 16 MB one, and is reported."""
    nodes = [
        helper.make_node("Tile", ["x", "r"], ["t"], name="wide"),  # [batch, 6 * 250000] = 6 MB per sample
        helper.make_node("Slice", ["t", "start", "end", "axis"], ["h"]),  # the first copy of x again
    ]
    bounds = {"start": np.array([0], I64), "end": np.array([FEATURES], I64), "axis": np.array([1], I64)}
    data = _classifier(nodes, {"r": np.array([1, 250000], I64), **bounds}, ["N", FEATURES])
    report = validate_onnx(data, (FEATURES,), 3)
    assert any("largest intermediate tensor 45.8 MiB (t)" in note for note in report.notes), report.notes
    with pytest.raises(ModelRejected) as info:
        validate_onnx(data, (FEATURES,), 3, limits=IntakeLimits(max_intermediate_bytes=16 << 20))
    assert info.value.code == "resource_limit" and "'wide'" in info.value.message
    assert "48000000 bytes" in info.value.message and "batch of 8" in info.value.message


def test_huge_declared_input_is_refused_before_parsing(no_runtime: None) -> None:
    """A declared input_shape of [1, 40132, 40132] is refused from the declaration alone."""
    with pytest.raises(ModelRejected) as info:
        validate_onnx(b"never parsed", (1, 40132, 40132), 10)
    assert info.value.code == "resource_limit" and "max_input_elements" in info.value.message
    validate_limit = IntakeLimits(max_input_elements=11)
    with pytest.raises(ModelRejected) as info:
        validate_onnx(export_onnx(seeded_model(MLP), (3, 4)), (3, 4), 4, limits=validate_limit)
    assert info.value.code == "resource_limit" and "12 elements" in info.value.message


def _loop_model(trips: int) -> bytes:
    """x + (sum over `trips` iterations of 1): a Loop whose body adds one to a carried value."""
    body = helper.make_graph(
        [
            helper.make_node("Add", ["acc_in", "one"], ["acc_out"]),
            helper.make_node("Identity", ["cond_in"], ["cond_out"]),
        ],
        "body",
        [helper.make_tensor_value_info("i", TensorProto.INT64, []),
         helper.make_tensor_value_info("cond_in", TensorProto.BOOL, []),
         helper.make_tensor_value_info("acc_in", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []),
         helper.make_tensor_value_info("acc_out", TensorProto.FLOAT, [1])],
        [numpy_helper.from_array(np.ones(1, np.float32), "one")],
    )  # fmt: skip
    nodes = [
        helper.make_node("Loop", ["trips", "keep_going", "zero"], ["total"], body=body, name="spin"),
        helper.make_node("Add", ["x", "total"], ["h"]),
    ]
    inits = {"trips": np.array(trips, I64), "keep_going": np.array(True), "zero": np.zeros(1, np.float32)}
    return _classifier(nodes, inits, ["N", FEATURES])


def test_control_flow_is_refused_unless_enabled(no_runtime: None, monkeypatch: pytest.MonkeyPatch) -> None:
    """A Loop of 10**12 iterations is refused unrun; with allow_control_flow a short Loop runs black-box."""
    for entry in (lambda d: validate_onnx(d, (FEATURES,), 3), load_onnx_module, OnnxRuntimeClassifier):
        with pytest.raises(ModelRejected) as info:
            entry(_loop_model(10**12))
        assert info.value.code == "control_flow_refused"
        assert "Loop" in info.value.message and "allow_control_flow" in info.value.message
    monkeypatch.undo()
    report = validate_onnx(_loop_model(3), (FEATURES,), 3, limits=IntakeLimits(allow_control_flow=True))
    assert not report.white_box and report.missing_ops == ["Loop"]


def test_onnxruntime_sessions_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    """Validation and the black-box classifier open sessions with bounded threads and no arena."""
    seen: list[ort.SessionOptions] = []
    real = ort.InferenceSession

    def recording(data: bytes, sess_options: ort.SessionOptions, **kwargs: object) -> ort.InferenceSession:
        """Record the options and open the real session."""
        seen.append(sess_options)
        return real(data, sess_options=sess_options, **kwargs)

    monkeypatch.setattr(ort, "InferenceSession", recording)
    data = export_onnx(seeded_model(MLP), (3, 4))
    validate_onnx(data, (3, 4), 4, limits=IntakeLimits(intra_op_threads=2))
    OnnxRuntimeClassifier(data)
    assert len(seen) == 2
    assert [options.intra_op_num_threads for options in seen] == [2, 1]
    for options in seen:
        assert options.inter_op_num_threads == 1 and not options.enable_cpu_mem_arena
        assert options.execution_mode == ort.ExecutionMode.ORT_SEQUENTIAL


def test_limits_defaults() -> None:
    """The defaults: 4M input elements, 1 GiB per tensor, no control flow, one onnxruntime thread."""
    assert dataclasses.asdict(IntakeLimits()) == {
        "max_input_elements": 4_000_000,
        "max_intermediate_bytes": 1 << 30,
        "allow_control_flow": False,
        "intra_op_threads": 1,
    }


_MEASURE = textwrap.dedent(
    """
    import json, sys
    from pathlib import Path
    import numpy as np, torch
    torch.set_num_threads(1)
    from worker.engine.models.intake import OnnxRuntimeClassifier, load_onnx_module, validate_onnx

    def kib(field):
        line = next(l for l in Path("/proc/self/status").read_text().splitlines() if l.startswith(field))
        return int(line.split()[1]) * 1024

    results = {}
    for path in sys.argv[1:]:
        data = Path(path).read_bytes()
        for name, run in [
            ("validate", lambda: validate_onnx(data, (10,), 10).white_box),
            ("classifier", lambda: OnnxRuntimeClassifier(data)(np.ones((3, 10), np.float32)).shape),
            ("load", lambda: load_onnx_module(data)(torch.ones(3, 10)).shape),
        ]:
            Path("/proc/self/clear_refs").write_text("5")  # reset the peak to the current RSS
            before = kib("VmRSS")
            outcome = run()
            results[f"{Path(path).stem}-{name}"] = [kib("VmHWM") - before, str(outcome)]
    print(json.dumps(results))
    """
)


def _write_big_model(path: Path, rows: int, batch: int | str) -> int:
    """A [rows, 10] float32 initializer (zeros) reduced to the 10 logits' scale; returns the file size."""
    weights = numpy_helper.from_array(np.zeros((rows, 10), np.float32), "W")
    nodes = [
        helper.make_node("ReduceMean", ["W"], ["m"], axes=[0], keepdims=0),
        helper.make_node("Add", ["x", "m"], ["y"]),
    ]
    io = [helper.make_tensor_value_info(n, TensorProto.FLOAT, [batch, 10]) for n in ("x", "y")]
    graph = helper.make_graph(nodes, "big", io[:1], io[1:], [weights])
    onnx.save_model(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), path)
    return path.stat().st_size


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="needs Linux peak-RSS reset")
def test_intake_memory_stays_bounded_on_a_large_model(tmp_path: Path) -> None:
    """A 200 MB model: validation, loading and the classifier peak under a small multiple of its size.

    Measured in a fresh process (peak RSS reset before each call) for a dynamic and a fixed-batch
    graph. The upload's bytes are already in memory; the parsed model, onnxruntime's copy and the
    torch module come on top. Measured: about 3x the file (the builder decodes the largest tensor
    with two transient copies while the parsed model is alive; a fixed batch adds the rewritten
    bytes while onnxruntime loads), 2x for the classifier of a dynamic graph (no parsed copy while
    onnxruntime loads). The bounds leave a little slack; one more copy of the model breaks them.
    """
    rows = 5_000_000  # 200 MB of float32
    sizes = {"dynamic": _write_big_model(tmp_path / "dynamic.onnx", rows, "N")}
    sizes["fixed"] = _write_big_model(tmp_path / "fixed.onnx", rows, 1)
    paths = [str(tmp_path / f"{name}.onnx") for name in sizes]
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [sys.executable, "-c", _MEASURE, *paths],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads(done.stdout.strip().splitlines()[-1])
    assert len(results) == 6
    for key, (growth, outcome) in results.items():
        kind = key.split("-")[0]
        assert outcome in ("True", "(3, 10)", "torch.Size([3, 10])"), (key, outcome)
        bound = 2.5 if key == "dynamic-classifier" else 3.6
        assert growth < bound * sizes[kind], (
            f"{key}: {growth / 2**20:.0f} MiB for {sizes[kind] / 2**20:.0f} MiB"
        )


def test_worker_passes_the_limits_from_its_settings() -> None:
    """The validation worker builds the intake limits from GAUNTLET_* settings."""
    from app.settings import Settings
    from worker.services.model_validation import intake_limits

    settings = Settings(
        max_input_elements=7, max_intermediate_bytes=5 << 20, allow_control_flow=True, onnxruntime_threads=3
    )
    assert intake_limits(settings) == IntakeLimits(7, 5 << 20, True, 3)
    assert intake_limits(Settings()) == IntakeLimits()


@pytest.mark.parametrize("manual", [False, True])
def test_shape_arithmetic_of_a_real_export_is_resolved(manual: bool) -> None:
    """Every tensor of a ViT export (Shape/Gather/Mod/Concat/Reshape chains per block) gets a static size."""
    from tests.engine.models.test_onnx_architectures import SHAPE, TinyViT, _seeded
    from worker.engine.models.intake.resource_check import check_resources

    model = onnx.load_from_string(export_onnx(_seeded(lambda: TinyViT(manual=manual)), SHAPE, opset=17))
    estimate = check_resources(model, "input", [8, *SHAPE], IntakeLimits())
    assert estimate.unknown == 0
    # the largest activation is the fused q, k, v projection: [batch 8, 17 tokens, 3 x 16] float32
    assert estimate.largest_bytes == 8 * 17 * 48 * 4, estimate
