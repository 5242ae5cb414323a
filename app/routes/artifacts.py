"""Artifact download route."""

from fastapi import APIRouter
from fastapi.responses import Response

from app.deps import Context
from app.routes.params import ArtifactId
from app.routes.responses import PATH_422, errors
from app.services.jobs import get_artifact
from app.storage import get_blob

router = APIRouter(prefix="/v1/artifacts", tags=["artifacts"])


@router.get(
    "/{artifact_id}",
    response_class=Response,
    responses={
        200: {"content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}},
        **errors(401, 404, 422, notes={422: PATH_422}),
    },
)
def download_artifact(artifact_id: ArtifactId, ctx: Context) -> Response:
    """Download an artifact's bytes."""
    artifact = get_artifact(ctx, artifact_id)
    return Response(
        get_blob(ctx.session, artifact.blob_sha256),
        media_type=artifact.media_type,
        headers={"Content-Disposition": f'attachment; filename="{artifact.name}"'},
    )
