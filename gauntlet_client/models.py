"""Models: upload a file (waiting for validation on request), list, read and delete."""

import json
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

from app.schemas.resources import ModelView
from gauntlet_client.errors import ModelInvalid, WaitTimeout
from gauntlet_client.transport import Transport

FORMATS = {".onnx": "onnx", ".safetensors": "safetensors"}


def _json_field(value: Sequence[float] | Sequence[int] | None) -> str | None:
    """A list form field as JSON text, or None."""
    return None if value is None else json.dumps(list(value))


class Models:
    """The tenant's models."""

    def __init__(self, transport: Transport) -> None:
        self._transport = transport

    def upload(
        self,
        path: str | Path,
        *,
        name: str,
        input_shape: Sequence[int] | None = None,
        num_classes: int | None = None,
        format: str | None = None,  # noqa: A002
        input_range: Sequence[float] | None = None,
        architecture: str | None = None,
        input_mean: Sequence[float] | None = None,
        input_std: Sequence[float] | None = None,
        wait: bool = True,
        timeout: float = 600.0,
    ) -> ModelView:
        """Upload an ONNX or safetensors file; with `wait`, return once it is `ready` or raise ModelInvalid.

        The format follows the file's suffix unless given; `input_shape` and `num_classes` may be left
        out where the service can read them from the graph.
        """
        file = Path(path)
        fields = {
            "name": name,
            "format": format or FORMATS.get(file.suffix.lower(), "onnx"),
            "input_shape": _json_field(input_shape),
            "num_classes": None if num_classes is None else str(num_classes),
            "input_range": _json_field(input_range),
            "architecture": architecture,
            "input_mean": _json_field(input_mean),
            "input_std": _json_field(input_std),
        }
        data = {key: value for key, value in fields.items() if value is not None}
        body = self._transport.json(
            "POST", "/v1/models", data=data, files={"file": (file.name, file.read_bytes())}
        )
        model = ModelView.model_validate(body)
        return self.wait_ready(model.id, timeout=timeout) if wait else model

    def wait_ready(self, model_id: str, *, timeout: float = 600.0, interval: float = 0.5) -> ModelView:
        """Poll a model until validation ends: return it when `ready`, raise ModelInvalid when `invalid`."""
        deadline = time.monotonic() + timeout
        while True:
            model = self.get(model_id)
            if model.status == "ready":
                return model
            if model.status == "invalid":
                raise ModelInvalid(model.id, model.invalid_code, model.invalid_reason)
            if time.monotonic() > deadline:
                raise WaitTimeout(f"model {model_id} still {model.status} after {timeout:g} s")
            time.sleep(interval)

    def get(self, model_id: str) -> ModelView:
        """One model."""
        return ModelView.model_validate(self._transport.json("GET", f"/v1/models/{model_id}"))

    def list(self, *, limit: int | None = None) -> Iterator[ModelView]:
        """Every model of the tenant, following the pages (`limit` is the page size)."""
        for item in self._transport.pages("/v1/models", {"limit": limit}):
            yield ModelView.model_validate(item)

    def delete(self, model_id: str) -> None:
        """Delete a model and its finished jobs."""
        self._transport.request("DELETE", f"/v1/models/{model_id}")
