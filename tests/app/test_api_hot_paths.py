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
from app.orm import ApiKey, Job, ModelRecord
from app.storage import put_blob
from tests.app.helpers import evasion_spec

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
    """The SQL statements an engine runs while recorded, each with whether its driver connection was in
    autocommit (psycopg sends no BEGIN before it, and nothing needs a ROLLBACK or COMMIT after it)."""

    def __init__(self, engine) -> None:  # noqa: ANN001
        self.engine, self.recorded = engine, []

    def _record(self, conn, cursor, statement, parameters, context, executemany) -> None:  # noqa: ANN001
        self.recorded.append((statement, conn.connection.dbapi_connection.autocommit))

    @property
    def sql(self) -> list[str]:
        return [statement for statement, _ in self.recorded]

    @property
    def all_autocommit(self) -> bool:
        return all(autocommit for _, autocommit in self.recorded)

    def __enter__(self) -> "Statements":
        event.listen(self.engine, "before_cursor_execute", self._record)
        return self

    def __exit__(self, *exc: object) -> None:
        event.remove(self.engine, "before_cursor_execute", self._record)


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
        assert client.get("/v1/jobs/job_" + "0" * 24, headers=headers).status_code == 404
        _revoke(client, headers)
        assert client.get("/v1/jobs", headers=headers).status_code == 401
        assert client.get("/v1/jobs/job_" + "0" * 24, headers=headers).status_code == 401
        assert client.post("/v1/jobs", headers=headers, json={}).status_code == 401


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


@pytest.fixture(scope="module")
def caller(make_key) -> dict:
    return make_key("hot-paths")


@pytest.fixture(scope="module")
def model_id(api, caller) -> str:
    return _ready_model(api, caller)


def _claimed_job_with_shards(api: TestClient, headers: dict, model_id: str) -> str:
    """A running job a worker claimed, split in two shards, with a large report stored on the row."""
    from app.orm import JobShard

    with api.app.state.session_factory() as session:
        tenant_id = (
            session.query(ApiKey)
            .filter_by(key_hash=bearer_key_hash(headers["Authorization"]))
            .one()
            .tenant_id
        )
        job = Job(
            tenant_id=tenant_id, kind="evasion", model_id=model_id, dataset_id="builtin:digits-test",
            params={"attacks": FGSM, "max_samples": 10}, status="running", stage="attacking", attempts=1,
            progress=0.1, started_at=datetime.now(UTC), summary={"note": "é ✓"},
            report={"big": ["x" * 1000] * 1000},
        )  # fmt: skip
        session.add(job)
        session.flush()
        for index, state, progress in ((0, "succeeded", 1.0), (1, "running", 0.5)):
            session.add(
                JobShard(
                    job_id=job.id, tenant_id=tenant_id, index=index, state=state, attempts=1,
                    worker_id=f"w{index}@host:1", plan={}, progress=progress, started_at=datetime.now(UTC),
                )
            )  # fmt: skip
        session.commit()
        return job.id


def test_a_status_read_is_one_autocommit_select_of_the_status_columns(api, caller, model_id):
    job_id = _claimed_job_with_shards(api, caller, model_id)
    api.get(f"/v1/jobs/{job_id}", headers=caller)  # the key is cached from here on
    with Statements(api.app.state.engine) as recorded:
        answer = api.get(f"/v1/jobs/{job_id}", headers=caller)
    assert answer.status_code == 200, answer.text
    statements = recorded.sql
    assert len(statements) == 2, statements  # the job's status columns, then its shards
    assert "FROM jobs" in statements[0] and "FROM job_shards" in statements[1]
    assert "report" not in statements[0] and "idempotency_key" not in statements[0]
    assert recorded.all_autocommit, recorded.recorded  # no BEGIN before, no ROLLBACK after
    view = answer.json()
    assert view["status"] == "running" and [s["index"] for s in view["shards"]] == [0, 1]
    assert view["progress"] == pytest.approx(0.95 * 1.5 / 2)
    assert "report" not in view


