"""`gauntlet demo` and `gauntlet serve`: the whole system on one machine, driven over HTTP."""

import ctypes
import io
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from contextlib import ExitStack, suppress
from pathlib import Path
from types import FrameType

import httpx

from app.auth import create_key
from app.db import make_engine, make_session_factory, session_scope
from app.migrate import upgrade
from app.settings import get_settings
from worker.demo_jobs import DEMO_JOBS, DemoJob

PR_SET_PDEATHSIG = 1


class Stopped(BaseException):
    """SIGTERM or Ctrl-C reached `gauntlet serve` or `gauntlet demo`."""


def _stop(signum: int, _frame: FrameType | None) -> None:
    """Signal handler: ignore further signals (the children are being stopped) and unwind."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    raise Stopped(signal.Signals(signum).name)


def _die_with(parent: int) -> Callable[[], None]:
    """A preexec_fn: the child gets SIGTERM when its parent dies, even by SIGKILL (Linux)."""

    def preexec() -> None:
        if sys.platform.startswith("linux"):
            ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
        if os.getppid() != parent:  # the parent died before prctl took effect
            os.kill(os.getpid(), signal.SIGTERM)

    return preexec


def _free_port() -> int:
    """A free TCP port on localhost."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _spawn(stack: ExitStack, log_path: Path | None, *args: str) -> subprocess.Popen:
    """Start `gauntlet <args>` (output to log_path, or the terminal) and stop it when the stack closes."""
    output = stack.enter_context(open(log_path, "ab")) if log_path else None  # noqa: SIM115
    process = subprocess.Popen(  # noqa: S603
        [sys.executable, "-m", "gauntlet_cli", *args],
        start_new_session=True,
        stdout=output,
        stderr=output,
        preexec_fn=_die_with(os.getpid()),  # noqa: PLW1509
    )

    def stop() -> None:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=10)
        with suppress(ProcessLookupError):  # what is left of its group (a worker's pool processes)
            os.killpg(process.pid, signal.SIGKILL)

    stack.callback(stop)
    return process


def _wait_ready(client: httpx.Client, timeout: float = 60.0) -> None:
    """Wait until /readyz answers 200."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if client.get("/readyz").status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.3)
    raise RuntimeError("the API did not become ready in time")


def _onnx_bytes() -> bytes:
    """Train the demo's digits model and export it to ONNX with a dynamic batch dimension."""
    import torch

    from worker.engine.training.classifier import train_digits_model

    model = train_digits_model("small-cnn", epochs=15, seed=0)
    buffer = io.BytesIO()
    torch.onnx.export(
        model.eval(),
        (torch.rand(1, 1, 8, 8),),
        buffer,
        dynamo=False,
        input_names=["input"],
        output_names=["logits"],
        dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
    )
    return buffer.getvalue()


def _poll(client: httpx.Client, path: str, done: set[str], timeout: float, show: bool = False) -> dict:
    """Poll a resource until its status is in `done`."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        body = client.get(path).raise_for_status().json()
        line = f"  {body['status']:<10} {body.get('progress', 0):6.1%}  {body.get('stage') or ''}"
        if show and line != last:
            print(line, flush=True)
            last = line
        if body["status"] in done:
            return body
        time.sleep(0.5)
    raise RuntimeError(f"{path} did not finish in {timeout:.0f} s")


def _save_report(client: httpx.Client, folder: Path, job_id: str, report: dict) -> Path:
    """Write the JSON and HTML reports and the job's artifacts to a folder."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "report.json").write_text(json.dumps(report, indent=2))
    for artifact in client.get(f"/v1/jobs/{job_id}/artifacts").json()["items"]:
        (folder / artifact["name"]).write_bytes(client.get(artifact["download_url"]).content)
    return folder


