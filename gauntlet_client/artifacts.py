"""A job's artifacts: list them, download them into a folder."""

from pathlib import Path, PurePath

from app.schemas.resources import ArtifactView
from gauntlet_client.transport import Transport


def safe_name(name: str, fallback: str) -> str:
    """A file name without folders or dots that could leave the target folder."""
    base = PurePath(name.replace("\\", "/")).name
    return base if base not in ("", ".", "..") else fallback


class JobArtifacts:
    """The artifacts of one job (`list` comes last: its name would shadow the builtin in annotations)."""

    def __init__(self, transport: Transport, job_id: str) -> None:
        self._transport = transport
        self.job_id = job_id

    def read(self, artifact: ArtifactView) -> bytes:
        """One artifact's bytes."""
        return self._transport.request("GET", artifact.download_url).content

    def download(self, folder: str | Path) -> list[Path]:
        """Write every artifact into a folder (created if needed); returns the files written."""
        target = Path(folder)
        target.mkdir(parents=True, exist_ok=True)
        written = []
        for artifact in self.list():
            path = target / safe_name(artifact.name, artifact.id)
            path.write_bytes(self.read(artifact))
            written.append(path)
        return written

    def list(self) -> list[ArtifactView]:
        """Every artifact of the job (all pages)."""
        return [
            ArtifactView.model_validate(item)
            for item in self._transport.pages(f"/v1/jobs/{self.job_id}/artifacts")
        ]
