"""Service settings, read from `GAUNTLET_*` environment variables with embedded defaults."""

from functools import lru_cache
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Every knob of the service; with nothing set, an embedded SQLite file and filesystem broker."""

    model_config = SettingsConfigDict(env_prefix="GAUNTLET_", extra="ignore")

    data_dir: Path = Path(".gauntlet")
    database_url: str | None = None
    broker_url: str | None = None

    api_host: str = "127.0.0.1"
    api_port: int = 8000

    max_upload_bytes: int = Field(default=64 * 1024 * 1024, ge=1)
    max_artifact_bytes: int = Field(default=256 * 1024 * 1024, ge=1)
    remote_host_allowlist: list[str] = Field(default_factory=list)

    evasion_time_limit_s: int = Field(default=4 * 3600, ge=1)
    validation_time_limit_s: int = Field(default=300, ge=1)
    progress_interval_s: float = Field(default=0.5, ge=0)
    heartbeat_interval_s: float = Field(default=10.0, gt=0)
    stale_after_s: float = Field(default=120.0, gt=0)
    requeue_after_s: float = Field(default=60.0, gt=0)
    reconcile_interval_s: float = Field(default=15.0, gt=0)
    max_attempts: int = Field(default=3, ge=1)
    device: str | None = None

    @property
    def resolved_database_url(self) -> str:
        """The configured database, or an SQLite file inside the data directory."""
        return self.database_url or f"sqlite:///{(self.data_dir / 'gauntlet.db').resolve()}"

    @property
    def resolved_broker_url(self) -> str:
        """The configured broker, or the filesystem transport inside the data directory."""
        return self.broker_url or "filesystem://"

    @property
    def broker_folder(self) -> Path:
        """Folder holding queued messages when the embedded filesystem broker is used."""
        return (self.data_dir / "broker").resolve()

    @property
    def is_embedded(self) -> bool:
        """True when running on the embedded defaults (no servers)."""
        return self.resolved_broker_url.startswith("filesystem")


@lru_cache
def get_settings() -> Settings:
    """Settings of this process, read once."""
    return Settings()
