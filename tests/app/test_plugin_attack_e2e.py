"""An attack defined outside the package (tests/plugins/random_search.py: one spec class, one engine class)
runs through the service: the API and a live worker load it from GAUNTLET_PLUGINS, the job succeeds and
its report row's figures are what the deployed model gives on the downloaded adversarial examples."""

import io

import numpy as np
import pytest
from fastapi.testclient import TestClient

from app.main import create_app
from app.schemas import evasion_base
from tests.app.helpers import TERMINAL, evasion_spec, ready_model, wait_for
from tests.services import WorkerProcess
from worker.engine.datasets import load_builtin
from worker.engine.evasion.attacks import base
from worker.engine.models.intake import OnnxRuntimeClassifier

pytestmark = pytest.mark.service

PLUGIN = "tests.plugins.random_search"
QUEUE = "plugin-attacks"  # its own queue, so no worker without the plugin takes the job
SAMPLES = 64


@pytest.fixture(scope="module")
def plugin_api(settings, service_env, tmp_path_factory):
    """The app and one live worker, both started with the plugin; the registries are restored after."""
    specs, engines = dict(evasion_base._SPECS), dict(base.REGISTERED)
    overrides = {"GAUNTLET_PLUGINS": PLUGIN, "GAUNTLET_EVASION_QUEUE": QUEUE}
    worker = WorkerProcess(
        {**service_env, **overrides},
        tmp_path_factory.mktemp("plugin-worker") / "worker.log",
        ("--queues", f"{QUEUE},cpu"),
    )
    try:
        worker.wait_ready()
        app = create_app(settings.model_copy(update={"plugins": PLUGIN, "evasion_queue": QUEUE}))
        with TestClient(app, raise_server_exceptions=False) as client:
            yield client
    finally:
        worker.stop()
        evasion_base._SPECS.clear()
        evasion_base._SPECS.update(specs)
        base.REGISTERED.clear()
        base.REGISTERED.update(engines)


def test_a_plugin_attack_runs_and_its_figures_are_verified(plugin_api, make_key, digits_onnx):
    tenant = make_key("plugin")
    model = ready_model(plugin_api, tenant, digits_onnx)
    attack = {"name": "random_search", "eps": [0.3], "tries": 6}
    job = plugin_api.post("/v1/jobs", headers=tenant, json=evasion_spec(model["id"], [attack], SAMPLES))
    assert job.status_code == 202, job.text
    final = wait_for(plugin_api, f"/v1/jobs/{job.json()['id']}", tenant, TERMINAL, timeout=300)
    assert final["status"] == "succeeded", final
    report = plugin_api.get(f"/v1/jobs/{final['id']}/report", headers=tenant).json()
    (entry,) = report["attacks"]
    assert (entry["name"], entry["threat_model"], entry["params"]["tries"]) == (
        "random_search",
        "black-box",
        6,
    )
    (row,) = entry["results"]
    assert row["n_succeeded"] > 0 and row["max_perturbation"] <= 0.3 + 1e-6

    artifact = next(
        a
        for a in plugin_api.get(f"/v1/jobs/{final['id']}/artifacts", headers=tenant).json()["items"]
        if a["kind"] == "adversarial_examples"
    )
    arrays = np.load(io.BytesIO(plugin_api.get(artifact["download_url"], headers=tenant).content))
    y = load_builtin("digits-test").y[:SAMPLES]
    predicted = OnnxRuntimeClassifier(digits_onnx)(arrays["x_adv"][0]).argmax(1)
    # one sample of slack: a point on a decision boundary within the intake's parity tolerance
    assert abs(float((predicted == y).mean()) - row["robust_accuracy"]) <= 1 / SAMPLES + 1e-9

    unknown = plugin_api.post(
        "/v1/jobs", headers=tenant, json=evasion_spec(model["id"], [{"name": "random_walk", "eps": [0.1]}])
    )
    assert unknown.status_code == 422 and "'random_search'" in unknown.json()["error"]["message"]
