"""One live API process and one worker for every client test (real Postgres and Redis)."""

import pytest

from tests.client.live import LiveApi


@pytest.fixture(scope="session")
def live_service(service_env, start_worker, make_key, tmp_path_factory):
    """(url, api key, environment with GAUNTLET_URL and GAUNTLET_API_KEY) of a live `gauntlet api`."""
    start_worker()
    api = LiveApi(service_env, tmp_path_factory.mktemp("client-api") / "api.log")
    key = make_key("client-tests")["Authorization"].removeprefix("Bearer ")
    yield api.url, key, {**service_env, "GAUNTLET_URL": api.url, "GAUNTLET_API_KEY": key}
    api.stop()


@pytest.fixture(scope="session")
def client_model_path(digits_onnx, tmp_path_factory):
    """The digits model as an ONNX file."""
    path = tmp_path_factory.mktemp("client-models") / "digits.onnx"
    path.write_bytes(digits_onnx)
    return path
