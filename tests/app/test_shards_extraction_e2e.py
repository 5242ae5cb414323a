"""An extraction job split into shards (one per attack and defense row) over two live workers (real
Postgres and Redis) gives the report, query logs and surrogates of the same job in one piece."""

import pytest

from tests.app.helpers import ready_model
from tests.app.test_extraction_e2e import extraction_spec
from tests.app.test_report_stability_e2e import figures
from tests.app.test_shards_e2e import _run

pytestmark = pytest.mark.service

# The tiniest job with several cells: two attacks, each against the undefended interface and the
# label-only row the report always has (4 cells, so 4 shards).
PARAMS = {
    "budgets": [60],
    "attacks": [
        {"name": "knockoff", "strategy": "random"},
        {"name": "jacobian", "seed_size": 20, "rounds": 1},
    ],
    "surrogate": {"architecture": "victim", "epochs": 2, "min_steps": 0},
    "defenses": [],
    "detection": [],
    "transfer": None,
    "max_samples": 40,
}


@pytest.fixture(scope="module")
def tenant(make_key, start_worker) -> dict:
    start_worker()
    start_worker()
    return make_key("extraction-shards")


@pytest.mark.slow
def test_a_split_extraction_job_gives_the_report_of_one_piece(api, tenant, digits_onnx):
    model = ready_model(api, tenant, digits_onnx)
    spec = extraction_spec(model["id"], **PARAMS)
    whole, whole_report = _run(api, tenant, {**spec, "sharding": {"max_shards": 1}})
    assert whole["shards"] == []
    split, split_report = _run(api, tenant, spec)
    assert [shard["index"] for shard in split["shards"]] == [0, 1, 2, 3]
    # Every shard succeeded (attempts are not asserted: a re-run shard must give the same figures too).
    assert all(shard["state"] == "succeeded" for shard in split["shards"]), split["shards"]
    assert len({shard["worker"] for shard in split["shards"]}) >= 2
    assert [[row["defense"] for row in a["rows"]] for a in split_report["attacks"]] == [
        ["none", "label_only"]
    ] * 2
    assert figures(split_report) == figures(whole_report)
    assert len(split_report["derived_model_ids"]) == len(whole_report["derived_model_ids"]) == 2

    def files(job: dict) -> list[tuple[str, int]]:
        listed = api.get(f"/v1/jobs/{job['id']}/artifacts", headers=tenant).json()["items"]
        return sorted((a["name"], a["size_bytes"]) for a in listed if a["kind"] == "query_log")

    assert len(files(split)) == 2 and [n for n, _ in files(split)] == [n for n, _ in files(whole)]