def test_a_status_read_answers_what_the_response_model_path_answers(api, caller, model_id):
    from app.routes.jobs import JOB_VIEW
    from app.services.jobs import job_view

    job_id = _claimed_job_with_shards(api, caller, model_id)
    answer = api.get(f"/v1/jobs/{job_id}", headers=caller)
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "application/json"
    assert int(answer.headers["content-length"]) == len(answer.content)
    listed = api.get("/v1/jobs", headers=caller, params={"status": "running"}).json()["items"]
    assert answer.json() == next(item for item in listed if item["id"] == job_id)
    with api.app.state.session_factory() as session:
        job = session.get(Job, job_id)
        assert answer.content == JOB_VIEW.dump_json(job_view(job), by_alias=True)


def test_another_tenants_job_and_an_unknown_job_are_404(api, caller, make_key, model_id):
    job_id = _claimed_job_with_shards(api, caller, model_id)
    stranger = make_key("hot-paths-stranger")
    for headers, path in ((stranger, job_id), (caller, "job_" + "0" * 24)):
        answer = api.get(f"/v1/jobs/{path}", headers=headers)
        assert answer.status_code == 404, answer.text
        assert answer.json()["error"]["code"] == "not_found"


def test_a_submission_reads_the_model_and_inserts_the_job_in_autocommit(api, caller, model_id):
    spec = evasion_spec(model_id, FGSM, max_samples=5)
    api.post("/v1/jobs", headers=caller, json=spec)  # the key is cached from here on
    with Statements(api.app.state.engine) as recorded:
        answer = api.post("/v1/jobs", headers=caller, json=spec)
    assert answer.status_code == 202, answer.text
    statements = recorded.sql
    assert len(statements) == 2, statements  # the model, then the job's INSERT
    assert "FROM models" in statements[0] and statements[1].startswith("INSERT INTO jobs")
    assert recorded.all_autocommit, recorded.recorded  # no BEGIN before, no COMMIT after
    assert answer.headers["content-type"] == "application/json"
    assert answer.json() == api.get(f"/v1/jobs/{answer.json()['id']}", headers=caller).json()
    with api.app.state.session_factory() as session:
        job = session.get(Job, answer.json()["id"])
        assert job is not None and job.enqueued_at is not None and job.status == "queued"


def test_idempotent_submissions_keep_their_contract_under_autocommit(api, caller, model_id):
    from concurrent.futures import ThreadPoolExecutor

    spec = evasion_spec(model_id, FGSM, max_samples=5)
    key = {"Idempotency-Key": f"hot-{time.time_ns()}"}
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda _: api.post("/v1/jobs", headers=caller | key, json=spec), range(8)))
    assert {a.status_code for a in answers} == {202}, [a.text for a in answers]
    assert len({a.json()["id"] for a in answers}) == 1
    other = api.post("/v1/jobs", headers=caller | key, json=evasion_spec(model_id, FGSM, max_samples=6))
    assert other.status_code == 409 and other.json()["error"]["code"] == "idempotency_conflict"


def test_connections_the_server_closed_are_replaced_without_an_error(api, caller, model_id, settings):
    """What pool_pre_ping did, without its round trip: after every backend of the database is terminated
    (as a Postgres restart does), the next requests are answered, none with a 500."""
    import sqlalchemy as sa

    from tests.services import POSTGRES_ADMIN_URL

    job_id = _claimed_job_with_shards(api, caller, model_id)
    for _ in range(3):
        assert api.get(f"/v1/jobs/{job_id}", headers=caller).status_code == 200
    database = settings.database_url.rsplit("/", 1)[1]
    admin = sa.create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        terminated = connection.execute(
            sa.text(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE datname = :name AND pid <> pg_backend_pid()"
            ),
            {"name": database},
        ).scalar()
    admin.dispose()
    assert terminated
    time.sleep(0.2)  # the termination message reaches the pooled sockets
    for _ in range(3):
        assert api.get(f"/v1/jobs/{job_id}", headers=caller).status_code == 200
        spec = evasion_spec(model_id, FGSM, max_samples=5)
        assert api.post("/v1/jobs", headers=caller, json=spec).status_code == 202
        assert api.get("/v1/jobs", headers=caller).status_code == 200
