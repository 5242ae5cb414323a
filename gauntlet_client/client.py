"""The client: one object per service and API key, with its models, datasets and jobs."""

import os
from types import TracebackType

import httpx

from gauntlet_client.datasets import Datasets
from gauntlet_client.jobs import Jobs
from gauntlet_client.models import Models
from gauntlet_client.transport import Transport

DEFAULT_URL = "http://127.0.0.1:8000"


class Client:
    """A Gauntlet service seen through one API key.

    `url` and `api_key` default to the GAUNTLET_URL and GAUNTLET_API_KEY environment variables.
    Requests answered 429 or 503, and connection errors, are retried `max_retries` times with
    exponential backoff; every other failure raises a typed GauntletError carrying the service's code.
    """

    def __init__(
        self,
        url: str | None = None,
        api_key: str | None = None,
        *,
        timeout: float = 60.0,
        max_retries: int = 4,
        http: httpx.Client | None = None,
    ) -> None:
        self.url = url or os.environ.get("GAUNTLET_URL") or DEFAULT_URL
        key = api_key or os.environ.get("GAUNTLET_API_KEY")
        self.transport = Transport(self.url, key, timeout=timeout, max_retries=max_retries, http=http)
        self.models = Models(self.transport)
        self.datasets = Datasets(self.transport)
        self.jobs = Jobs(self.transport)

    def close(self) -> None:
        """Close the connections."""
        self.transport.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.close()
