"""Auth, tenant isolation, size limits, refused formats and bad specs, against the real database."""

import pickle

import numpy as np
import pytest

from tests.app.helpers import TERMINAL, evasion_spec, npz_bytes, ready_model, upload_onnx, wait_for

pytestmark = pytest.mark.service
PGD = {"name": "pgd", "norm": "linf", "eps": [0.1], "steps": 5}


@pytest.fixture(scope="module")
def alice(make_key, start_worker) -> dict:
    start_worker()
    return make_key("alice")


@pytest.fixture(scope="module")
def bob(make_key) -> dict:
    return make_key("bob")


@pytest.fixture(scope="module")
def alice_model(api, alice, digits_onnx) -> dict:
    return ready_model(api, alice, digits_onnx)


@pytest.fixture(scope="module")
def alice_job(api, alice, alice_model) -> dict:
    job = api.post(
        "/v1/jobs", headers=alice, json=evasion_spec(alice_model["id"], [PGD], max_samples=20)
    ).json()
    return wait_for(api, f"/v1/jobs/{job['id']}", alice, TERMINAL)


def _assert_error(response, status: int, code: str | None = None) -> dict:
    assert response.status_code == status, response.text
    body = response.json()["error"]
    assert body["message"] and "Traceback" not in response.text
    if code:
        assert body["code"] == code, body
    return body


@pytest.mark.parametrize(
    "header", [None, "Bearer", "Bearer gnt_wrong", "Basic dXNlcjpwYXNz", "gnt_no_scheme"]
)
def test_missing_or_wrong_key_is_401(api, header):
    headers = {"Authorization": header} if header else {}
    _assert_error(api.get("/v1/jobs", headers=headers), 401, "unauthorized")


def test_another_tenants_objects_are_404_and_not_listed(api, alice, bob, alice_model, alice_job):
    assert alice_job["status"] == "succeeded"
    for path in (
        f"/v1/models/{alice_model['id']}",
        f"/v1/jobs/{alice_job['id']}",
        f"/v1/jobs/{alice_job['id']}/report",
        f"/v1/jobs/{alice_job['id']}/artifacts",
        f"/v1/jobs/{alice_job['id']}/report.html",
    ):
        assert api.get(path, headers=alice).status_code == 200, path
        _assert_error(api.get(path, headers=bob), 404, "not_found")
    artifact = api.get(f"/v1/jobs/{alice_job['id']}/artifacts", headers=alice).json()["items"][0]
    _assert_error(api.get(artifact["download_url"], headers=bob), 404)
    _assert_error(api.post(f"/v1/jobs/{alice_job['id']}/cancel", headers=bob), 404)
    _assert_error(api.delete(f"/v1/models/{alice_model['id']}", headers=bob), 404)
    _assert_error(api.post("/v1/jobs", headers=bob, json=evasion_spec(alice_model["id"], [PGD])), 404)
    assert api.get("/v1/models", headers=bob).json()["items"] == []
    assert api.get("/v1/jobs", headers=bob).json()["items"] == []


def test_unknown_fields_anywhere_in_a_spec_are_422(api, alice, alice_model):
    spec = evasion_spec(alice_model["id"], [PGD])
    for bad in (
        {**spec, "priority": 1},
        {**spec, "params": {**spec["params"], "gpu": True}},
        {**spec, "params": {**spec["params"], "attacks": [{**PGD, "module": "os.system"}]}},
    ):
        _assert_error(api.post("/v1/jobs", headers=alice, json=bad), 422, "invalid_request")


@pytest.mark.parametrize(
    ("attack", "fragment"),
    [
        ({"name": "pgd", "eps": [-0.1]}, "greater than 0"),
        ({"name": "pgd", "eps": [1.5]}, "exceeds"),
        ({"name": "pgd", "norm": "l2", "eps": [9.0]}, "exceeds"),
        ({"name": "pgd", "eps": [0.1], "steps": 0}, "greater than or equal to 1"),
        ({"name": "deepfool9000", "eps": [0.1]}, "does not match any of the expected tags"),
        ({"name": "pgd", "eps": [0.1], "targeted": True}, "target_mode"),
        (
            {"name": "pgd", "eps": [0.1], "targeted": True, "target_mode": "fixed", "target_class": 12},
            "target_class",
        ),
        ({"name": "pgd", "eps": []}, "at least 1"),
        ({"name": "pgd", "eps": [0.1], "norm": "l7"}, "linf"),
    ],
)
def test_bad_attack_parameters_are_422_with_a_clear_message(api, alice, alice_model, attack, fragment):
    before = len(api.get("/v1/jobs", headers=alice, params={"limit": 100}).json()["items"])
    body = _assert_error(
        api.post("/v1/jobs", headers=alice, json=evasion_spec(alice_model["id"], [attack])), 422
    )
    assert fragment in body["message"], body
    assert len(api.get("/v1/jobs", headers=alice, params={"limit": 100}).json()["items"]) == before


def test_oversized_upload_is_413_and_stores_nothing(api, alice, settings):
    too_big = b"\0" * (settings.max_upload_bytes + 1024 * 1024)
    before = len(api.get("/v1/models", headers=alice).json()["items"])
    response = api.post(
        "/v1/models",
        headers=alice,
        files={"file": ("big.onnx", too_big)},
        data={"name": "big", "format": "onnx", "input_shape": "[1, 8, 8]", "num_classes": "10"},
    )
    _assert_error(response, 413, "payload_too_large")
    assert len(api.get("/v1/models", headers=alice).json()["items"]) == before


