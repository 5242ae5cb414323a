"""The served OpenAPI document describes the contract a generated client needs (no services needed):
short operation ids, each route's own error codes, the model upload as a typed multipart form, every
list paginated, and the report as one typed schema per kind."""

from typing import Any

import pytest

from app.schemas.reports import REPORT_ADAPTER

EXPECTED_IDS = {
    ("post", "/v1/models"): "upload_model",
    ("get", "/v1/models"): "list_models",
    ("get", "/v1/models/{model_id}"): "get_model",
    ("delete", "/v1/models/{model_id}"): "delete_model",
    ("post", "/v1/datasets"): "upload_dataset",
    ("get", "/v1/datasets"): "list_datasets",
    ("get", "/v1/datasets/{dataset_id}"): "get_dataset",
    ("delete", "/v1/datasets/{dataset_id}"): "delete_dataset",
    ("post", "/v1/jobs"): "submit_job",
    ("get", "/v1/jobs"): "list_jobs",
    ("get", "/v1/jobs/{job_id}"): "get_job",
    ("post", "/v1/jobs/{job_id}/cancel"): "cancel_job",
    ("get", "/v1/jobs/{job_id}/report"): "get_report",
    ("get", "/v1/jobs/{job_id}/report.html"): "get_report_html",
    ("get", "/v1/jobs/{job_id}/artifacts"): "list_artifacts",
    ("get", "/v1/jobs/{job_id}/events"): "job_events",
    ("get", "/v1/artifacts/{artifact_id}"): "download_artifact",
}
# What each route can answer besides success; nothing more is claimed.
EXPECTED_ERRORS = {
    ("post", "/v1/models"): {"401", "413", "415", "422"},
    ("get", "/v1/models"): {"401", "422"},
    ("delete", "/v1/models/{model_id}"): {"401", "404", "409", "422"},
    ("post", "/v1/datasets"): {"401", "413", "422"},
    ("post", "/v1/jobs"): {"401", "404", "409", "413", "415", "422"},
    ("get", "/v1/jobs/{job_id}"): {"401", "404", "422"},
    ("get", "/v1/jobs/{job_id}/report"): {"401", "404", "409", "422"},
    ("post", "/v1/webhook-secret"): {"401"},
    ("get", "/healthz"): set(),
}


@pytest.fixture(scope="module")
def openapi() -> dict[str, Any]:
    from app.main import create_app
    from app.settings import Settings

    return create_app(Settings()).openapi()


def _schema(openapi: dict[str, Any], ref: str) -> dict[str, Any]:
    return openapi["components"]["schemas"][ref.rsplit("/", 1)[-1]]


def test_operation_ids_are_short_and_readable(openapi):
    ids = {(m, p): o["operationId"] for p, item in openapi["paths"].items() for m, o in item.items()}
    assert {key: ids[key] for key in EXPECTED_IDS} == EXPECTED_IDS
    assert all(len(i) <= 25 and "_v1_" not in i for i in ids.values()), ids
    assert len(set(ids.values())) == len(ids)


def test_every_route_documents_its_own_error_codes(openapi):
    for (method, path), codes in EXPECTED_ERRORS.items():
        responses = openapi["paths"][path][method]["responses"]
        assert {c for c in responses if c[0] in "45"} == codes, (method, path)
    notes = openapi["paths"]["/v1/jobs/{job_id}/report"]["get"]["responses"]
    assert "report_not_ready" in notes["409"]["description"]


def test_the_model_upload_is_a_typed_multipart_form_and_json_keeps_its_one_of(openapi):
    content = openapi["paths"]["/v1/models"]["post"]["requestBody"]["content"]
    form = _schema(openapi, content["multipart/form-data"]["schema"]["$ref"])
    assert form["properties"]["file"] == {**form["properties"]["file"], "type": "string", "format": "binary"}
    assert {"name", "format", "input_shape", "num_classes", "input_range", "architecture"} <= set(
        form["properties"]
    )
    assert form["properties"]["num_classes"]["type"] == "integer"
    assert {"file", "name", "format"} <= set(form["required"])
    assert len(content["application/json"]["schema"]["oneOf"]) == 2
    dataset = openapi["paths"]["/v1/datasets"]["post"]["requestBody"]["content"]["multipart/form-data"]
    dataset_form = _schema(openapi, dataset["schema"]["$ref"])
    assert dataset_form["properties"]["file"]["format"] == "binary"
    assert "contentMediaType" not in str(openapi)


@pytest.mark.parametrize("path", ["/v1/models", "/v1/datasets", "/v1/jobs", "/v1/jobs/{job_id}/artifacts"])
def test_every_list_is_paginated(openapi, path):
    operation = openapi["paths"][path]["get"]
    names = {p["name"] for p in operation["parameters"]}
    assert {"cursor", "limit"} <= names
    page = _schema(openapi, operation["responses"]["200"]["content"]["application/json"]["schema"]["$ref"])
    assert {"items", "next_cursor"} <= set(page["properties"])


def test_the_report_is_one_typed_schema_per_kind(openapi):
    schema = openapi["paths"]["/v1/jobs/{job_id}/report"]["get"]["responses"]["200"]["content"][
        "application/json"
    ]["schema"]
    refs = sorted(variant["$ref"].rsplit("/", 1)[-1] for variant in schema["oneOf"])
    assert refs == ["DefenseReport", "EvasionReport", "ExtractionReport", "PoisoningReport"]
    assert set(schema["discriminator"]["mapping"]) == {"evasion", "extraction", "poisoning", "defense"}
    evasion = _schema(openapi, "EvasionReport")
    assert {"job_id", "checks", "attacks", "worst_case", "clean_accuracy"} <= set(evasion["required"])
    assert evasion["additionalProperties"] is False


def test_report_models_refuse_a_report_that_drifted():
    report = {
        "kind": "evasion",
        "job_id": "job_1",
        "model_id": "mdl_1",
        "dataset_id": "builtin:digits-test",
        "seed": 0,
        "versions": {"gauntlet": "0"},
        "device": "cpu",
        "generated_at": "2025-01-01T00:00:00+00:00",
        "threat_model": "evasion",
        "checks": [{"name": "c", "passed": True, "detail": "ok"}],
        "derived_model_ids": [],
        "n_samples": 1,
        "clean_accuracy": 1.0,
        "input_range": [0.0, 1.0],
        "attacks": [],
        "worst_case": [],
    }
    assert REPORT_ADAPTER.validate_python(report).kind == "evasion"
    with pytest.raises(ValueError, match="surprise"):
        REPORT_ADAPTER.validate_python({**report, "surprise": 1})
    with pytest.raises(ValueError, match="clean_accuracy"):
        REPORT_ADAPTER.validate_python({k: v for k, v in report.items() if k != "clean_accuracy"})