def _run_demo_job(client: httpx.Client, demo: DemoJob, model_id: str, folder: Path, base: str) -> bool:
    """Submit one demo job, poll it to the end, print its report and save it with its artifacts."""
    job = client.post("/v1/jobs", json=demo.spec(model_id)).raise_for_status().json()
    print(f"job {job['id']} submitted; polling ...", flush=True)
    job = _poll(
        client, f"/v1/jobs/{job['id']}", {"succeeded", "failed", "cancelled"}, timeout=1800, show=True
    )
    if job["status"] != "succeeded":
        print(f"job {job['status']}: {job['error']}", file=sys.stderr)
        return False
    report = client.get(f"/v1/jobs/{job['id']}/report").json()
    print("\n".join(demo.show(report)))
    saved = _save_report(client, folder, job["id"], report)
    print(f"report saved: {saved / 'report.json'} and {saved / 'report.html'} (open it in a browser)")
    print(f"over HTTP:    {base}/v1/jobs/{job['id']}/report and /report.html", flush=True)
    return True


def _upload_model(client: httpx.Client) -> dict | None:
    """Train, export and upload the demo's digits model; None (after saying why) when it is invalid."""
    print("training a small CNN on builtin:digits-train and exporting it to ONNX ...", flush=True)
    model = client.post(
        "/v1/models",
        files={"file": ("digits-cnn.onnx", _onnx_bytes())},
        data={"name": "digits-cnn", "format": "onnx", "input_shape": "[1, 8, 8]", "num_classes": "10"},
    ).json()
    model = _poll(client, f"/v1/models/{model['id']}", {"ready", "invalid"}, timeout=120)
    print(f"model {model['id']}: {model['status']} (white-box: {model['white_box']})", flush=True)
    if model["status"] != "ready":
        print(f"model invalid: {model['invalid_reason']}", file=sys.stderr)
        return None
    return model


def run_demo(*, keep_running: bool, port: int | None = None, run_jobs: bool = True) -> int:
    """Start API and worker, create a key, and (unless run_jobs is off) run one job of every kind.

    SIGTERM or Ctrl-C stops the API and the worker it started; they also get SIGTERM if this
    process dies without cleaning up.
    """
    previous = {sig: signal.signal(sig, _stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        return _run(keep_running=keep_running, port=port, run_jobs=run_jobs)
    except Stopped:
        print("stopping the API and the worker", flush=True)
        return 0 if keep_running else 1
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _run(*, keep_running: bool, port: int | None, run_jobs: bool) -> int:
    """The body of run_demo."""
    settings = get_settings()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    upgrade(settings.resolved_database_url)
    with session_scope(make_session_factory(make_engine(settings))) as session:
        key = create_key(session, "demo")
    port = port or (settings.api_port if keep_running else _free_port())
    base = f"http://127.0.0.1:{port}"
    logs = settings.data_dir / "logs"
    logs.mkdir(exist_ok=True)
    with ExitStack() as stack:
        _spawn(stack, None if keep_running else logs / "api.log", "api", "--port", str(port))
        _spawn(stack, None if keep_running else logs / "worker.log", "worker")
        if not keep_running:
            print(f"API and worker started; their logs go to {logs}", flush=True)
        client = stack.enter_context(
            httpx.Client(base_url=base, headers={"Authorization": f"Bearer {key}"}, timeout=30)
        )
        _wait_ready(client)
        print(f"API at {base} (docs at {base}/docs); the API key is on the next line", flush=True)
        print(key, flush=True)
        print(f"client: export GAUNTLET_URL={base} GAUNTLET_API_KEY=<the key>; gauntlet --help", flush=True)
        if run_jobs:
            model = _upload_model(client)
            if model is None:
                return 1
            for number, demo in enumerate(DEMO_JOBS, start=1):
                print(f"\n[{number}/{len(DEMO_JOBS)}] {demo.title}", flush=True)
                folder = settings.data_dir / "demo" / str(number)
                if not _run_demo_job(client, demo, model["id"], folder, base):
                    return 1
        if keep_running:
            print(f"\nAPI and worker keep running at {base}; Ctrl-C or SIGTERM stops them.", flush=True)
            while True:
                time.sleep(3600)
    return 0
