"""On the embedded default (SQLite): timestamps carry their timezone, and a huge declared input is a 422."""

import pytest
from fastapi.testclient import TestClient

from app.settings import Settings
from tests.app.npz_craft import savez


@pytest.fixture(scope="module")
def embedded(tmp_path_factory):
    from app.auth import create_key
    from app.db import session_scope
    from app.main import create_app
    from app.migrate import upgrade

    folder = tmp_path_factory.mktemp("embedded-hardening")
    settings = Settings(data_dir=folder, remote_host_allowlist=["127.0.0.1"])
    upgrade(settings.resolved_database_url)
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        with session_scope(client.app.state.session_factory) as session:
            client.headers["Authorization"] = f"Bearer {create_key(session, 'embedded')}"
        yield client


def test_timestamps_carry_their_timezone_on_sqlite(embedded):
    import numpy as np

    data = savez(x=np.zeros((3, 1, 2, 2), dtype=np.float32), y=np.zeros(3, dtype=np.int64))
    created = embedded.post("/v1/datasets", files={"file": ("d.npz", data)}, data={"name": "d"}).json()
    read = embedded.get(f"/v1/datasets/{created['id']}").json()
    listed = [d for d in embedded.get("/v1/datasets").json()["items"] if d["id"] == created["id"]][0]
    model = embedded.post(
        "/v1/models",
        json={"name": "r", "endpoint_url": "http://127.0.0.1:9/p", "input_shape": [4], "num_classes": 2},
    ).json()
    model_read = embedded.get(f"/v1/models/{model['id']}").json()
    for stamp in (created["created_at"], read["created_at"], listed["created_at"], model_read["created_at"]):
        assert stamp.endswith(("+00:00", "Z")), stamp


@pytest.mark.parametrize("kind", ["remote", "upload"])
def test_a_huge_declared_input_shape_is_a_422_at_registration(embedded, kind):
    before = len(embedded.get("/v1/models").json()["items"])
    if kind == "remote":
        body = {
            "name": "r",
            "endpoint_url": "http://127.0.0.1:9/p",
            "input_shape": [1, 40132, 40132],
            "num_classes": 10,
        }
        response = embedded.post("/v1/models", json=body)
    else:
        form = {"name": "u", "format": "onnx", "input_shape": "[1, 40132, 40132]", "num_classes": "10"}
        response = embedded.post("/v1/models", files={"file": ("m.onnx", b"\x08\x07")}, data=form)
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "input_too_large" and "1610577424 elements" in error["message"]
    assert len(embedded.get("/v1/models").json()["items"]) == before
