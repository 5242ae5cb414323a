"""Black-box access to a remote prediction endpoint, and its validation at intake.

Protocol (the public contract for remote models, v1)
----------------------------------------------------
Gauntlet sends ``POST <endpoint_url>`` with ``Content-Type: application/json`` and the body::

    {"inputs": [[...], ...]}

``inputs`` is a nested list of numbers of shape ``[batch, *input_shape]``, values inside the model's
declared ``input_range``. A request holds at most ``max_batch`` samples (default 256), and fewer when
the samples are large (at most about four million numbers per request); bigger queries are split.

The endpoint answers ``200`` with a JSON object holding one of:

- ``{"logits": [[...], ...]}``: raw scores of shape ``[batch, num_classes]``, finite numbers, or
- ``{"probabilities": [[...], ...]}``: class probabilities of the same shape, each row in [0, 1] and
  summing to 1 (within 1e-3). Gauntlet turns them into log-probabilities, so the classifier still
  returns logits (same softmax, same argmax), and marks the model as probability-only.

When both keys are present, ``logits`` wins; other keys are ignored. Row ``i`` of the answer must be
the prediction for sample ``i`` of the request.

Rules Gauntlet enforces on every request:

- The endpoint's host (as written in the URL, compared without DNS resolution) must be on the
  operator's allowlist (``GAUNTLET_REMOTE_HOST_ALLOWLIST``); it is checked again before every request.
- Redirects are never followed: a 3xx answer is an error. Register the final URL.
- Connection errors, timeouts and the answers 502, 503 and 504 are retried a bounded number of
  times (default 3) with exponential backoff; any other non-200 answer is an error at once.
- An answer larger than 64 MiB (after decompression) is refused; so is one that is not JSON, has the
  wrong shape, or holds non-finite, non-numeric or (for probabilities) out-of-range values.
- Proxy settings from the environment are ignored; the request goes straight to the host.

Errors raise ``RemoteModelError`` with a stable ``code``: ``host_not_allowed``, ``remote_unreachable``
(the host could not be reached or kept failing transiently) or ``remote_bad_response``.
"""

import json
import math
import time
from collections.abc import Sequence
from types import TracebackType

import httpx
import numpy as np

from worker.engine.models.intake.errors import IntakeReport, ModelRejected

MAX_RESPONSE_BYTES = 64 * 1024 * 1024
MAX_VALUES_PER_REQUEST = 4 * 1024 * 1024
TRANSIENT_STATUSES = frozenset({502, 503, 504})
PROBABILITY_SUM_TOLERANCE = 1e-3
ATTEMPT_DEADLINE_FACTOR = 3  # one attempt, body included, may take at most this many `timeout`s


class RemoteModelError(Exception):
    """A remote endpoint failed; `code` is stable and machine-readable, `message` is for people."""

    def __init__(self, code: str, message: str) -> None:
        """Store the code and the human-readable message."""
        super().__init__(message)
        self.code = code
        self.message = message


class _Transient(Exception):
    """A failure worth retrying (connection error, timeout, 502/503/504)."""


def _bad(message: str) -> RemoteModelError:
    """A remote_bad_response error."""
    return RemoteModelError("remote_bad_response", message)


def _parse_answer(body: bytes, batch: int, num_classes: int) -> tuple[np.ndarray, str]:
    """Decode an answer to float32 logits [batch, num_classes]; also say which key it came from."""
    try:
        payload = json.loads(body)
    except (ValueError, RecursionError) as exc:
        raise _bad(f"the endpoint's answer is not valid JSON: {exc}") from exc
    if not isinstance(payload, dict):
        raise _bad('the endpoint must answer a JSON object {"logits": [[...]]}')
    kind = "logits" if "logits" in payload else "probabilities" if "probabilities" in payload else None
    if kind is None:
        raise _bad(f'the answer has neither "logits" nor "probabilities" (keys: {sorted(payload)[:10]})')
    try:
        values = np.asarray(payload[kind])
    except (ValueError, RecursionError) as exc:
        raise _bad(f'"{kind}" is not a rectangular array of numbers: {exc}') from exc
    if values.dtype.kind not in "iuf":
        raise _bad(f'"{kind}" must hold only numbers (got array of dtype {values.dtype})')
    if values.shape != (batch, num_classes):
        raise _bad(
            f'"{kind}" has shape {list(values.shape)} for a request of {batch} samples; '
            f"expected [{batch}, {num_classes}]"
        )
    values = values.astype(np.float64)
    if not np.isfinite(values).all():
        raise _bad(f'"{kind}" holds non-finite values (NaN or infinity)')
    if kind == "logits":
        return values.astype(np.float32), kind
    if values.min() < -PROBABILITY_SUM_TOLERANCE or values.max() > 1 + PROBABILITY_SUM_TOLERANCE:
        raise _bad('"probabilities" must lie in [0, 1]')
    error = np.abs(values.sum(axis=1) - 1)
    if error.max() > PROBABILITY_SUM_TOLERANCE:
        worst = float(values.sum(axis=1)[error.argmax()])
        raise _bad(f'each row of "probabilities" must sum to 1 (one row sums to {worst:.4g})')
    return np.log(np.clip(values, 1e-30, None)).astype(np.float32), kind


