"""Dataset routes: thin wrappers over app.services.datasets."""

from typing import Annotated

from fastapi import APIRouter, File, Form, UploadFile
from fastapi.responses import Response

from app.deps import Context
from app.routes.params import Cursor, DatasetId, Limit
from app.routes.responses import LIST_422, PATH_422, errors
from app.routes.uploads import read_limited
from app.schemas.resources import DatasetPage, DatasetView
from app.services import datasets as service
from app.services.dataset_arrays import MAX_CLASSES

UPLOAD_422 = (
    "A file that is not a usable `.npz` (`dataset_invalid`), or labels at or above the declared "
    "`num_classes` (`labels_exceed_classes`)"
)

router = APIRouter(prefix="/v1/datasets", tags=["datasets"])


@router.post(
    "", status_code=201, response_model=DatasetView, responses=errors(401, 413, 422, notes={422: UPLOAD_422})
)
async def upload_dataset(
    ctx: Context,
    file: Annotated[UploadFile, File(description=".npz with arrays x (float32 or uint8) and y (int labels)")],
    name: Annotated[str, Form(max_length=200, description="A name for people.")],
    num_classes: Annotated[
        int | None,
        Form(
            ge=1,
            le=MAX_CLASSES,
            description="The class count the labels belong to; every label must be below it. Without it "
            "the count is inferred as the largest label plus one.",
        ),
    ] = None,
) -> DatasetView:
    """Upload an `.npz` dataset; it is checked before it is stored."""
    data = await read_limited(file, ctx.settings.max_upload_bytes)
    return service.dataset_view(service.create_dataset(ctx, name, data, num_classes=num_classes))


@router.get("", response_model=DatasetPage, responses=errors(401, 422, notes={422: LIST_422}))
def list_datasets(ctx: Context, cursor: Cursor = None, limit: Limit = 100) -> DatasetPage:
    """Built-in datasets, then this tenant's uploads newest first; follow next_cursor for more."""
    items, next_cursor = service.list_datasets(ctx, cursor=cursor, limit=limit)
    return DatasetPage(items=items, next_cursor=next_cursor)


@router.get(
    "/{dataset_id}", response_model=DatasetView, responses=errors(401, 404, 422, notes={422: PATH_422})
)
def get_dataset(dataset_id: DatasetId, ctx: Context) -> DatasetView:
    """Read one dataset (`builtin:<name>` included)."""
    return service.get_dataset_view(ctx, dataset_id)


@router.delete(
    "/{dataset_id}",
    status_code=204,
    responses=errors(
        401, 404, 409, 422, notes={409: "The dataset has unfinished jobs (`dataset_in_use`)", 422: PATH_422}
    ),
)
def delete_dataset(dataset_id: DatasetId, ctx: Context) -> Response:
    """Delete an uploaded dataset."""
    service.delete_dataset(ctx, dataset_id)
    return Response(status_code=204)
