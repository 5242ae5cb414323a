"""A job's successive states: server-sent events from /v1/jobs/{id}/events, falling back to polling."""

import json
import time
from collections.abc import Iterable, Iterator

import httpx

from app.schemas.jobs import JobView
from gauntlet_client.errors import GauntletError
from gauntlet_client.transport import Transport

TERMINAL = frozenset({"succeeded", "failed", "cancelled"})
# The service sends an event only when something changes; a read this long without one reconnects.
STREAM_READ_TIMEOUT = 30.0


def parse_sse(lines: Iterable[str]) -> Iterator[tuple[str, str]]:
    """(event, data) pairs of a server-sent event stream (data lines joined by newlines)."""
    event = "message"
    data: list[str] = []
    for raw in lines:
        line = raw.rstrip("\r")
        if not line:
            if data:
                yield event, "\n".join(data)
            event, data = "message", []
        elif line.startswith(":"):
            continue
        else:
            field, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if field == "event":
                event = value
            elif field == "data":
                data.append(value)
    if data:
        yield event, "\n".join(data)


def stream_states(transport: Transport, job_id: str) -> Iterator[JobView]:
    """States from the event stream, until a terminal one; reconnects when the stream goes quiet."""
    while True:
        try:
            with transport.stream(f"/v1/jobs/{job_id}/events", timeout=STREAM_READ_TIMEOUT) as response:
                for event, data in parse_sse(response.iter_lines()):
                    if event != "state":
                        continue
                    view = JobView.model_validate(json.loads(data))
                    yield view
                    if view.status in TERMINAL:
                        return
        except httpx.ReadTimeout:
            continue


def poll_states(transport: Transport, job_id: str, interval: float) -> Iterator[JobView]:
    """States read with GET /v1/jobs/{id} every `interval` seconds, until a terminal one."""
    while True:
        view = JobView.model_validate(transport.json("GET", f"/v1/jobs/{job_id}"))
        yield view
        if view.status in TERMINAL:
            return
        time.sleep(interval)


def job_states(
    transport: Transport, job_id: str, *, use_events: bool = True, interval: float = 1.0
) -> Iterator[JobView]:
    """States of a job until it ends: events while the stream works, polling after it fails."""
    if use_events:
        try:
            for view in stream_states(transport, job_id):
                yield view
                if view.status in TERMINAL:
                    return
        except (httpx.TransportError, ValueError):
            pass  # the stream broke (a proxy that buffers, a malformed event): poll instead
        except GauntletError as exc:
            if exc.status not in (404, 405, 406) and (exc.status or 0) < 500:
                raise
    yield from poll_states(transport, job_id, interval)
