"""Model routes: thin wrappers over app.services.models."""

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from starlette.datastructures import FormData

from app.deps import Context
from app.errors import InvalidInput
from app.orm import ModelRecord
from app.routes.params import Cursor, Limit, ModelId
from app.routes.responses import LIST_422, PATH_422, errors
from app.routes.uploads import read_limited, refuse_media_type
from app.schemas.resources import ArchitectureModelCreate, ModelPage, ModelView, RemoteModelCreate
from app.services import models as service
from app.services.context import ServiceContext
from app.services.model_limits import check_form_shape

router = APIRouter(prefix="/v1/models", tags=["models"])

UPLOAD_DESCRIPTION = (
    "Multipart upload of an ONNX or safetensors model (fields `file`, `name`, `format`, `input_shape`, "
    "`num_classes`, optional `input_range`, `input_mean`, `input_std`, and `architecture` for "
    "safetensors), or a JSON body registering a remote prediction endpoint or a catalog architecture "
    "with fresh weights (`architecture`). Answers 202; a worker validates the model to `ready` or "
    "`invalid` (with a reason). Pickles, torch.save, TorchScript and torch.export files are refused."
)
UPLOAD_ERRORS = errors(
    401,
    413,
    415,
    422,
    notes={
        415: "A body that is neither multipart/form-data nor application/json, or a refused model format "
        "(`unsupported_media_type`, with export advice); JSON sent without its content type is named so",
        422: "Missing or malformed fields (`invalid_input`, `validation_error`, `input_too_large`, "
        "`host_not_allowed`, `unknown_architecture`, `invalid_json`)",
    },
)


@router.post(
    "",
    status_code=202,
    response_model=ModelView,
    description=UPLOAD_DESCRIPTION,
    responses=UPLOAD_ERRORS,
    # Not marked `required`: openapi-python-client 0.29 emits a module that does not import for a required
    # body with two media types (openapi-generators/openapi-python-client#1451). A missing body is a 415.
    openapi_extra={
        "requestBody": {
            "content": {
                "multipart/form-data": {"schema": {"$ref": "#/components/schemas/ModelUploadForm"}},
                "application/json": {
                    "schema": {
                        "oneOf": [
                            RemoteModelCreate.model_json_schema(),
                            ArchitectureModelCreate.model_json_schema(),
                        ]
                    }
                },
            },
        }
    },
)
async def upload_model(request: Request, ctx: Context) -> JSONResponse:
    """Upload a model file or register a remote endpoint."""
    content_type = request.headers.get("content-type", "")
    if content_type.startswith("application/json"):
        record = service.create_model_from_json(ctx, await request.body())
    elif content_type.startswith("multipart/form-data"):
        record = await _create_from_form(request, ctx)
    else:
        refuse_media_type(
            await request.body(),
            "send multipart/form-data (a model file) or application/json (a remote model or an architecture)",
        )
    return JSONResponse(service.model_view(record).model_dump(mode="json"), status_code=202)


def _form_text(form: FormData, key: str) -> str | None:
    """A text field of the form, or None."""
    value = form.get(key)
    return value if isinstance(value, str) else None


async def _create_from_form(request: Request, ctx: ServiceContext) -> ModelRecord:
    """Parse the multipart form and hand it to the service."""
    form = await request.form(max_files=1, max_fields=10)
    upload = form.get("file")
    if upload is None or isinstance(upload, str):
        raise InvalidInput("the form needs a file field named 'file'")
    name, fmt, shape = _form_text(form, "name"), _form_text(form, "format"), _form_text(form, "input_shape")
    num_classes = _form_text(form, "num_classes")
    check_form_shape(shape, ctx.settings.max_input_elements)
    if name is None or fmt is None:
        raise InvalidInput(
            "the form needs fields name and format (and input_shape and num_classes, which "
            "only an ONNX graph that states them may leave out)"
        )
    if num_classes is not None and not num_classes.strip().isdigit():
        raise InvalidInput("num_classes must be an integer")
    fields = service.parse_upload_fields(
        name,
        fmt,
        shape,
        int(num_classes) if num_classes is not None else None,
        _form_text(form, "input_range"),
        _form_text(form, "architecture"),
        _form_text(form, "input_mean"),
        _form_text(form, "input_std"),
    )
    data = await read_limited(upload, ctx.settings.max_upload_bytes)
    return service.create_uploaded_model(ctx, fields, data)


@router.get("", response_model=ModelPage, responses=errors(401, 422, notes={422: LIST_422}))
def list_models(ctx: Context, cursor: Cursor = None, limit: Limit = 100) -> ModelPage:
    """List this tenant's models, newest first; follow next_cursor for more."""
    rows, next_cursor = service.list_models(ctx, cursor=cursor, limit=limit)
    return ModelPage(items=[service.model_view(r) for r in rows], next_cursor=next_cursor)


@router.get("/{model_id}", response_model=ModelView, responses=errors(401, 404, 422, notes={422: PATH_422}))
def get_model(model_id: ModelId, ctx: Context) -> ModelView:
    """Read one model, including its validation status."""
    return service.model_view(service.get_model(ctx, model_id))


@router.delete(
    "/{model_id}",
    status_code=204,
    responses=errors(
        401, 404, 409, 422, notes={409: "The model has unfinished jobs (`model_in_use`)", 422: PATH_422}
    ),
)
def delete_model(model_id: ModelId, ctx: Context) -> Response:
    """Delete a model and its finished jobs."""
    service.delete_model(ctx, model_id)
    return Response(status_code=204)
