"""The API's two hot paths stay lean and keep their contract: the key cache honours revocation within its
bound, a status read loads no report and opens no transaction, a submission costs one statement per check
(real Postgres and Redis; no worker: jobs stay queued, a model row is written as `ready` directly)."""

import time
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import event, update

from app.auth import KeyCache, bearer_key_hash, hash_key
from app.main import create_app
from app.orm import ApiKey, ModelRecord
from app.storage import put_blob

pytestmark = pytest.mark.service
FGSM = [{"name": "fgsm", "eps": [0.1]}]


def _ready_model(api: TestClient, headers: dict) -> str:
    """A `ready` model row of the key's tenant, written without a worker."""
    key_hash = bearer_key_hash(headers["Authorization"])
    with api.app.state.session_factory() as session:
        key = session.query(ApiKey).filter_by(key_hash=key_hash).one()
        model = ModelRecord(
            tenant_id=key.tenant_id, name="hot-path", format="onnx", input_shape=[1, 8, 8], num_classes=10,
            input_range=[0.0, 1.0], status="ready", white_box=True, size_bytes=4,
            blob_sha256=put_blob(session, b"onnx", max_bytes=1 << 20),
        )  # fmt: skip
        session.add(model)
        session.commit()
        return model.id


def _revoke(api: TestClient, headers: dict) -> None:
    """Revoke a key in the database, as `gauntlet keys revoke` does from another process."""
    with api.app.state.session_factory() as session:
        session.execute(
            update(ApiKey)
            .where(ApiKey.key_hash == bearer_key_hash(headers["Authorization"]))
            .values(revoked_at=datetime.now(UTC))
        )
        session.commit()


@pytest.fixture
def client_with_cache(settings) -> Iterator[TestClient]:
    """An API whose key cache keeps a key for 1 second."""
    with TestClient(create_app(settings.model_copy(update={"api_key_cache_s": 1.0}))) as client:
        yield client


class Statements:
    """The SQL statements an engine runs while it is recorded, transaction control included."""

    def __init__(self, engine) -> None:  # noqa: ANN001
        self.engine, self.sql = engine, []

    def _record(self, conn, cursor, statement, parameters, context, executemany) -> None:  # noqa: ANN001
        self.sql.append(statement)

    def _begin(self, conn) -> None:  # noqa: ANN001
        self.sql.append("BEGIN")

    def _commit(self, conn) -> None:  # noqa: ANN001
        self.sql.append("COMMIT")

    def _rollback(self, conn) -> None:  # noqa: ANN001
        self.sql.append("ROLLBACK")

    def __enter__(self) -> "Statements":
        event.listen(self.engine, "before_cursor_execute", self._record)
        event.listen(self.engine, "begin", self._begin)
        event.listen(self.engine, "commit", self._commit)
        event.listen(self.engine, "rollback", self._rollback)
        return self

    def __exit__(self, *exc: object) -> None:
        event.remove(self.engine, "before_cursor_execute", self._record)
        event.remove(self.engine, "begin", self._begin)
        event.remove(self.engine, "commit", self._commit)
        event.remove(self.engine, "rollback", self._rollback)


def test_a_revoked_key_is_refused_within_the_cache_bound(client_with_cache, make_key):
    headers = make_key("cache-revoke")
    assert client_with_cache.get("/v1/jobs", headers=headers).status_code == 200
    _revoke(client_with_cache, headers)
    revoked_at = time.monotonic()
    # Still cached: the bound is what is promised, not immediacy.
    statuses = []
    while time.monotonic() - revoked_at < 3.0:
        statuses.append(client_with_cache.get("/v1/jobs", headers=headers).status_code)
        if statuses[-1] == 401:
            break
        time.sleep(0.05)
    assert statuses[-1] == 401, statuses
    assert time.monotonic() - revoked_at <= 1.0 + 0.5  # the 1 s bound, plus the last request's time
    body = client_with_cache.get("/v1/jobs", headers=headers).json()
    assert body["error"]["code"] == "unauthorized" and "revoked" in body["error"]["message"]


def test_without_the_cache_a_revoked_key_is_refused_at_once(settings, make_key):
    headers = make_key("cache-off")
    with TestClient(create_app(settings.model_copy(update={"api_key_cache_s": 0}))) as client:
        assert client.get("/v1/jobs", headers=headers).status_code == 200
        _revoke(client, headers)
        assert client.get("/v1/jobs", headers=headers).status_code == 401


def test_a_cached_key_costs_no_query_and_an_unknown_key_is_never_cached(client_with_cache, make_key):
    headers = make_key("cache-queries")
    engine = client_with_cache.app.state.engine
    client_with_cache.get("/v1/jobs", headers=headers)
    with Statements(engine) as recorded:
        assert client_with_cache.get("/v1/jobs", headers=headers).status_code == 200
    assert not any("api_keys" in sql for sql in recorded.sql), recorded.sql
    unknown = {"Authorization": "Bearer gnt_not-a-key"}
    for _ in range(2):
        with Statements(engine) as recorded:
            assert client_with_cache.get("/v1/jobs", headers=unknown).status_code == 401
        assert any("api_keys" in sql for sql in recorded.sql), recorded.sql


def test_malformed_authorization_headers_answer_as_before(api):
    for headers, message in (
        ({}, "missing Authorization header"),
        ({"Authorization": "Basic abc"}, "must be 'Bearer <api key>'"),
        ({"Authorization": "Bearer "}, "must be 'Bearer <api key>'"),
        ({"Authorization": "Bearer gnt_unknown"}, "unknown or revoked API key"),
    ):
        answer = api.get("/v1/jobs", headers=headers)
        assert answer.status_code == 401, headers
        assert answer.json()["error"]["code"] == "unauthorized"
        assert message in answer.json()["error"]["message"]


def test_the_cache_is_bounded_and_expires():
    cache = KeyCache(ttl_s=0.2, max_entries=3)

    class FakeSession:
        def execute(self, _query):  # noqa: ANN001, ANN202
            class Rows:
                def first(self):  # noqa: ANN202
                    return ("ten_x", "x")

            return Rows()

    for n in range(5):
        cache.resolve(FakeSession(), hash_key(f"k{n}"))  # type: ignore[arg-type]
    assert len(cache._entries) <= 3
    assert cache.get(hash_key("k4")) is not None
    time.sleep(0.25)
    assert cache.get(hash_key("k4")) is None
