"""Log a report to MLflow (the `mlflow` extra): headline figures as metrics, the spec as parameters."""

import json
import os
import re
import tempfile
import time
from pathlib import Path
from typing import Any

from app.schemas.reports.headline import headline, metric
from gauntlet_client.cli.thresholds import NAMES

MAX_PARAM_CHARS = 6000
BATCH = 100


def _key(text: str) -> str:
    """A metric or parameter name MLflow accepts (letters, digits, `_-./ :`; others dropped)."""
    return re.sub(r"\s+", " ", re.sub(r"[^\w\-./ :]", "", text)).strip()


def headline_metrics(report: dict[str, Any]) -> dict[str, float]:
    """Under each metric's name the value a CI gate reads, and every headline figure as `figure/LABEL`."""
    figures = headline(report).figures
    out = {_key(f"figure/{figure.label}"): figure.value for figure in figures}
    for name in dict.fromkeys([*NAMES, *(figure.metric for figure in figures)]):
        value = metric(report, name)
        if value is not None:
            out[name] = value
    return out


def flatten_params(value: Any, prefix: str = "") -> dict[str, str]:
    """A spec as flat `a.b.0.c` parameters; lists of plain values stay JSON text."""
    if isinstance(value, dict):
        out: dict[str, str] = {}
        for key, item in value.items():
            out |= flatten_params(item, f"{prefix}.{key}" if prefix else str(key))
        return out
    if isinstance(value, list) and any(isinstance(item, dict | list) for item in value):
        out = {}
        for index, item in enumerate(value):
            out |= flatten_params(item, f"{prefix}.{index}")
        return out
    text = value if isinstance(value, str) else json.dumps(value)
    return {_key(prefix): text[:MAX_PARAM_CHARS]}


def _experiment_id(client: Any, name: str) -> str:
    """The id of an experiment, created when new."""
    experiment = client.get_experiment_by_name(name)
    return str(experiment.experiment_id if experiment else client.create_experiment(name))


def _log_run(client: Any, run_id: str, report: dict[str, Any], html: str, spec: dict[str, Any]) -> None:
    """Metrics, parameters and the report files of one run."""
    from mlflow.entities import Metric, Param

    now = int(time.time() * 1000)
    metrics = [Metric(key, value, now, 0) for key, value in headline_metrics(report).items()]
    params = [Param(key, value) for key, value in flatten_params(spec).items()]
    for start in range(0, max(len(metrics), len(params), 1), BATCH):
        client.log_batch(run_id, metrics=metrics[start : start + BATCH], params=params[start : start + BATCH])
    with tempfile.TemporaryDirectory() as folder:
        for name, text in (("report.json", json.dumps(report, indent=2)), ("report.html", html)):
            path = Path(folder) / name
            path.write_text(text, encoding="utf-8")
            client.log_artifact(run_id, str(path))


def log_report(
    report: dict[str, Any], html: str, spec: dict[str, Any], *, tracking_uri: str, experiment: str
) -> str:
    """Log one report as an MLflow run; returns the run's id (RuntimeError says why it could not).

    A `file:` URI (or a plain path) is MLflow's file store, which MLflow 3 keeps behind
    MLFLOW_ALLOW_FILE_STORE: asking for one here is taken as that consent.
    """
    if tracking_uri.startswith("file:") or "://" not in tracking_uri:
        os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
    try:
        from mlflow.exceptions import MlflowException
        from mlflow.tracking import MlflowClient
    except ImportError as exc:
        raise RuntimeError("MLflow is not installed: pip install 'gauntlet[mlflow]'") from exc
    tags = {
        "mlflow.runName": f"{report.get('kind')} {report.get('job_id')}",
        "gauntlet.job_id": str(report.get("job_id")),
        "gauntlet.kind": str(report.get("kind")),
        "gauntlet.model_id": str(report.get("model_id")),
    }
    try:
        client = MlflowClient(tracking_uri=tracking_uri)
        run_id = str(client.create_run(_experiment_id(client, experiment), tags=tags).info.run_id)
        try:
            _log_run(client, run_id, report, html, spec)
        except BaseException:
            client.set_terminated(run_id, status="FAILED")
            raise
        client.set_terminated(run_id)
    except MlflowException as exc:
        raise RuntimeError(f"MLflow at {tracking_uri}: {exc.message}") from exc
    return run_id
