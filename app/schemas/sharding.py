"""How a job may be split into shards that several workers run at once."""

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field


class ShardingParams(BaseModel):
    """Split limits of one job; unset fields take the service's settings."""

    model_config = ConfigDict(extra="forbid")

    samples_per_shard: Annotated[int, Field(ge=1, le=100_000)] | None = Field(
        default=None,
        description="Evaluation samples per shard (rounded up to whole batches).",
    )
    victims_per_shard: Annotated[int, Field(ge=1, le=10_000)] | None = Field(
        default=None,
        description="Poisoning: trained victims per shard (each shard also trains the clean baseline).",
    )
    max_shards: Annotated[int, Field(ge=1, le=256)] | None = Field(
        default=None, description="Most shards of this job; at most the service's max_shards_per_job."
    )
