"""The evasion job: attack the model on the dataset and build the report and artifacts."""

import io
import platform
from importlib.metadata import PackageNotFoundError, version

import numpy as np
from sqlalchemy.orm import Session

from app import __version__
from app.orm import Job
from app.settings import get_settings
from worker.engine.device import pick_device
from worker.engine.evasion.runner import run_evasion
from worker.engine.reports.html import render_report_html
from worker.services.inputs import (
    job_model_record,
    load_black_box_model,
    load_job_dataset,
    load_white_box_model,
)
from worker.services.job_runner import ArtifactPayload, JobOutput
from worker.services.progress import ProgressReporter


def software_versions() -> dict[str, str]:
    """Versions that make a report reproducible."""
    versions = {"gauntlet": __version__, "python": platform.python_version()}
    for package in ("torch", "numpy", "onnx", "onnxruntime"):
        try:
            versions[package] = version(package)
        except PackageNotFoundError:
            versions[package] = "not installed"
    return versions


def _npz_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    """Arrays as a compressed `.npz` file."""
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    return buffer.getvalue()


def _artifact_kind(name: str) -> str:
    """Artifact kind of an array bundle: patches or adversarial examples."""
    return "adversarial_patch" if name.startswith("patch_") else "adversarial_examples"


def execute_evasion(session: Session, job: Job, progress: ProgressReporter) -> JobOutput:
    """Run every attack of the spec over the first max_samples samples."""
    record = job_model_record(session, job)
    input_range = (float(record.input_range[0]), float(record.input_range[1]))
    settings = get_settings()
    model = load_white_box_model(session, record) if record.white_box else None
    black_box = load_black_box_model(session, record, settings.remote_host_allowlist)
    x, y = load_job_dataset(session, job, input_range)
    params = job.params
    x, y = x[: params["max_samples"]], y[: params["max_samples"]]
    device = pick_device(settings.device)
    outcome = run_evasion(
        model.to(device) if model is not None else None,
        x,
        y,
        params["attacks"],
        input_range=input_range,
        batch_size=params["batch_size"],
        seed=job.seed,
        device=device,
        progress=progress,
        black_box=black_box,
    )
    report = {
        "kind": "evasion",
        "model_id": job.model_id,
        "dataset_id": job.dataset_id,
        **outcome.report,
        "versions": software_versions(),
        "seed": job.seed,
        "device": device.type,
    }
    artifacts = [
        ArtifactPayload(_artifact_kind(name), f"{name}.npz", "application/x-npz", _npz_bytes(arrays))
        for name, arrays in outcome.adversarial.items()
    ]
    artifacts += [
        ArtifactPayload("patch_image", name, "image/png", png) for name, png in outcome.images.items()
    ]
    artifacts.append(
        ArtifactPayload(
            "report_html",
            "report.html",
            "text/html; charset=utf-8",
            render_report_html(report).encode("utf-8"),
        )
    )
    summary = {
        "n_samples": report["n_samples"],
        "clean_accuracy": report["clean_accuracy"],
        "worst_case": report["worst_case"],
        "checks_passed": all(check["passed"] for check in report["checks"]),
    }
    return JobOutput(report=report, summary=summary, artifacts=artifacts)
