"""Every list pages with a cursor and honours `limit`, tenant by tenant; and errors that say what the
caller probably meant: JSON sent without its content type, eps in pixel units, labels past a declared
class count (TestClient over the real app; no worker needed)."""

from datetime import timedelta

import numpy as np
import pytest

from tests.app.helpers import npz_bytes

pytestmark = pytest.mark.service
ARCH = {"architecture": "mlp", "input_shape": [1, 8, 8], "num_classes": 10}


@pytest.fixture(scope="module")
def pager(make_key) -> dict:
    return make_key("pager")


@pytest.fixture(scope="module")
def other(make_key) -> dict:
    return make_key("pager-other")


def _all_pages(api, path: str, headers: dict, limit: int) -> list[list[str]]:
    """The ids of every page of a list, following next_cursor."""
    pages, cursor = [], None
    while True:
        params = {"limit": limit} | ({"cursor": cursor} if cursor else {})
        response = api.get(path, headers=headers, params=params)
        assert response.status_code == 200, response.text
        body = response.json()
        pages.append([item["id"] for item in body["items"]])
        cursor = body["next_cursor"]
        if cursor is None:
            return pages
        assert len(pages) < 50


def test_models_page_newest_first_and_stay_with_their_tenant(api, pager, other):
    created = [
        api.post("/v1/models", headers=pager, json={"name": f"m{i}", **ARCH}).json()["id"] for i in range(5)
    ]
    api.post("/v1/models", headers=other, json={"name": "theirs", **ARCH})
    pages = _all_pages(api, "/v1/models", pager, limit=2)
    assert [len(page) for page in pages] == [2, 2, 1]
    assert [i for page in pages for i in page] == created[::-1]
    assert len(api.get("/v1/models", headers=pager, params={"limit": 2}).json()["items"]) == 2
    assert _all_pages(api, "/v1/models", other, limit=2) == [
        [api.get("/v1/models", headers=other).json()["items"][0]["id"]]
    ]


def test_datasets_page_through_the_built_in_ones_then_the_uploads(api, pager):
    x, y = np.random.default_rng(0).random((4, 1, 8, 8), dtype=np.float32), np.arange(4)
    uploaded = [
        api.post(
            "/v1/datasets",
            headers=pager,
            data={"name": f"d{i}"},
            files={"file": ("d.npz", npz_bytes(x=x, y=y))},
        ).json()["id"]
        for i in range(3)
    ]
    everything = [item["id"] for item in api.get("/v1/datasets", headers=pager).json()["items"]]
    builtin = [i for i in everything if i.startswith("builtin:")]
    assert everything == builtin + uploaded[::-1]
    for limit in (1, 2, len(builtin), 100):
        pages = _all_pages(api, "/v1/datasets", pager, limit=limit)
        assert [i for page in pages for i in page] == everything, limit
        assert all(len(page) <= limit for page in pages)


def test_a_jobs_artifacts_page_oldest_first(api, pager):
    from app.db import session_scope
    from app.orm import Artifact, Job, ModelRecord, utcnow
    from app.storage import put_blob

    model_id = api.post("/v1/models", headers=pager, json={"name": "with-job", **ARCH}).json()["id"]
    with session_scope(api.app.state.session_factory) as session:
        tenant_id = session.get(ModelRecord, model_id).tenant_id
        job = Job(
            tenant_id=tenant_id, kind="evasion", model_id=model_id, dataset_id="builtin:digits", params={}
        )
        session.add(job)
        session.flush()
        digest = put_blob(session, b"artifact", max_bytes=1024)
        start = utcnow()
        for index in range(5):
            session.add(
                Artifact(
                    tenant_id=tenant_id,
                    job_id=job.id,
                    kind="adversarial_examples",
                    name=f"a{index}.npz",
                    media_type="application/x-npz",
                    blob_sha256=digest,
                    size_bytes=8,
                    created_at=start + timedelta(seconds=index),
                )
            )
        job_id = job.id
    pages = _all_pages(api, f"/v1/jobs/{job_id}/artifacts", pager, limit=2)
    assert [len(page) for page in pages] == [2, 2, 1]
    listed = api.get(f"/v1/jobs/{job_id}/artifacts", headers=pager, params={"limit": 5}).json()
    names = [item["name"] for item in listed["items"]]
    assert names == [f"a{index}.npz" for index in range(5)]


@pytest.mark.parametrize("path", ["/v1/models", "/v1/datasets", "/v1/jobs"])
@pytest.mark.parametrize("query", [{"limit": 0}, {"limit": 101}, {"cursor": "not-a-cursor"}])
def test_a_bad_limit_or_cursor_is_422(api, pager, path, query):
    response = api.get(path, headers=pager, params=query)
    assert response.status_code == 422, response.text
    if "cursor" in query:
        assert response.json()["error"]["code"] == "invalid_cursor"


@pytest.mark.parametrize("path", ["/v1/jobs", "/v1/models"])
def test_json_sent_without_its_content_type_is_named(api, pager, path):
    """`curl -d @spec.json` sends application/x-www-form-urlencoded."""
    body = '{"kind": "evasion", "model_id": "mdl_x", "dataset_id": "builtin:digits-test", "params": {}}'
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    response = api.post(path, headers=pager | form, content=body)
    assert response.status_code == 415, response.text
    error = response.json()["error"]
    assert error["code"] == "json_without_content_type"
    assert "Content-Type: application/json" in error["message"]
    plain = api.post(path, headers=pager | {"Content-Type": "text/plain"}, content="hello")
    assert plain.status_code == 415 and plain.json()["error"]["code"] == "unsupported_media_type"


def test_an_eps_in_pixel_units_is_named(api, pager):
    from app.db import session_scope
    from app.orm import ModelRecord

    model_id = api.post("/v1/models", headers=pager, json={"name": "ready", **ARCH}).json()["id"]
    with session_scope(api.app.state.session_factory) as session:
        session.get(ModelRecord, model_id).status = "ready"
    spec = {
        "kind": "evasion",
        "model_id": model_id,
        "dataset_id": "builtin:digits-test",
        "params": {"attacks": [{"name": "pgd", "eps": [8]}]},
    }
    response = api.post("/v1/jobs", headers=pager, json=spec)
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "eps_out_of_range"
    assert "did you mean 8/255 = 0.0314?" in error["message"]
    fine = api.post(
        "/v1/jobs", headers=pager, json={**spec, "params": {"attacks": [{"name": "pgd", "eps": [0.5]}]}}
    )
    assert "did you mean" not in fine.text


def test_labels_past_the_declared_class_count_are_refused_at_upload(api, pager):
    x = np.random.default_rng(1).random((6, 1, 8, 8), dtype=np.float32)
    files = {"file": ("d.npz", npz_bytes(x=x, y=np.array([1, 2, 3, 4, 5, 10])))}
    refused = api.post(
        "/v1/datasets", headers=pager, data={"name": "one-based", "num_classes": "10"}, files=files
    )
    assert refused.status_code == 422, refused.text
    error = refused.json()["error"]
    assert error["code"] == "labels_exceed_classes" and "labels go up to 10" in error["message"]
    files = {"file": ("d.npz", npz_bytes(x=x, y=np.array([0, 1, 2, 3, 4, 5])))}
    declared = api.post(
        "/v1/datasets", headers=pager, data={"name": "declared", "num_classes": "10"}, files=files
    )
    assert declared.status_code == 201 and declared.json()["num_classes"] == 10
    inferred = api.post("/v1/datasets", headers=pager, data={"name": "inferred"}, files=files)
    assert inferred.json()["num_classes"] == 6
