"""Python client of the Gauntlet service: `Client(url, api_key)`, typed with the API's own models."""

from gauntlet_client.client import Client
from gauntlet_client.errors import (
    BadRequest,
    Conflict,
    ConnectionFailed,
    GauntletError,
    InvalidInput,
    JobFailed,
    ModelInvalid,
    NotFound,
    PayloadTooLarge,
    RateLimited,
    ServerError,
    Unauthorized,
    UnsupportedMediaType,
    WaitTimeout,
)
from gauntlet_client.job import Job

__all__ = [
    "BadRequest",
    "Client",
    "Conflict",
    "ConnectionFailed",
    "GauntletError",
    "InvalidInput",
    "Job",
    "JobFailed",
    "ModelInvalid",
    "NotFound",
    "PayloadTooLarge",
    "RateLimited",
    "ServerError",
    "Unauthorized",
    "UnsupportedMediaType",
    "WaitTimeout",
]
