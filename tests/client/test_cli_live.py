"""The `gauntlet` client commands against a live API and worker: submit, gate, report, MLflow."""

import json

import pytest

from app.schemas.reports.headline import metric
from gauntlet_client import Client
from tests.client.live import LiveApi, gauntlet

pytestmark = [pytest.mark.service, pytest.mark.slow]
SPEC = {
    "kind": "evasion",
    "dataset_id": "builtin:digits-test",
    "params": {"attacks": [{"name": "fgsm", "norm": "linf", "eps": [0.05, 0.2]}], "max_samples": 40},
}


@pytest.fixture(scope="module")
def cli_env(service_env, start_worker, make_key, tmp_path_factory):
    start_worker()
    api = LiveApi(service_env, tmp_path_factory.mktemp("cli-api") / "api.log")
    key = make_key("client-cli")["Authorization"].removeprefix("Bearer ")
    yield {**service_env, "GAUNTLET_URL": api.url, "GAUNTLET_API_KEY": key}
    api.stop()


@pytest.fixture(scope="module")
def model_id(cli_env, digits_onnx, tmp_path_factory):
    path = tmp_path_factory.mktemp("cli-models") / "digits.onnx"
    path.write_bytes(digits_onnx)
    done = gauntlet(
        "models",
        "upload",
        str(path),
        "--name",
        "digits-cli",
        "--input-shape",
        "[1, 8, 8]",
        "--num-classes",
        "10",
        env=cli_env,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.split()[-1]


@pytest.fixture(scope="module")
def finished(cli_env, model_id, tmp_path_factory):
    """One job run by `gauntlet submit --wait` with a threshold it meets: (job id, report, output)."""
    spec = tmp_path_factory.mktemp("cli-spec") / "spec.json"
    spec.write_text(json.dumps(SPEC))
    done = gauntlet(
        "submit",
        str(spec),
        "--model-id",
        model_id,
        "--wait",
        "--fail-under",
        "robust_accuracy=0.0",
        "--fail-over",
        "attack_success_rate=1.0",
        env=cli_env,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    job_id = done.stdout.splitlines()[0]
    with Client(cli_env["GAUNTLET_URL"], cli_env["GAUNTLET_API_KEY"]) as client:
        report = client.jobs.get(job_id).report_json()
    return job_id, report, done


def test_submit_wait_prints_progress_and_the_headline_and_exits_0_when_thresholds_hold(finished):
    job_id, report, done = finished
    assert job_id.startswith("job_") and report["kind"] == "evasion"
    assert f"{job_id} succeeded" in done.stderr  # plain progress lines when stderr is not a terminal
    assert "verdict:" in done.stdout and "robust accuracy" in done.stdout
    assert "ok     robust_accuracy >= 0" in done.stdout and "ok     attack_success_rate <= 1" in done.stdout


def test_a_missed_threshold_exits_1_and_says_which(cli_env, finished):
    job_id, report, _ = finished
    worst = metric(report, "robust_accuracy")
    assert worst is not None and worst < 0.9
    done = gauntlet(
        "jobs", "wait", job_id, "--fail-under", f"robust_accuracy={worst + 0.01:.4f}", env=cli_env
    )
    assert done.returncode == 1, done.stdout + done.stderr
    assert f"MISSED robust_accuracy >= {worst + 0.01:.4f}".rstrip("0") in done.stdout
    at_small_eps = metric(report, "robust_accuracy", 0.05)
    assert at_small_eps is not None and at_small_eps > worst
    passes = gauntlet(
        "jobs", "wait", job_id, "--fail-under", f"robust_accuracy@0.05={worst + 0.01:.4f}", env=cli_env
    )
    assert passes.returncode == 0, passes.stdout
    over = gauntlet("jobs", "wait", job_id, "--fail-over", "attack_success_rate=0.01", env=cli_env)
    assert over.returncode == 1


def test_a_cancelled_job_exits_2(cli_env, model_id):
    slow = {"attacks": [{"name": "pgd", "norm": "linf", "eps": [0.1], "steps": 1000}], "max_samples": 297}
    with Client(cli_env["GAUNTLET_URL"], cli_env["GAUNTLET_API_KEY"]) as client:
        job = client.jobs.submit({**SPEC, "model_id": model_id, "params": slow})
        assert job.cancel().status in ("cancelled", "running")
    done = gauntlet("jobs", "wait", job.id, "--fail-under", "robust_accuracy=0", env=cli_env)
    assert done.returncode == 2, done.stdout + done.stderr
    assert f"job {job.id} cancelled" in done.stderr


def test_report_json_html_artifacts_and_lists(cli_env, finished, tmp_path):
    job_id, report, _ = finished
    as_json = gauntlet("report", job_id, "--json", env=cli_env)
    assert json.loads(as_json.stdout)["job_id"] == job_id
    page = tmp_path / "report.html"
    assert gauntlet("report", job_id, "--html", str(page), env=cli_env).returncode == 0
    assert page.read_text().lstrip().lower().startswith("<!doctype html")
    downloaded = gauntlet("artifacts", job_id, "--download", str(tmp_path / "files"), env=cli_env)
    assert downloaded.returncode == 0 and (tmp_path / "files" / "report.html").is_file()
    listed = gauntlet("jobs", "list", "--limit", "0", env=cli_env)
    assert job_id in listed.stdout
    assert report["model_id"] in gauntlet("models", "list", env=cli_env).stdout
    assert "builtin:digits-test" in gauntlet("datasets", "list", env=cli_env).stdout


def test_service_errors_are_one_line_with_the_code_and_exit_3(cli_env):
    done = gauntlet("jobs", "show", "job_doesnotexist", env=cli_env)
    assert done.returncode == 3 and done.stderr.startswith("error: not_found:")
    assert "Traceback" not in done.stderr
    refused = gauntlet("models", "list", "--api-key", "gnt_wrong", env=cli_env)
    assert refused.returncode == 3 and "unauthorized" in refused.stderr


def test_report_logs_headline_metrics_spec_and_files_to_mlflow(cli_env, finished, tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    from mlflow.tracking import MlflowClient

    job_id, report, _ = finished
    store = f"file:{tmp_path / 'mlruns'}"
    done = gauntlet("report", job_id, "--mlflow", store, "--experiment", "gate", env=cli_env)
    assert done.returncode == 0, done.stderr
    run_id = done.stdout.split("MLflow run ")[1].split()[0]
    client = MlflowClient(tracking_uri=store)
    run = client.get_run(run_id)
    assert client.get_experiment(run.info.experiment_id).name == "gate"
    metrics = run.data.metrics
    assert metrics["clean_accuracy"] == pytest.approx(report["clean_accuracy"])
    assert metrics["robust_accuracy"] == pytest.approx(
        min(r["robust_accuracy"] for r in report["worst_case"])
    )
    assert metrics["attack_success_rate"] == pytest.approx(
        max(r["attack_success_rate"] for a in report["attacks"] for r in a["results"])
    )
    assert run.data.params["params.attacks.0.name"] == "fgsm" and run.data.params["kind"] == "evasion"
    assert run.data.tags["gauntlet.job_id"] == job_id
    assert {f.path for f in client.list_artifacts(run_id)} == {"report.json", "report.html"}
