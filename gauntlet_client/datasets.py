"""Datasets: upload an .npz file or (x, y) arrays, list, read and delete."""

import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from app.schemas.resources import DatasetView
from gauntlet_client.transport import Transport


def npz_bytes(x: Any, y: Any) -> bytes:
    """An .npz holding arrays `x` and `y`, as the service reads it (no pickles)."""
    buffer = io.BytesIO()
    np.savez(buffer, x=np.asarray(x), y=np.asarray(y))
    return buffer.getvalue()


class Datasets:
    """Built-in datasets and the tenant's uploads."""

    def __init__(self, transport: Transport) -> None:
        self._transport = transport

    def upload(
        self, path_or_arrays: str | Path | tuple[Any, Any], *, name: str, num_classes: int | None = None
    ) -> DatasetView:
        """Upload an .npz file (arrays `x` and `y`), or `(x, y)` arrays saved as one."""
        if isinstance(path_or_arrays, tuple):
            filename, content = f"{name}.npz", npz_bytes(*path_or_arrays)
        else:
            path = Path(path_or_arrays)
            filename, content = path.name, path.read_bytes()
        data = {"name": name} | ({} if num_classes is None else {"num_classes": str(num_classes)})
        body = self._transport.json("POST", "/v1/datasets", data=data, files={"file": (filename, content)})
        return DatasetView.model_validate(body)

    def get(self, dataset_id: str) -> DatasetView:
        """One dataset (`builtin:<name>` included)."""
        return DatasetView.model_validate(self._transport.json("GET", f"/v1/datasets/{dataset_id}"))

    def list(self, *, limit: int | None = None) -> Iterator[DatasetView]:
        """Every dataset, built-in ones included, following the pages (`limit` is the page size)."""
        for item in self._transport.pages("/v1/datasets", {"limit": limit}):
            yield DatasetView.model_validate(item)

    def delete(self, dataset_id: str) -> None:
        """Delete an uploaded dataset."""
        self._transport.request("DELETE", f"/v1/datasets/{dataset_id}")
