"""Artifact views and downloads."""

from app.orm import Artifact
from app.schemas.resources import ArtifactView


def artifact_view(artifact: Artifact) -> ArtifactView:
    """The API view of an artifact, with its download address."""
    return ArtifactView(
        id=artifact.id,
        job_id=artifact.job_id,
        kind=artifact.kind,
        name=artifact.name,
        media_type=artifact.media_type,
        size_bytes=artifact.size_bytes,
        created_at=artifact.created_at,
        download_url=f"/v1/artifacts/{artifact.id}",
    )
