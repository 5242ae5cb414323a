"""Waiting for a job: server-sent events, the fallback to polling, and how progress is shown."""

import io
import json

import httpx

from app.schemas.jobs import JobView
from gauntlet_client import Client
from gauntlet_client.events import parse_sse
from gauntlet_client.progress import ProgressDisplay, format_eta
from tests.client.test_transport import _job_view


def _event(**fields) -> str:
    return f"event: state\ndata: {json.dumps(_job_view(**fields))}\n\n"


def _client(handler) -> Client:
    http = httpx.Client(base_url="http://gauntlet.test", transport=httpx.MockTransport(handler))
    return Client("http://gauntlet.test", "gnt_key", http=http)


def test_parse_sse_joins_data_lines_and_skips_comments():
    lines = [": keep-alive", "event: state", "data: a", "data: b", "", "data: c", ""]
    assert list(parse_sse(lines)) == [("state", "a\nb"), ("message", "c")]


def test_wait_follows_the_event_stream_to_the_end_and_prints_plain_lines_off_a_terminal():
    stream = "".join(
        [
            _event(status="queued"),
            _event(status="running", progress=0.05, stage="fgsm eps=0.1"),
            _event(status="running", progress=0.08, stage="fgsm eps=0.1"),
            _event(status="running", progress=0.5, stage="pgd eps=0.1"),
            _event(status="succeeded", progress=1.0),
        ]
    )
    paths = []

    def handler(request: httpx.Request) -> httpx.Response:
        paths.append(request.url.path)
        if request.url.path.endswith("/events"):
            return httpx.Response(200, headers={"content-type": "text/event-stream"}, content=stream)
        return httpx.Response(200, json=_job_view())

    client = _client(handler)
    job = client.jobs.get("job_1")
    out = io.StringIO()
    final = job.wait(progress=ProgressDisplay(out))
    assert final.status == "succeeded" and job.status == "succeeded"
    assert paths == ["/v1/jobs/job_1", "/v1/jobs/job_1/events"]
    lines = out.getvalue().splitlines()
    # The 0.08 state changes neither stage nor progress by 10 points: no line of its own.
    assert len(lines) == 4, lines
    assert "running" in lines[1] and "fgsm eps=0.1" in lines[1]
    assert "pgd eps=0.1" in lines[2] and "50.0%" in lines[2]
    assert lines[3].startswith("job_1 succeeded") and "100.0%" in lines[3]


def test_wait_falls_back_to_polling_when_the_event_stream_is_unavailable():
    states = [_job_view(status="running", progress=0.4), _job_view(status="failed", progress=0.4)]
    polled = []

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/events"):
            return httpx.Response(502, text="bad gateway")
        polled.append(request.url.path)
        return httpx.Response(200, json=states.pop(0) if len(polled) > 1 and states else _job_view())

    job = _client(handler).jobs.get("job_1")
    final = job.wait(poll_interval=0.0)
    assert final.status == "failed"
    assert len(polled) == 3


def test_on_a_terminal_the_bar_redraws_one_line_with_stage_and_eta():
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    out = Terminal()
    display = ProgressDisplay(out)
    assert display.bar
    display.update(JobView.model_validate(_job_view(status="running", progress=0.25, stage="pgd eps=0.2")))
    display.close()
    text = out.getvalue()
    assert text.startswith("\rjob_1 [######------------------]") and "25.0%" in text
    assert "pgd eps=0.2" in text and "ETA" in text and text.endswith("\n")


def test_eta_extrapolates_the_time_since_running_began():
    display = ProgressDisplay(io.StringIO())
    display._started = 100.0
    assert display.eta(0.25, now=110.0) == 30.0
    assert display.eta(0.0, now=110.0) is None
    assert display.eta(0.005, now=110.0) is None  # too early to extrapolate
    assert display.eta(0.5, now=100.5) is None
    assert format_eta(30.0) == "00:30" and format_eta(3725) == "1:02:05" and format_eta(None) == "--:--"
