"""The SDK's transport against a scripted server: retries with backoff, typed errors, pagination."""

import httpx
import pytest

from gauntlet_client import Client, ConnectionFailed, InvalidInput, NotFound, RateLimited
from gauntlet_client.transport import Transport


def _transport(handler, sleeps: list[float], **kwargs) -> Transport:
    http = httpx.Client(base_url="http://gauntlet.test", transport=httpx.MockTransport(handler))
    return Transport("http://gauntlet.test", "gnt_key", http=http, sleep=sleeps.append, **kwargs)


def _error(status: int, code: str, message: str = "no") -> httpx.Response:
    return httpx.Response(status, json={"error": {"code": code, "message": message}})


def test_503_and_429_are_retried_with_growing_delays_then_succeed():
    answers = [_error(503, "unavailable"), _error(429, "rate_limited"), _error(503, "unavailable")]
    seen = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers["Authorization"])
        return answers.pop(0) if answers else httpx.Response(200, json={"ok": True})

    sleeps: list[float] = []
    assert _transport(handler, sleeps, backoff=1.0).json("GET", "/v1/jobs") == {"ok": True}
    assert seen == ["Bearer gnt_key"] * 4
    assert len(sleeps) == 3
    # Exponential with jitter in [0.5, 1]: 1 * 2**attempt scaled.
    for attempt, delay in enumerate(sleeps):
        assert 0.5 * 2**attempt <= delay <= 2**attempt


def test_retry_after_is_honoured_and_exhausted_retries_raise_the_typed_error_with_its_code():
    def handler(request: httpx.Request) -> httpx.Response:
        response = _error(429, "rate_limited", "slow down")
        response.headers["Retry-After"] = "7"
        return response

    sleeps: list[float] = []
    with pytest.raises(RateLimited) as caught:
        _transport(handler, sleeps, max_retries=2).request("GET", "/v1/models")
    assert sleeps == [7.0, 7.0]
    assert caught.value.code == "rate_limited" and caught.value.status == 429
    assert caught.value.message == "slow down"


def test_errors_are_typed_and_carry_the_services_code():
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("missing"):
            return _error(404, "not_found", "no job job_missing")
        return _error(422, "eps_in_pixel_units", "eps 8 looks like 8/255")

    sleeps: list[float] = []
    transport = _transport(handler, sleeps)
    with pytest.raises(NotFound) as missing:
        transport.request("GET", "/v1/jobs/job_missing")
    assert (missing.value.code, missing.value.status) == ("not_found", 404)
    with pytest.raises(InvalidInput) as invalid:
        transport.request("POST", "/v1/jobs", json={})
    assert invalid.value.code == "eps_in_pixel_units" and "8/255" in invalid.value.message
    assert sleeps == []


def test_connection_errors_are_retried_but_a_lost_answer_to_a_post_is_not_resent():
    calls = {"connect": 0, "read": 0}

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/connect":
            calls["connect"] += 1
            if calls["connect"] < 3:
                raise httpx.ConnectError("refused", request=request)
            return httpx.Response(200, json={})
        calls["read"] += 1
        raise httpx.ReadError("reset", request=request)

    sleeps: list[float] = []
    transport = _transport(handler, sleeps)
    transport.request("POST", "/connect")
    assert calls["connect"] == 3
    with pytest.raises(ConnectionFailed):
        transport.request("POST", "/upload")
    assert calls["read"] == 1  # not sent again: the server may have acted on it
    transport_with_key = _transport(handler, [], max_retries=2)
    with pytest.raises(ConnectionFailed):
        transport_with_key.request("POST", "/upload", headers={"Idempotency-Key": "k"})
    assert calls["read"] == 4  # an idempotency key makes resending safe


def test_lists_follow_next_cursor_over_every_page():
    pages = {
        None: {"items": [{"n": 1}, {"n": 2}], "next_cursor": "c1"},
        "c1": {"items": [{"n": 3}], "next_cursor": "c2"},
        "c2": {"items": [{"n": 4}], "next_cursor": None},
    }
    asked = []

    def handler(request: httpx.Request) -> httpx.Response:
        cursor = request.url.params.get("cursor")
        asked.append((cursor, request.url.params.get("limit")))
        return httpx.Response(200, json=pages[cursor])

    items = list(_transport(handler, []).pages("/v1/models", {"limit": 2, "unused": None}))
    assert [item["n"] for item in items] == [1, 2, 3, 4]
    assert asked == [(None, "2"), ("c1", "2"), ("c2", "2")]


def test_submit_sends_an_idempotency_key_of_its_own_when_none_is_given():
    keys = []

    def handler(request: httpx.Request) -> httpx.Response:
        keys.append(request.headers.get("Idempotency-Key"))
        return httpx.Response(202, json=_job_view())

    http = httpx.Client(base_url="http://gauntlet.test", transport=httpx.MockTransport(handler))
    client = Client("http://gauntlet.test", "gnt_key", http=http)
    client.jobs.submit({"kind": "evasion"})
    client.jobs.submit({"kind": "evasion"}, idempotency_key="mine")
    assert keys[0] and keys[0].startswith("gauntlet-client-") and keys[1] == "mine"


def _job_view(status: str = "queued", progress: float = 0.0, stage: str | None = None) -> dict:
    return {
        "id": "job_1",
        "kind": "evasion",
        "status": status,
        "progress": progress,
        "stage": stage,
        "error": None,
        "model_id": "mdl_1",
        "dataset_id": "builtin:digits-test",
        "params": {},
        "seed": 0,
        "attempts": 0,
        "created_at": "2026-01-01T00:00:00Z",
        "started_at": None,
        "finished_at": None,
        "summary": None,
    }