class RemoteClassifier:
    """Black-box classifier behind an HTTP endpoint (see the module docstring); counts samples queried.

    `queries` counts samples whose predictions came back; `http_requests` counts every attempt sent,
    retries included. `output_kind` is "logits" or "probabilities" once an answer has arrived.
    """

    def __init__(
        self,
        endpoint_url: str,
        *,
        input_shape: Sequence[int],
        num_classes: int,
        allowlist: Sequence[str],
        timeout: float = 10.0,
        max_batch: int = 256,
        retries: int = 3,
        backoff_s: float = 0.25,
        max_response_bytes: int = MAX_RESPONSE_BYTES,
    ) -> None:
        """Parse the URL, check its host and open an HTTP client (no request is sent yet)."""
        if isinstance(allowlist, str):
            raise TypeError("allowlist must be a sequence of host names, not one string")
        if max_batch < 1 or retries < 0 or num_classes < 1 or any(int(d) < 1 for d in input_shape):
            raise ValueError("max_batch, num_classes and input dims must be positive; retries >= 0")
        try:
            self.url = httpx.URL(endpoint_url)
        except Exception as exc:
            raise RemoteModelError("remote_unreachable", f"invalid endpoint URL {endpoint_url!r}") from exc
        if self.url.scheme not in ("http", "https") or not self.url.host:
            raise RemoteModelError("remote_unreachable", "the endpoint URL must be http(s)://host/...")
        self.input_shape = tuple(int(d) for d in input_shape)
        self.num_classes = int(num_classes)
        self.allowlist = allowlist
        self.timeout = float(timeout)
        per_sample = math.prod(self.input_shape)
        self.max_batch = max(1, min(int(max_batch), MAX_VALUES_PER_REQUEST // per_sample))
        self.retries = int(retries)
        self.backoff_s = float(backoff_s)
        self.max_response_bytes = int(max_response_bytes)
        self.queries = 0
        self.http_requests = 0
        self.output_kind: str | None = None
        self.check_host()
        self._client = httpx.Client(timeout=self.timeout, follow_redirects=False, trust_env=False)

    def check_host(self) -> None:
        """Refuse the endpoint unless its host, as written, is on the allowlist."""
        if self.url.host not in self.allowlist:
            raise RemoteModelError(
                "host_not_allowed", f"host {self.url.host!r} is not on this service's remote-model allowlist"
            )

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """Return float32 logits [batch, num_classes] for a batch, in chunks of at most `max_batch`."""
        batch = np.ascontiguousarray(x, dtype=np.float32)
        if batch.ndim != len(self.input_shape) + 1 or tuple(batch.shape[1:]) != self.input_shape:
            raise ValueError(f"expected inputs of shape [batch, {', '.join(map(str, self.input_shape))}]")
        if not np.isfinite(batch).all():
            raise ValueError("inputs must be finite")
        chunks = [self._query(batch[i : i + self.max_batch]) for i in range(0, len(batch), self.max_batch)]
        if not chunks:
            return np.zeros((0, self.num_classes), dtype=np.float32)
        return np.concatenate(chunks)

    def _query(self, chunk: np.ndarray) -> np.ndarray:
        """Send one chunk, retrying transient failures with exponential backoff."""
        body = json.dumps({"inputs": chunk.tolist()}, allow_nan=False).encode()
        for attempt in range(self.retries + 1):
            self.check_host()
            try:
                answer = self._post(body)
            except _Transient as exc:
                if attempt == self.retries:
                    raise RemoteModelError(
                        "remote_unreachable", f"{exc} (gave up after {attempt + 1} attempts)"
                    ) from exc
                time.sleep(min(self.backoff_s * 2**attempt, 5.0))
                continue
            logits, self.output_kind = _parse_answer(answer, len(chunk), self.num_classes)
            self.queries += len(chunk)
            return logits
        raise AssertionError("unreachable")  # pragma: no cover

    def _post(self, body: bytes) -> bytes:
        """One POST; returns the answer's bytes, reading at most `max_response_bytes`."""
        self.http_requests += 1
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        deadline = time.monotonic() + ATTEMPT_DEADLINE_FACTOR * self.timeout
        try:
            with self._client.stream("POST", self.url, content=body, headers=headers) as response:
                status = response.status_code
                if status in TRANSIENT_STATUSES:
                    raise _Transient(f"the endpoint answered HTTP {status}")
                if response.is_redirect:
                    target = response.headers.get("location", "?")
                    raise _bad(
                        f"the endpoint answered HTTP {status} redirecting to {target!r}; redirects are "
                        "not followed, register the final URL"
                    )
                if status != 200:
                    raise _bad(f"the endpoint answered HTTP {status}; expected 200")
                declared = response.headers.get("content-length", "")
                if declared.isdigit() and int(declared) > self.max_response_bytes:
                    raise self._too_large()
                received = bytearray()
                for piece in response.iter_bytes():
                    received += piece
                    if len(received) > self.max_response_bytes:
                        raise self._too_large()
                    if time.monotonic() > deadline:
                        limit = ATTEMPT_DEADLINE_FACTOR * self.timeout
                        raise _Transient(f"the answer took longer than {limit:g} s to arrive")
                return bytes(received)
        except httpx.TransportError as exc:
            raise _Transient(f"could not reach {self.url.host!r}: {type(exc).__name__}: {exc}") from exc
        except httpx.DecodingError as exc:
            raise _bad(f"the answer could not be decoded: {exc}") from exc

    def _too_large(self) -> RemoteModelError:
        """The error for an answer over the size limit."""
        return _bad(f"the answer is larger than the limit of {self.max_response_bytes} bytes")

    def close(self) -> None:
        """Close the HTTP client."""
        self._client.close()

    def __enter__(self) -> "RemoteClassifier":
        """Use as a context manager that closes the client."""
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        """Close the client."""
        self.close()


def validate_remote(
    endpoint_url: str,
    input_shape: Sequence[int],
    num_classes: int,
    input_range: tuple[float, float],
    allowlist: Sequence[str],
    *,
    seed: int = 0,
    timeout: float = 10.0,
    retries: int = 2,
) -> IntakeReport:
    """Query the endpoint with random inputs (batches of 1 and 4); ModelRejected if it misbehaves."""
    rng = np.random.default_rng(seed)
    low, high = float(input_range[0]), float(input_range[1])
    single = rng.uniform(low, high, size=(1, *input_shape)).astype(np.float32)
    four = rng.uniform(low, high, size=(4, *input_shape)).astype(np.float32)
    four[0] = single[0]
    try:
        with RemoteClassifier(
            endpoint_url,
            input_shape=input_shape,
            num_classes=num_classes,
            allowlist=allowlist,
            timeout=timeout,
            retries=retries,
        ) as model:
            first, second = model(single), model(four)
            kind, queries = model.output_kind, model.queries
    except RemoteModelError as exc:
        raise ModelRejected(exc.code, f"The remote endpoint failed validation: {exc.message}") from exc
    notes = [
        f"Remote endpoint answered batches of 1 and 4 with finite [batch, {num_classes}] {kind} "
        f"({queries} samples queried).",
        "Black-box only: a remote endpoint gives no gradients.",
    ]
    if kind == "probabilities":
        notes.append("The endpoint returns probabilities; Gauntlet uses their logarithms as logits.")
    drift = float(np.abs(first[0] - second[0]).max())
    if drift > 1e-4 * max(1.0, float(np.abs(first).max())):
        notes.append(f"The endpoint is not deterministic: the same input gave outputs {drift:.3g} apart.")
    return IntakeReport(white_box=False, max_abs_diff=None, notes=notes)
