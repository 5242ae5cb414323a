"""Load generators for the API benchmark: 16 concurrent loopback clients sending one request over and over.

`wrk` (a C load generator; Debian's package `wrk`) when it is installed: it takes a small fraction of a core,
so on a small machine the figure measures the API, not the client. Otherwise 16 httpx clients in this
process, which on two cores take a large share of the CPU the API would use (the result says which ran).

Run alone, it measures the API's two hot paths without a worker and without torch: a fresh Postgres
database and a Redis database (flushed), a key, a `ready` model row written straight to the database,
`gauntlet api --workers N`, then submissions/s (`POST /v1/jobs`) and status reads/s (`GET /v1/jobs/{id}`):

    python benchmarks/api_load.py [--processes 1,2] [--seconds 8] [--rounds 1] [--redis-url URL]
                                  [--no-access-log]

Needs Postgres (GAUNTLET_TEST_POSTGRES_URL) and a Redis database nobody else uses (it is flushed).
"""

import argparse
import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

CLIENTS = 16


def _wrk(url: str, headers: dict[str, str], seconds: int, method: str, body: Any) -> tuple[int, int]:
    """(2xx answers, other answers and socket errors) of wrk with CLIENTS connections."""
    lines = [f'wrk.method = "{method}"']
    lines += [f"wrk.headers[{json.dumps(k)}] = {json.dumps(v)}" for k, v in headers.items()]
    if body is not None:
        lines += [
            f"wrk.body = {json.dumps(json.dumps(body))}",
            'wrk.headers["Content-Type"] = "application/json"',
        ]
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write("\n".join(lines) + "\n")
    try:
        out = subprocess.run(  # noqa: S603
            ["wrk", "-t2", f"-c{CLIENTS}", f"-d{seconds}s", "-s", script.name, url],  # noqa: S607
            capture_output=True, text=True, check=True,
        ).stdout  # fmt: skip
    finally:
        Path(script.name).unlink()
    total = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    failed = (int(bad.group(1)) if bad else 0) + (sum(map(int, errors.groups())) if errors else 0)
    return total - (int(bad.group(1)) if bad else 0), failed


async def _httpx(
    url: str, headers: dict[str, str], seconds: float, method: str, body: Any
) -> tuple[int, int]:
    """(2xx answers, other answers or errors) of CLIENTS httpx clients in this process."""
    ok = failed = 0
    limits = httpx.Limits(max_connections=CLIENTS, max_keepalive_connections=CLIENTS)
    async with httpx.AsyncClient(headers=headers, limits=limits, timeout=30) as client:
        deadline = time.monotonic() + seconds

        async def one_client() -> None:
            nonlocal ok, failed
            while time.monotonic() < deadline:
                try:
                    answer = await client.request(method, url, json=body)
                    ok, failed = (ok + 1, failed) if answer.status_code < 300 else (ok, failed + 1)
                except httpx.HTTPError:
                    failed += 1

        await asyncio.gather(*(one_client() for _ in range(CLIENTS)))
    return ok, failed


def hammer(
    url: str, headers: dict[str, str], seconds: float, method: str = "GET", body: Any = None
) -> dict[str, Any]:
    """Answers per second and failures of CLIENTS clients repeating one request for `seconds`."""
    seconds = max(1, round(seconds))
    if shutil.which("wrk"):
        ok, failed = _wrk(url, headers, seconds, method, body)
        generator = "wrk"
    else:
        ok, failed = asyncio.run(_httpx(url, headers, seconds, method, body))
        generator = "httpx"
    return {"per_s": ok / seconds, "failed": failed, "generator": generator}


SPEC: dict[str, Any] = {
    "kind": "evasion", "dataset_id": "builtin:digits-test", "seed": 0,
    "params": {"attacks": [{"name": "fgsm", "eps": [0.1]}], "max_samples": 10},
}  # fmt: skip


