"""The OpenAPI tells the truth (bearer scheme, error responses, /metrics as text) and /docs needs no CDN."""

import re

import pytest
from fastapi.testclient import TestClient

pytestmark = pytest.mark.service
ERROR_REF = "#/components/schemas/ErrorBody"
EXTERNAL = re.compile(r"""(?:src|href)\s*=\s*["']?\s*(?:https?:)?//|url\s*:\s*["'](?:https?:)?//""", re.I)


@pytest.fixture(scope="module")
def openapi(api) -> dict:
    return api.get("/openapi.json").json()


def _operations(openapi: dict):
    for path, item in openapi["paths"].items():
        for method, operation in item.items():
            yield path, method, operation


def _error_ref(operation: dict, status: str) -> str | None:
    content = operation["responses"].get(status, {}).get("content", {})
    return content.get("application/json", {}).get("schema", {}).get("$ref")


def test_every_v1_route_declares_the_bearer_scheme_and_its_error_responses(openapi):
    scheme = openapi["components"]["securitySchemes"]["ApiKey"]
    assert scheme["type"] == "http" and scheme["scheme"] == "bearer"
    v1 = [(p, m, o) for p, m, o in _operations(openapi) if p.startswith("/v1/")]
    assert len(v1) >= 14
    for path, method, operation in v1:
        where = f"{method.upper()} {path}"
        assert {"ApiKey": []} in operation.get("security", []), where
        assert _error_ref(operation, "401") == ERROR_REF, where
        if "{" in path:
            assert _error_ref(operation, "404") == ERROR_REF and _error_ref(operation, "422") == ERROR_REF, (
                where
            )
        assert not any(code.startswith("5") for code in operation["responses"]), where
    uploads = openapi["paths"]["/v1/models"]["post"]["responses"]
    assert {"413", "415", "422"} <= set(uploads)
    assert {"404", "409", "413", "422"} <= set(openapi["paths"]["/v1/jobs"]["post"]["responses"])
    assert "409" in openapi["paths"]["/v1/jobs/{job_id}/report"]["get"]["responses"]
    assert "HTTPValidationError" not in openapi["components"]["schemas"]
    error = openapi["components"]["schemas"]["ErrorBody"]
    assert error["required"] == ["error"]


def test_metrics_is_documented_and_served_as_text(api, openapi):
    content = openapi["paths"]["/metrics"]["get"]["responses"]["200"]["content"]
    assert list(content) == ["text/plain"]
    response = api.get("/metrics")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")


def test_metrics_can_sit_behind_a_token(settings):
    from app.main import create_app

    with TestClient(create_app(settings.model_copy(update={"metrics_token": "s3cret"}))) as client:
        assert client.get("/metrics").status_code == 401
        assert client.get("/metrics", headers={"Authorization": "Bearer wrong"}).json()["error"]["code"] == (
            "unauthorized"
        )
        assert client.get("/metrics", headers={"Authorization": "Bearer s3cret"}).status_code == 200


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_docs_pages_reference_no_external_host_and_their_assets_are_served(api, page):
    response = api.get(page)
    assert response.status_code == 200
    html = response.text
    assert not EXTERNAL.search(html), EXTERNAL.search(html).group(0)
    assets = re.findall(r"""(?:src|href)\s*=\s*["']([^"']+)["']""", html)
    assert assets, html
    for asset in assets:
        assert asset.startswith("/"), asset
        assert api.get(asset).status_code == 200, asset


def test_an_unexpected_error_is_a_json_500_that_never_reaches_the_server(settings):
    """The server drops a kept-alive connection when an exception escapes the app; none does."""
    from app.main import create_app

    app = create_app(settings)

    def boom() -> None:
        raise RuntimeError("secret detail")

    app.add_api_route("/boom", boom)
    with TestClient(app, raise_server_exceptions=True) as client:
        response = client.get("/boom")
        assert response.status_code == 500
        assert response.json() == {
            "error": {"code": "internal", "message": "internal error; it has been logged"}
        }
        assert "secret detail" not in response.text
        assert client.get("/healthz").status_code == 200
