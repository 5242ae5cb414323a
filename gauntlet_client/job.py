"""A handle on one submitted job: its state, a wait with progress, its report and artifacts."""

import time
from typing import Any

from app.schemas.jobs import JobView
from gauntlet_client.artifacts import JobArtifacts
from gauntlet_client.errors import JobFailed, WaitTimeout
from gauntlet_client.events import TERMINAL, job_states
from gauntlet_client.progress import ProgressDisplay
from gauntlet_client.reports import Report, parse_report
from gauntlet_client.transport import Transport


class Job:
    """A job of the service; `view` is its state as last read."""

    def __init__(self, transport: Transport, view: JobView) -> None:
        self._transport = transport
        self.view = view
        self.artifacts = JobArtifacts(transport, view.id)

    def __repr__(self) -> str:
        return f"Job(id={self.id!r}, kind={self.view.kind!r}, status={self.status!r})"

    @property
    def id(self) -> str:
        """The job's id."""
        return self.view.id

    @property
    def status(self) -> str:
        """The status as last read."""
        return self.view.status

    def refresh(self) -> JobView:
        """Read the job's current state."""
        self.view = JobView.model_validate(self._transport.json("GET", f"/v1/jobs/{self.id}"))
        return self.view

    def cancel(self) -> JobView:
        """Cancel the job (at once when queued, at its next batch when running)."""
        self.view = JobView.model_validate(self._transport.json("POST", f"/v1/jobs/{self.id}/cancel"))
        return self.view

    def wait(
        self,
        *,
        progress: bool | ProgressDisplay = False,
        timeout: float | None = None,
        use_events: bool = True,
        poll_interval: float = 1.0,
        raise_on_failure: bool = False,
    ) -> JobView:
        """Follow the job until it ends (events, else polling) and return its final state.

        `progress=True` shows a bar with stage and ETA on a terminal and plain lines otherwise (stderr);
        `raise_on_failure` raises JobFailed for a failed or cancelled job; past `timeout` seconds
        WaitTimeout is raised.
        """
        display = (
            progress if isinstance(progress, ProgressDisplay) else ProgressDisplay() if progress else None
        )
        deadline = None if timeout is None else time.monotonic() + timeout
        try:
            if self.view.status not in TERMINAL:
                for view in job_states(
                    self._transport, self.id, use_events=use_events, interval=poll_interval
                ):
                    self.view = view
                    if display:
                        display.update(view)
                    if deadline is not None and time.monotonic() > deadline and view.status not in TERMINAL:
                        raise WaitTimeout(f"job {self.id} still {view.status} after {timeout:g} s")
            elif display:
                display.update(self.view)
        finally:
            if display:
                display.close()
        if raise_on_failure and self.view.status != "succeeded":
            error = self.view.error
            raise JobFailed(
                self.id, self.view.status, error.code if error else None, error.message if error else None
            )
        return self.view

    def report_json(self) -> dict[str, Any]:
        """The report as the service sent it (409 Conflict until the job succeeded)."""
        body: dict[str, Any] = self._transport.json("GET", f"/v1/jobs/{self.id}/report")
        return body

    def report(self) -> Report:
        """The report, parsed into the kind's typed model."""
        return parse_report(self.report_json())

    def report_html(self) -> str:
        """The HTML page of the report."""
        return self._transport.request("GET", f"/v1/jobs/{self.id}/report.html").text