class _Exploit:
    """Unpickling this writes a marker file: the proof a loader executed user data."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_a_pickle_disguised_as_onnx_is_refused_and_never_executed(api, alice, tmp_path):
    marker = tmp_path / "pwned"
    payload = pickle.dumps(_Exploit(str(marker)))
    model = upload_onnx(api, alice, payload, name="totally-onnx")
    model = wait_for(api, f"/v1/models/{model['id']}", alice, {"ready", "invalid"})
    assert model["status"] == "invalid" and model["invalid_code"] == "refused_format"
    assert "onnx" in model["invalid_reason"].lower()
    assert not marker.exists()
    _assert_error(
        api.post("/v1/jobs", headers=alice, json=evasion_spec(model["id"], [PGD])), 422, "model_invalid"
    )


@pytest.mark.parametrize("fmt", ["pickle", "pt", "torchscript"])
def test_refused_formats_are_415_with_export_advice(api, alice, fmt):
    response = api.post(
        "/v1/models",
        headers=alice,
        files={"file": ("m.bin", b"x")},
        data={"name": "m", "format": fmt, "input_shape": "[1, 8, 8]", "num_classes": "10"},
    )
    assert "torch.onnx.export" in _assert_error(response, 415, "unsupported_media_type")["message"]


def test_bad_upload_fields_are_422(api, alice):
    for fields in (
        {"input_shape": "not json"},
        {"input_shape": "[0, 8]"},
        {"num_classes": "ten"},
        {"input_range": "[1, 0]"},
        {"format": "safetensors"},
    ):
        form = {"name": "m", "format": "onnx", "input_shape": "[1, 8, 8]", "num_classes": "10", **fields}
        _assert_error(api.post("/v1/models", headers=alice, files={"file": ("m", b"x")}, data=form), 422)


def test_dataset_upload_checks_and_compatibility(api, alice, alice_model):
    rng = np.random.default_rng(0)
    good = npz_bytes(x=rng.random((40, 1, 8, 8), dtype=np.float32), y=rng.integers(0, 10, 40))
    created = api.post("/v1/datasets", headers=alice, files={"file": ("d.npz", good)}, data={"name": "noise"})
    assert created.status_code == 201, created.text
    assert created.json()["sample_shape"] == [1, 8, 8] and created.json()["n_samples"] == 40

    bad_files = {
        "nan": npz_bytes(x=np.full((4, 1, 8, 8), np.nan, dtype=np.float32), y=np.zeros(4, dtype=np.int64)),
        "objects": npz_bytes(x=np.array([{"a": 1}] * 4, dtype=object), y=np.zeros(4, dtype=np.int64)),
        "no-y": npz_bytes(x=np.zeros((4, 1, 8, 8), dtype=np.float32)),
        "float-labels": npz_bytes(x=np.zeros((4, 1, 8, 8), dtype=np.float32), y=np.zeros(4)),
        "garbage": b"definitely not a zip",
    }
    for name, data in bad_files.items():
        _assert_error(
            api.post("/v1/datasets", headers=alice, files={"file": ("d.npz", data)}, data={"name": name}),
            422,
            "dataset_invalid",
        )

    wrong_shape = npz_bytes(x=np.zeros((4, 3, 8, 8), dtype=np.float32), y=np.zeros(4, dtype=np.int64))
    out_of_range = npz_bytes(x=np.full((4, 1, 8, 8), 2.0, dtype=np.float32), y=np.zeros(4, dtype=np.int64))
    for data, code in ((wrong_shape, "shape_mismatch"), (out_of_range, "dataset_out_of_range")):
        dataset = api.post(
            "/v1/datasets", headers=alice, files={"file": ("d.npz", data)}, data={"name": code}
        ).json()
        spec = {**evasion_spec(alice_model["id"], [PGD]), "dataset_id": dataset["id"]}
        _assert_error(api.post("/v1/jobs", headers=alice, json=spec), 422, code)
    spec = {**evasion_spec(alice_model["id"], [PGD]), "dataset_id": "builtin:imagenet"}
    _assert_error(api.post("/v1/jobs", headers=alice, json=spec), 404)


def test_uploaded_uint8_dataset_runs_a_job(api, alice, alice_model):
    from worker.engine.datasets import load_builtin

    digits = load_builtin("digits-test")
    data = npz_bytes(x=(digits.x[:30] * 255).round().astype(np.uint8), y=digits.y[:30])
    dataset = api.post(
        "/v1/datasets", headers=alice, files={"file": ("d.npz", data)}, data={"name": "u8"}
    ).json()
    spec = {**evasion_spec(alice_model["id"], [PGD]), "dataset_id": dataset["id"]}
    job = wait_for(
        api, f"/v1/jobs/{api.post('/v1/jobs', headers=alice, json=spec).json()['id']}", alice, TERMINAL
    )
    assert job["status"] == "succeeded" and job["summary"]["n_samples"] == 30
    assert job["summary"]["clean_accuracy"] > 0.8