def ready_model(database_url: str, tenant_headers: dict[str, str]) -> str:
    """A `ready` model row of the key's tenant written straight to the database (no worker, no torch)."""
    from app.auth import hash_key
    from app.db import make_engine, make_session_factory, session_scope
    from app.orm import ApiKey, ModelRecord
    from app.settings import Settings
    from app.storage import put_blob

    engine = make_engine(Settings(database_url=database_url))
    token = tenant_headers["Authorization"].removeprefix("Bearer ")
    try:
        with session_scope(make_session_factory(engine)) as session:
            key = session.query(ApiKey).filter_by(key_hash=hash_key(token)).one()
            model = ModelRecord(
                tenant_id=key.tenant_id, name="bench", format="onnx", input_shape=[1, 8, 8], num_classes=10,
                input_range=[0.0, 1.0], status="ready", white_box=True, size_bytes=4,
                blob_sha256=put_blob(session, b"onnx", max_bytes=1 << 20),
            )  # fmt: skip
            session.add(model)
            session.flush()
            return model.id
    finally:
        engine.dispose()


def cpu_seconds(pid: int) -> float:
    """User and system CPU seconds of a process and its children (uvicorn's worker processes); Linux only."""
    total, pending = 0.0, [pid]
    while pending:
        current = pending.pop()
        try:
            fields = Path(f"/proc/{current}/stat").read_text().rsplit(")", 1)[1].split()
            children = Path(f"/proc/{current}/task/{current}/children").read_text().split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        pending += [int(child) for child in children]
    return total


def timed(
    pid: int, url: str, headers: dict[str, str], seconds: float, method: str = "GET", body: Any = None
) -> dict[str, Any]:
    """hammer() plus the API's CPU milliseconds per answered request: a figure that a machine shared with
    other work moves much less than requests per second."""
    before = cpu_seconds(pid)
    result = hammer(url, headers, seconds, method, body)
    answered = result["per_s"] * max(1, round(seconds))
    return result | {"api_cpu_ms": 1000 * (cpu_seconds(pid) - before) / max(answered, 1)}


def measure(
    service: Any, processes: int, headers: dict[str, str], model_id: str, seconds: float
) -> dict[str, Any]:
    """Submissions/s and status reads/s of CLIENTS clients against `gauntlet api --workers processes`."""
    import httpx as client

    url = service.start_api(processes)
    pid = service.processes["api"].pid
    spec = SPEC | {"model_id": model_id}
    job_id = client.post(f"{url}/v1/jobs", headers=headers, json=spec).raise_for_status().json()["id"]
    hammer(f"{url}/v1/jobs/{job_id}", headers, 1)  # warm every process and its connection pool
    submitted = timed(pid, f"{url}/v1/jobs", headers, seconds, "POST", spec)
    reads = timed(pid, f"{url}/v1/jobs/{job_id}", headers, seconds)
    return {
        "processes": processes, "submissions_per_s": round(submitted["per_s"], 1),
        "submission_errors": submitted["failed"],
        "api_cpu_ms_per_submission": round(submitted["api_cpu_ms"], 2),
        "status_reads_per_s": round(reads["per_s"], 1), "status_read_errors": reads["failed"],
        "api_cpu_ms_per_status_read": round(reads["api_cpu_ms"], 2),
        "load_generator": submitted["generator"],
        "load_average": [round(x, 1) for x in os.getloadavg()],
    }  # fmt: skip


def main() -> None:
    """Measure the API's submissions/s and status reads/s for each process count; print JSON."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--processes", default=f"1,{os.cpu_count() or 1}")
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument(
        "--no-access-log", action="store_true", help="run the API with GAUNTLET_ACCESS_LOG=false"
    )
    parser.add_argument(
        "--redis-url", default=os.environ.get("GAUNTLET_TEST_REDIS_URL", "redis://127.0.0.1:6379/13")
    )
    args = parser.parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from live_service import LiveService

    results: dict[str, Any] = {
        "cores": os.cpu_count(), "access_log": not args.no_access_log, "load_average_before": os.getloadavg(),
        "runs": [],
    }  # fmt: skip
    service = LiveService(args.redis_url, {"GAUNTLET_ACCESS_LOG": "false"} if args.no_access_log else None)
    try:
        headers = service.key("bench")
        model_id = ready_model(service.database_url, headers)
        for _ in range(args.rounds):
            for processes in sorted({int(p) for p in args.processes.split(",")}):
                results["runs"].append(measure(service, processes, headers, model_id, args.seconds))
                print(json.dumps(results["runs"][-1]), file=sys.stderr, flush=True)
        results["load_average_after"] = os.getloadavg()
    finally:
        service.close()
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
