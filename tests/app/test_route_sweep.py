"""A sweep over every route in the OpenAPI: malformed ids, query values and bodies never get a 5xx.

Every answer is either a success or an error body `{"error": {"code", "message", "details"?}}` whose
status the OpenAPI documents for that route, so the published contract and the behaviour agree.
"""

from collections import Counter
from collections.abc import Iterator
from urllib.parse import quote

import pytest

from tests.app.sweep_inputs import CONTENT_TYPES, FORMS, JSON_BODIES, PATH_IDS, QUERY_VALUES

pytestmark = pytest.mark.service
Request = tuple[str, str, str, dict]


@pytest.fixture(scope="module")
def headers(make_key) -> dict:
    return make_key("sweeper")


def _fill(path: str, names: list[str], value: str) -> str:
    for name in names:
        path = path.replace("{" + name + "}", quote(value, safe=""))
    return path


def _body_requests(method: str, path: str, content: dict) -> Iterator[tuple[str, dict]]:
    """Malformed bodies for the media types the route accepts, and the ones it does not."""
    if "application/json" in content:
        for body in JSON_BODIES:
            yield "json", {"content": body, "headers": {"Content-Type": "application/json"}}
    if "multipart/form-data" in content:
        for form in FORMS:
            yield "form", {"data": form, "files": {"file": ("f.bin", b"\x00" * 16)}}
            yield "form-no-file", {"data": form or {"name": "m"}, "files": {"other": ("f.bin", b"x")}}
        yield "form-empty-file", {"data": {"name": "m"}, "files": {"file": ("f.bin", b"")}}
    for content_type in CONTENT_TYPES:
        yield content_type, {"content": b"a=1&b=2", "headers": {"Content-Type": content_type}}


def _requests(openapi: dict) -> Iterator[Request]:
    """(method, path, what is malformed, request kwargs) for every route of the OpenAPI."""
    for template, item in openapi["paths"].items():
        for method, operation in item.items():
            params = operation.get("parameters", [])
            path_names = [p["name"] for p in params if p["in"] == "path"]
            query_names = [p["name"] for p in params if p["in"] == "query"]
            base = _fill(template, path_names, "x")
            yield method, template, "nothing", {"url": base}
            for value in PATH_IDS if path_names else []:
                yield method, template, f"path {value[:20]!r}", {"url": _fill(template, path_names, value)}
            for name in query_names:
                for value in QUERY_VALUES:
                    yield (
                        method,
                        template,
                        f"query {name}={value[:20]!r}",
                        {"url": base, "params": {name: value}},
                    )
            for what, kwargs in _body_requests(
                method, template, operation.get("requestBody", {}).get("content", {})
            ):
                yield method, template, f"body {what}", {"url": base, **kwargs}


def _check(response, operation: dict, label: str) -> None:
    assert response.status_code < 500, f"{label}: {response.status_code} {response.text[:300]}"
    documented = set(operation["responses"])
    assert str(response.status_code) in documented, f"{label}: {response.status_code} is not documented"
    if response.status_code >= 400:
        error = response.json()["error"]
        assert isinstance(error["code"], str) and isinstance(error["message"], str) and error["message"], (
            label
        )
        assert set(error) <= {"code", "message", "details"}, label


def test_no_malformed_request_to_any_route_gets_a_5xx_or_an_undocumented_status(api, headers):
    openapi = api.get("/openapi.json").json()
    seen: Counter = Counter()
    failures: list[str] = []
    for method, template, what, kwargs in _requests(openapi):
        operation = openapi["paths"][template][method]
        url = kwargs.pop("url")
        for auth in (headers, {}):
            response = api.request(
                method.upper(),
                url,
                headers={**auth, **kwargs.get("headers", {})},
                **{k: v for k, v in kwargs.items() if k != "headers"},
            )
            try:
                _check(response, operation, f"{method.upper()} {template} ({what}, auth={bool(auth)})")
            except AssertionError as failure:
                failures.append(str(failure).split("\n")[0])
            seen[response.status_code] += 1
    assert not failures, f"{len(failures)} bad answers:\n" + "\n".join(failures)
    assert seen[422] > 100 and seen[401] > 100 and seen[404] > 10, seen
