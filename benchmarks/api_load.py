"""Load generators for the API benchmark: 16 concurrent loopback clients sending one request over and over.

`wrk` (a C load generator; Debian's package `wrk`) when it is installed: it takes a small fraction of a core,
so on a small machine the figure measures the API, not the client. Otherwise 16 httpx clients in this
process, which on two cores take a large share of the CPU the API would use (the result says which ran).
"""

import asyncio
import json
import re
import shutil
import subprocess
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
