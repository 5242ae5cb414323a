"""Dataset routes: thin wrappers over app.services.datasets."""

from typing import Annotated

from fastapi import APIRouter, File, Form, UploadFile
from fastapi.responses import Response

from app.deps import Context
from app.routes.params import DatasetId
from app.routes.responses import errors
from app.routes.uploads import read_limited
from app.schemas.resources import DatasetView, ItemList
from app.services import datasets as service

router = APIRouter(prefix="/v1/datasets", tags=["datasets"], responses=errors(401))


@router.post("", status_code=201, response_model=DatasetView, responses=errors(413, 422))
async def create_dataset(
    ctx: Context,
    file: Annotated[UploadFile, File(description=".npz with arrays x (float32 or uint8) and y (int labels)")],
    name: Annotated[str, Form(max_length=200)],
) -> DatasetView:
    """Upload an `.npz` dataset; it is checked before it is stored."""
    data = await read_limited(file, ctx.settings.max_upload_bytes)
    return service.dataset_view(service.create_dataset(ctx, name, data))


@router.get("", response_model=ItemList[DatasetView])
def list_datasets(ctx: Context) -> ItemList[DatasetView]:
    """Built-in datasets and this tenant's uploads."""
    return ItemList[DatasetView](items=service.list_datasets(ctx))


@router.get("/{dataset_id}", response_model=DatasetView, responses=errors(404, 422))
def get_dataset(dataset_id: DatasetId, ctx: Context) -> DatasetView:
    """Read one dataset (`builtin:<name>` included)."""
    return service.get_dataset_view(ctx, dataset_id)


@router.delete("/{dataset_id}", status_code=204, responses=errors(404, 409, 422))
def delete_dataset(dataset_id: DatasetId, ctx: Context) -> Response:
    """Delete an uploaded dataset."""
    service.delete_dataset(ctx, dataset_id)
    return Response(status_code=204)
