"""What a job kind returns: the report in its shared envelope, artifacts and derived models."""

import io
import platform
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from typing import Any

import numpy as np

from app import __version__
from app.orm import new_id
from app.schemas.jobs import AnyJobSpec
from worker.engine.reports.html import render_report_html
from worker.services.context import RunEnv


@dataclass
class ArtifactPayload:
    """A file a job produced, before it is stored."""

    kind: str
    name: str
    media_type: str
    data: bytes


@dataclass
class DerivedModel:
    """A model a job produced (surrogate, poisoned victim, hardened model), already through the intake.

    It is stored as an ONNX artifact and registered as a new model of the tenant, with lineage, in the
    transaction that marks the job succeeded. `id` is assigned by `finish_output`.
    """

    name: str
    onnx: bytes
    intake: dict[str, Any]
    white_box: bool
    input_shape: tuple[int, ...]
    num_classes: int
    input_range: tuple[float, float]
    derived_from: str
    role: str
    normalization: dict[str, list[float]] | None = None
    preprocessing: list[dict[str, Any]] | None = None
    id: str = ""


@dataclass
class Outcome:
    """What every kind's runner returns: its report sections, checks, summary, artifacts and derived models.

    The job runner wraps `report` in the shared envelope (DESIGN section 10) with `checks` and the derived
    models' ids, renders the HTML page, and stores everything in one transaction.
    """

    report: dict[str, Any]
    checks: list[dict[str, Any]]
    summary: dict[str, Any]
    threat_model: str | dict[str, Any]
    artifacts: list["ArtifactPayload"] = field(default_factory=list)
    derived_models: list["DerivedModel"] = field(default_factory=list)


@dataclass
class JobOutput:
    """The finished report, a short summary, artifacts and derived models, as stored."""

    report: dict[str, Any]
    summary: dict[str, Any]
    artifacts: list[ArtifactPayload] = field(default_factory=list)
    derived_models: list[DerivedModel] = field(default_factory=list)


def software_versions() -> dict[str, str]:
    """Versions that make a report reproducible."""
    versions = {"gauntlet": __version__, "python": platform.python_version()}
    for package in ("torch", "numpy", "onnx", "onnxruntime"):
        try:
            versions[package] = version(package)
        except PackageNotFoundError:
            versions[package] = "not installed"
    return versions


def npz_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    """Arrays as a compressed `.npz` file."""
    buffer = io.BytesIO()
    np.savez_compressed(buffer, allow_pickle=False, **arrays)
    return buffer.getvalue()


def npz_artifact(kind: str, name: str, arrays: dict[str, np.ndarray]) -> ArtifactPayload:
    """An `.npz` artifact of arrays."""
    return ArtifactPayload(kind, f"{name}.npz", "application/x-npz", npz_bytes(arrays))


def png_artifact(kind: str, name: str, png: bytes) -> ArtifactPayload:
    """A PNG artifact."""
    return ArtifactPayload(kind, name, "image/png", png)


def envelope(
    spec: AnyJobSpec, env: RunEnv, threat_model: str | dict[str, Any], *, model_name: str
) -> dict[str, Any]:
    """The fields every kind's report shares (DESIGN section 10), before the kind's own sections."""
    return {
        "kind": spec.kind,
        "job_id": env.job_id,
        "model_id": spec.model_id,
        "model_name": model_name,
        "dataset_id": spec.dataset_id,
        "seed": env.seed,
        "versions": software_versions(),
        "device": env.device.type,
        "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "threat_model": threat_model,
        "checks": [],
        "derived_model_ids": [],
    }


def finish_output(spec: AnyJobSpec, env: RunEnv, outcome: Outcome, *, model_name: str) -> JobOutput:
    """Wrap a kind's report in the envelope, name the derived models, render the HTML page."""
    derived = list(outcome.derived_models)
    for model in derived:
        model.id = new_id("mdl")
    report = envelope(spec, env, outcome.threat_model, model_name=model_name) | outcome.report
    report["checks"] = outcome.checks
    report["derived_model_ids"] = [model.id for model in derived]
    files = list(outcome.artifacts)
    files += [
        ArtifactPayload("model_onnx", f"{m.role}_{m.id}.onnx", "application/onnx", m.onnx) for m in derived
    ]
    html = render_report_html(report).encode("utf-8")
    files.append(ArtifactPayload("report_html", "report.html", "text/html; charset=utf-8", html))
    summary = {**outcome.summary, "derived_model_ids": report["derived_model_ids"]}
    return JobOutput(report=report, summary=summary, artifacts=files, derived_models=derived)
