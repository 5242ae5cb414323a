"""HTTP transport: authentication, retries with backoff on 429, 503 and connection errors, typed errors."""

import random
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import httpx

from gauntlet_client.errors import ConnectionFailed, error_from_response

RETRY_STATUSES = frozenset({429, 503})
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})
# Errors raised before the request reached the server: always safe to send again.
NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)


class Transport:
    """An httpx client for one service and key that retries what is safe to retry."""

    def __init__(
        self,
        url: str,
        api_key: str | None,
        *,
        timeout: float = 60.0,
        max_retries: int = 4,
        backoff: float = 0.5,
        max_backoff: float = 20.0,
        http: httpx.Client | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.http = http or httpx.Client(base_url=url.rstrip("/"), timeout=timeout)
        self.http.headers.update(headers)
        self.max_retries = max_retries
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.sleep = sleep

    def close(self) -> None:
        """Close the connection pool."""
        self.http.close()

    def _delay(self, attempt: int, response: httpx.Response | None) -> float:
        """Seconds before the next try: the service's Retry-After, else exponential with jitter."""
        retry_after = response.headers.get("Retry-After") if response is not None else None
        if retry_after and retry_after.strip().isdigit():
            return min(float(retry_after), self.max_backoff)
        return float(min(self.backoff * 2**attempt, self.max_backoff) * (0.5 + random.random() / 2))

    def request(
        self, method: str, path: str, *, headers: Mapping[str, str] | None = None, **kwargs: Any
    ) -> httpx.Response:
        """Send a request, retrying 429, 503 and connection errors; raise a typed error on any failure."""
        method = method.upper()
        resend_safe = method in IDEMPOTENT_METHODS or "Idempotency-Key" in (headers or {})
        attempt = 0
        while True:
            try:
                response = self.http.request(method, path, headers=headers, **kwargs)
            except httpx.TransportError as exc:
                retryable = isinstance(exc, NOT_SENT) or resend_safe
                if not retryable or attempt >= self.max_retries:
                    raise ConnectionFailed(f"{method} {path}: {exc or type(exc).__name__}") from exc
                self.sleep(self._delay(attempt, None))
                attempt += 1
                continue
            if response.status_code in RETRY_STATUSES and attempt < self.max_retries:
                self.sleep(self._delay(attempt, response))
                attempt += 1
                continue
            if response.is_error:
                raise error_from_response(response)
            return response

    def json(self, method: str, path: str, **kwargs: Any) -> Any:
        """Send a request and decode its JSON answer."""
        return self.request(method, path, **kwargs).json()

    @contextmanager
    def stream(self, path: str, *, timeout: float | None = None) -> Iterator[httpx.Response]:
        """A streamed GET (server-sent events); a failed answer raises its typed error."""
        with self.http.stream("GET", path, timeout=httpx.Timeout(10.0, read=timeout)) as response:
            if response.is_error:
                response.read()
                raise error_from_response(response)
            yield response

    def pages(self, path: str, params: Mapping[str, Any] | None = None) -> Iterator[dict[str, Any]]:
        """Every item of a cursor-paginated list, following `next_cursor` until it is null."""
        query = {k: v for k, v in (params or {}).items() if v is not None}
        seen: set[str] = set()
        while True:
            body = self.json("GET", path, params=query)
            yield from body.get("items", [])
            cursor = body.get("next_cursor")
            if not cursor or cursor in seen:
                return
            seen.add(cursor)
            query["cursor"] = cursor
