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
    # Connections each process keeps open to Postgres, and how many more it may open at a peak (closed
    # again when returned): the kept ones should cover the API's concurrent requests, or every request
    # past them pays a new connection (a new Postgres backend process).
    database_pool_size: int = Field(default=20, ge=1, le=1000)
    database_max_overflow: int = Field(default=10, ge=0, le=1000)
    broker_url: str | None = None

    api_host: str = "127.0.0.1"
    api_port: int = 8000
    # Seconds an API process keeps a valid key's tenant without asking the database again: a revoked key
    # is refused at most this long after its revocation (0: every request reads the key from the database).
    api_key_cache_s: float = Field(default=5.0, ge=0, le=300)
    # uvicorn's access log, a line per request; GAUNTLET_ACCESS_LOG=false drops it (its logging took 5 to 9%
    # of the API process's samples in a py-spy profile of the hot routes under load).
    access_log: bool = True

    max_upload_bytes: int = Field(default=64 * 1024 * 1024, ge=1)
    max_artifact_bytes: int = Field(default=256 * 1024 * 1024, ge=1)
    remote_host_allowlist: list[str] = Field(default_factory=list)
    # A remote model's endpoint: seconds one request may take, and retries of a transient failure.
    remote_timeout_s: float = Field(default=10.0, gt=0, le=600)
    remote_retries: int = Field(default=3, ge=0, le=10)
    # Plugins: comma-separated module names the API and the worker import at startup (GAUNTLET_PLUGINS),
    # e.g. a module defining an attack's spec class and its engine class (README: "Adding an attack").
    plugins: str = ""

    # Per job kind: the time limit (a job past it fails with `time_limit`) and the queue it runs on.
    evasion_time_limit_s: int = Field(default=4 * 3600, ge=1)
    extraction_time_limit_s: int = Field(default=4 * 3600, ge=1)
    poisoning_time_limit_s: int = Field(default=6 * 3600, ge=1)
    defense_time_limit_s: int = Field(default=8 * 3600, ge=1)
    evasion_queue: str = "gpu"
    extraction_queue: str = "gpu"
    poisoning_queue: str = "gpu"
    defense_queue: str = "gpu"
    # Largest estimated cost of one job (sample forward-backward passes); per tenant name overrides.
    max_job_cost: float = Field(default=5e9, gt=0)
    tenant_max_job_cost: dict[str, float] = Field(default_factory=dict)
    validation_time_limit_s: int = Field(default=300, ge=1)
    progress_interval_s: float = Field(default=0.5, ge=0)
    heartbeat_interval_s: float = Field(default=10.0, gt=0)
    stale_after_s: float = Field(default=120.0, gt=0)
    requeue_after_s: float = Field(default=60.0, gt=0)
    reconcile_interval_s: float = Field(default=15.0, gt=0)
    max_attempts: int = Field(default=3, ge=1)
    device: str | None = None
    # Sharding: evaluation samples per shard (evasion, defense evaluation), most shards of one job, and
    # most shards of one tenant running at once (the rest wait in Postgres, not in the broker).
    evasion_samples_per_shard: int = Field(default=1000, ge=1)
    # Poisoning: trained victims per shard. Each shard trains the clean baseline again (a job in k shards
    # trains k + 1 baselines, an unsplit one 1): jobs of at most this many victims stay one piece.
    poisoning_victims_per_shard: int = Field(default=4, ge=1)
    max_shards_per_job: int = Field(default=16, ge=1, le=256)
    tenant_max_running_shards: int = Field(default=8, ge=1)
    # Devices and threads of a worker's pool processes: torch intra-op threads of each (None: the cores
    # shared out, cores // pool processes, at least 1) and the GPUs (indices or UUIDs, "0,1"), one
    # pool process each.
    torch_threads: int | None = Field(default=None, ge=1)
    worker_gpus: str | None = Field(default=None, pattern=r"^\s*[\w-]+(\s*,\s*[\w-]+)*\s*$")

    # Hardening: dataset size, the validation sandbox, webhooks, metrics and blob collection.
    max_dataset_bytes: int = Field(default=1024 * 1024 * 1024, ge=1)
    # Elements of one declared input sample (the product of input_shape); larger is refused at registration.
    max_input_elements: int = Field(default=4_000_000, ge=1)
    # ONNX intake: largest tensor the graph may create at the validation batch (statically inferred),
    # Loop/Scan/If (unbounded run time) and onnxruntime intra-op threads per session.
    max_intermediate_bytes: int = Field(default=1024 * 1024 * 1024, ge=1)
    allow_control_flow: bool = False
    onnxruntime_threads: int = Field(default=1, ge=1)
    # Data-segment cap (RLIMIT_DATA) of each worker pool process that runs jobs; None for no cap.
    job_memory_limit_bytes: int | None = Field(default=16 * 1024 * 1024 * 1024, ge=256 * 1024 * 1024)
    worker_memory_limit_bytes: int = Field(default=8 * 1024 * 1024 * 1024, ge=256 * 1024 * 1024)
    webhook_allowed_addresses: list[str] = Field(default_factory=list)
    webhook_max_attempts: int = Field(default=8, ge=1)
    webhook_retry_base_s: float = Field(default=10.0, gt=0)
    webhook_retry_max_s: float = Field(default=3600.0, gt=0)
    webhook_timeout_s: float = Field(default=5.0, gt=0)
    metrics_token: str | None = None
    blob_gc_grace_s: float = Field(default=3600.0, ge=0)

    def time_limit_for(self, kind: str) -> int:
        """The time limit of a job kind, in seconds."""
        return int(getattr(self, f"{kind}_time_limit_s", self.evasion_time_limit_s))

    def queue_for(self, kind: str) -> str:
        """The queue a job kind runs on."""
        return str(getattr(self, f"{kind}_queue", self.evasion_queue))

    @property
    def longest_time_limit_s(self) -> int:
        """The longest time limit of any kind (sets the broker's visibility timeout)."""
        kinds = ("evasion", "extraction", "poisoning", "defense")
        return max(self.time_limit_for(kind) for kind in kinds)

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
