"""The embedded default: SQLite and the filesystem broker, no servers, a live worker."""

import os

import pytest
from fastapi.testclient import TestClient

from tests.app.helpers import TERMINAL, evasion_spec, ready_model, wait_for
from tests.conftest import FAST_RELIABILITY
from tests.services import WorkerProcess

pytestmark = pytest.mark.slow


def test_whole_system_runs_on_the_embedded_default(tmp_path, digits_onnx):
    from app.auth import create_key
    from app.db import session_scope
    from app.main import create_app
    from app.migrate import upgrade
    from app.settings import Settings

    env = {key: value for key, value in os.environ.items() if not key.startswith("GAUNTLET_")}
    env |= {**FAST_RELIABILITY, "GAUNTLET_DATA_DIR": str(tmp_path / "data")}
    settings = Settings(data_dir=tmp_path / "data")
    assert settings.is_embedded and settings.resolved_database_url.startswith("sqlite:///")
    upgrade(settings.resolved_database_url)
    worker = WorkerProcess(env, tmp_path / "worker.log")
    try:
        worker.wait_ready()
        with TestClient(create_app(settings), raise_server_exceptions=False) as api:
            with session_scope(api.app.state.session_factory) as session:
                headers = {"Authorization": f"Bearer {create_key(session, 'laptop')}"}
            assert api.get("/readyz").json()["checks"] == {"database": "ok", "broker": "ok"}
            model = ready_model(api, headers, digits_onnx)
            attack = {"name": "pgd", "norm": "l2", "eps": [0.5, 1.5], "steps": 10}
            job = api.post(
                "/v1/jobs", headers=headers, json=evasion_spec(model["id"], [attack], max_samples=50)
            )
            final = wait_for(api, f"/v1/jobs/{job.json()['id']}", headers, TERMINAL)
            assert final["status"] == "succeeded", final
            report = api.get(f"/v1/jobs/{final['id']}/report", headers=headers).json()
            assert report["attacks"][0]["results"][1]["robust_accuracy"] < report["clean_accuracy"]
    finally:
        worker.stop()
