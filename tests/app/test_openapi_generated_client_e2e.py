"""A client generated from the served OpenAPI document by openapi-python-client works end to end.

It uploads a model (multipart, the file as `format: binary`) and a dataset, registers an architecture
(JSON), submits a job of each kind through its typed specs against a live API server and worker, and
parses every report into the typed model of its kind.
"""

import importlib
import io
import json
import pkgutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest

from app.schemas.reports import REPORT_ADAPTER
from tests.app.helpers import TERMINAL, npz_bytes

pytestmark = [pytest.mark.service, pytest.mark.slow]
PACKAGE = "generated_gauntlet_api"
PGD = {"name": "pgd", "eps": [0.1], "steps": 5}
SPECS: dict[str, dict[str, Any]] = {
    "evasion": {"attacks": [PGD, {"name": "fgsm", "eps": [0.1]}], "max_samples": 50, "batch_size": 64},
    "extraction": {
        "query_dataset_id": "builtin:digits-train",
        "budgets": [100],
        "attacks": [{"name": "knockoff", "strategy": "random"}],
        "surrogate": {"architecture": "victim", "epochs": 2, "min_steps": 0},
        "detection": [{"name": "prada"}],
        "max_samples": 50,
    },
    "poisoning": {
        "train_dataset_id": "builtin:digits-train",
        "training": {"init": "random", "epochs": 2},
        "attacks": [{"name": "badnets", "trigger": {"size": 2}, "target_class": 0, "rate": [0.1]}],
        "detection": [{"name": "activation_clustering"}],
    },
    "defense": {
        "train_dataset_id": "builtin:digits-train",
        "defense": {"name": "adversarial_training", "method": "pgd", "eps": 0.1, "epochs": 1},
        "evaluation": {"attacks": [PGD], "max_samples": 50, "sanity_runs": False},
    },
}


@pytest.fixture(scope="module")
def generated(settings, tmp_path_factory: pytest.TempPathFactory) -> ModuleType:
    """The client package openapi-python-client generates from the app's OpenAPI document."""
    from app.main import create_app

    root = tmp_path_factory.mktemp("generated-client")
    document = root / "openapi.json"
    document.write_text(json.dumps(create_app(settings).openapi()))
    generator = Path(sys.executable).with_name("openapi-python-client")
    result = subprocess.run(
        [str(generator), "generate", "--path", str(document), "--output-path", str(root / PACKAGE)]
        + ["--meta", "none"],
        capture_output=True,
        text=True,
        timeout=300,
        env={"PATH": f"{generator.parent}:/usr/bin:/bin"},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Warning" not in result.stdout + result.stderr, result.stdout + result.stderr
    sys.path.insert(0, str(root))
    try:
        package = importlib.import_module(PACKAGE)
        for module in pkgutil.walk_packages(package.__path__, f"{PACKAGE}."):
            importlib.import_module(module.name)  # every generated module imports
        yield package
    finally:
        sys.path.remove(str(root))


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="module")
def base_url(settings) -> Iterator[str]:
    """A real uvicorn server on a free loopback port, on the test database and Redis."""
    import uvicorn

    from app.main import create_app

    port = _free_port()
    server = uvicorn.Server(
        uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "the API server did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)


def _module(name: str) -> ModuleType:
    return importlib.import_module(f"{PACKAGE}.{name}")


def _wait(read: Any, done: set[str], timeout: float = 900) -> Any:
    """Call a generated `get_*` operation until the object's status is in `done`."""
    deadline = time.monotonic() + timeout
    while True:
        view = read()
        status = getattr(view.status, "value", view.status)
        if status in done:
            return view
        assert time.monotonic() < deadline, f"still {status}: {view.to_dict()}"
        time.sleep(0.5)


def test_a_generated_client_uploads_submits_every_kind_and_parses_typed_reports(
    generated, base_url, make_key, start_worker, digits_onnx
):
    start_worker()
    token = make_key("generated-client")["Authorization"].removeprefix("Bearer ")
    client = generated.AuthenticatedClient(base_url=base_url, token=token, timeout=60)
    models, types = _module("models"), _module("types")
    upload_model, get_model = _module("api.models.upload_model"), _module("api.models.get_model")
    upload_dataset, submit_job = _module("api.datasets.upload_dataset"), _module("api.jobs.submit_job")
    get_job, get_report = _module("api.jobs.get_job"), _module("api.jobs.get_report")
    list_models = _module("api.models.list_models")

    form = models.ModelUploadForm(
        file=types.File(payload=io.BytesIO(digits_onnx), file_name="model.onnx"),
        name="generated-onnx",
        format_=models.ModelUploadFormFormat("onnx"),
        input_shape="[1, 8, 8]",
        num_classes=10,
    )
    uploaded = upload_model.sync(client=client, body=form)
    assert isinstance(uploaded, models.ModelView), uploaded
    architecture = upload_model.sync(
        client=client,
        body=models.UploadModelJsonArchitectureModelCreate.from_dict(
            {
                "name": "generated-arch",
                "architecture": "small-cnn",
                "input_shape": [1, 8, 8],
                "num_classes": 10,
            }
        ),
    )
    assert isinstance(architecture, models.ModelView), architecture
    for model in (uploaded, architecture):
        validated = _wait(lambda m=model: get_model.sync(client=client, model_id=m.id), {"ready", "invalid"})
        assert validated.status.value == "ready", validated.to_dict()
    page = list_models.sync(client=client, limit=1)
    assert len(page.items) == 1 and page.next_cursor

    from worker.engine.datasets import load_builtin

    test = load_builtin("digits-test")
    data = npz_bytes(x=test.x[:60].astype(np.float32), y=test.y[:60].astype(np.int64))
    dataset = upload_dataset.sync(
        client=client,
        body=models.BodyUploadDataset(
            file=types.File(payload=io.BytesIO(data), file_name="d.npz"), name="held-out"
        ),
    )
    assert isinstance(dataset, models.DatasetView) and dataset.n_samples == 60, dataset

    spec_classes = {
        "evasion": models.EvasionJobSpec,
        "extraction": models.ExtractionJobSpec,
        "poisoning": models.PoisoningJobSpec,
        "defense": models.DefenseJobSpec,
    }
    report_classes = {
        "evasion": models.EvasionReport,
        "extraction": models.ExtractionReport,
        "poisoning": models.PoisoningReport,
        "defense": models.DefenseReport,
    }
    jobs = {}
    for kind, params in SPECS.items():
        model_id = architecture.id if kind == "poisoning" else uploaded.id
        dataset_id = dataset.id if kind == "evasion" else "builtin:digits-test"
        spec = {"kind": kind, "model_id": model_id, "dataset_id": dataset_id, "seed": 0, "params": params}
        job = submit_job.sync(client=client, body=spec_classes[kind].from_dict(spec))
        assert isinstance(job, models.JobView), (kind, job)
        jobs[kind] = job.id
    for kind, job_id in jobs.items():
        finished = _wait(lambda j=job_id: get_job.sync(client=client, job_id=j), TERMINAL)
        assert finished.status.value == "succeeded", (kind, finished.to_dict())
        report = get_report.sync(client=client, job_id=job_id)
        assert isinstance(report, report_classes[kind]), (kind, type(report))
        raw = get_report.sync_detailed(client=client, job_id=job_id).content
        typed = REPORT_ADAPTER.validate_json(raw)
        assert typed.kind == kind and typed.job_id == job_id == report.job_id
