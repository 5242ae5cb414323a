"""The `gauntlet` client commands against a live API and worker: submit, gate, report, MLflow.

The CI path (`models upload`, `submit --wait` with thresholds) runs as a real process; the other
commands run in this process through the same entry point (`gauntlet_cli.main.main`).
"""

import json

import pytest

from app.schemas.reports.headline import metric
from gauntlet_cli.main import main
from gauntlet_client import Client
from tests.client.live import gauntlet

pytestmark = [pytest.mark.service, pytest.mark.slow]
SPEC = {
    "kind": "evasion",
    "dataset_id": "builtin:digits-test",
    "params": {"attacks": [{"name": "fgsm", "norm": "linf", "eps": [0.05, 0.2]}], "max_samples": 40},
}


@pytest.fixture(scope="module")
def cli_env(live_service):
    return live_service[2]


@pytest.fixture
def cli(live_service, capsys):
    """Run `gauntlet ARGS` in this process: (exit code, stdout, stderr)."""
    url, key, _ = live_service

    def run(*args: str, key_override: str | None = None) -> tuple[int, str, str]:
        capsys.readouterr()
        code = main([*args, "--url", url, "--api-key", key_override or key])
        out, err = capsys.readouterr()
        return code, out, err

    return run


@pytest.fixture(scope="module")
def model_id(cli_env, client_model_path):
    done = gauntlet(
        "models",
        "upload",
        str(client_model_path),
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
    """One job run by `gauntlet submit --wait` with thresholds it meets: (job id, report, output)."""
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


def test_a_missed_threshold_exits_1_and_says_which(cli, finished):
    job_id, report, _ = finished
    worst = metric(report, "robust_accuracy")
    assert worst is not None and worst < 0.9
    floor = float(f"{worst + 0.01:.4f}")
    code, out, _ = cli("jobs", "wait", job_id, "--fail-under", f"robust_accuracy={floor}")
    assert code == 1 and f"MISSED robust_accuracy >= {floor:g}: {worst:.4f}" in out, out
    at_small_eps = metric(report, "robust_accuracy", 0.05)
    assert at_small_eps is not None and at_small_eps > worst
    code, out, _ = cli("jobs", "wait", job_id, "--fail-under", f"robust_accuracy@0.05={floor}")
    assert code == 0, out
    assert cli("jobs", "wait", job_id, "--fail-over", "attack_success_rate=0.01")[0] == 1


def test_a_cancelled_job_exits_2(cli, live_service, model_id):
    slow = {"attacks": [{"name": "pgd", "norm": "linf", "eps": [0.1], "steps": 1000}], "max_samples": 297}
    with Client(*live_service[:2]) as client:
        job = client.jobs.submit({**SPEC, "model_id": model_id, "params": slow})
        assert job.cancel().status in ("cancelled", "running")
    code, _, err = cli("jobs", "wait", job.id, "--fail-under", "robust_accuracy=0")
    assert code == 2 and f"job {job.id} cancelled" in err


def test_report_json_html_artifacts_and_lists(cli, finished, tmp_path):
    job_id, report, _ = finished
    code, out, _ = cli("report", job_id, "--json")
    assert code == 0 and json.loads(out)["job_id"] == job_id
    page = tmp_path / "report.html"
    assert cli("report", job_id, "--html", str(page))[0] == 0
    assert page.read_text().lstrip().lower().startswith("<!doctype html")
    code, out, _ = cli("artifacts", job_id, "--download", str(tmp_path / "files"))
    assert code == 0 and (tmp_path / "files" / "report.html").is_file()
    assert {line.rsplit("/", 1)[-1] for line in out.split()} >= {"report.html"}
    assert job_id in cli("jobs", "list", "--limit", "0")[1]
    assert report["model_id"] in cli("models", "list")[1]
    assert "builtin:digits-test" in cli("datasets", "list")[1]


def test_service_errors_are_one_line_with_the_code_and_exit_3(cli):
    code, _, err = cli("jobs", "show", "job_doesnotexist")
    assert code == 3 and err.startswith("error: not_found:") and "Traceback" not in err
    code, _, err = cli("models", "list", key_override="gnt_wrong")
    assert code == 3 and err.startswith("error: unauthorized:")


def test_report_logs_headline_metrics_spec_and_files_to_mlflow(cli, finished, tmp_path, monkeypatch):
    from mlflow.tracking import MlflowClient

    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    job_id, report, _ = finished
    store = f"file:{tmp_path / 'mlruns'}"
    code, out, err = cli("report", job_id, "--mlflow", store, "--experiment", "gate")
    assert code == 0, err
    run_id = out.split("MLflow run ")[1].split()[0]
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
    assert any(key.startswith("figure/robust accuracy at linf eps 0.2") for key in metrics)
    assert run.data.params["params.attacks.0.name"] == "fgsm" and run.data.params["kind"] == "evasion"
    assert run.data.tags["gauntlet.job_id"] == job_id
    assert {f.path for f in client.list_artifacts(run_id)} == {"report.json", "report.html"}
