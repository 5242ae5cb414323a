"""Views of models, datasets and artifacts, and the JSON body for a remote model."""

from datetime import datetime
from typing import Annotated, Any, Generic, Literal, TypeVar

from pydantic import AnyHttpUrl, BaseModel, ConfigDict, Field

T = TypeVar("T")
ModelFormat = Literal["onnx", "safetensors"]
ModelStatus = Literal["validating", "ready", "invalid"]


class ModelView(BaseModel):
    """A model as the API shows it."""

    id: str
    name: str
    format: str
    status: ModelStatus
    invalid_code: str | None
    invalid_reason: str | None
    white_box: bool | None
    input_shape: list[int] = Field(
        description="Without the batch dimension; [] while an ONNX upload that left it out is validating."
    )
    num_classes: int = Field(description="0 while an ONNX upload that left it out is validating.")
    input_range: list[float]
    normalization: dict[str, list[float]] | None
    architecture: str | None
    endpoint_url: str | None
    size_bytes: int
    intake: dict[str, Any] | None
    source_job_id: str | None = Field(default=None, description="The job that produced this model.")
    derived_from: str | None = Field(default=None, description="The model it was derived from.")
    preprocessing: list[dict[str, Any]] | None = Field(
        default=None, description="A defended model's preprocessing, applied in front of its graph."
    )
    created_at: datetime
    validated_at: datetime | None


class RemoteModelCreate(BaseModel):
    """A black-box prediction endpoint; its host must be on the operator's allowlist."""

    model_config = ConfigDict(extra="forbid")

    name: Annotated[str, Field(min_length=1, max_length=200)]
    endpoint_url: AnyHttpUrl
    input_shape: Annotated[list[Annotated[int, Field(ge=1)]], Field(min_length=1, max_length=6)]
    num_classes: Annotated[int, Field(ge=2, le=100_000)]
    input_range: Annotated[list[float], Field(min_length=2, max_length=2)] = [0.0, 1.0]
    input_mean: Annotated[list[float], Field(min_length=1, max_length=4096)] | None = None
    input_std: Annotated[list[float], Field(min_length=1, max_length=4096)] | None = None


class ArchitectureModelCreate(BaseModel):
    """A catalog architecture with fresh weights: the starting point of a model that a job trains."""

    model_config = ConfigDict(extra="forbid")

    name: Annotated[str, Field(min_length=1, max_length=200)]
    architecture: Annotated[str, Field(description="A catalog name: mlp, small-cnn, bn-cnn, small-resnet.")]
    input_shape: Annotated[list[Annotated[int, Field(ge=1, le=4096)]], Field(min_length=1, max_length=4)]
    num_classes: Annotated[int, Field(ge=2, le=100_000)]
    input_range: Annotated[list[float], Field(min_length=2, max_length=2)] = [0.0, 1.0]


class DatasetView(BaseModel):
    """A dataset as the API shows it (built-in ones included)."""

    id: str
    name: str
    n_samples: int
    sample_shape: list[int]
    num_classes: int
    dtype: str
    x_min: float
    x_max: float
    size_bytes: int
    builtin: bool = False
    created_at: datetime | None


class ArtifactView(BaseModel):
    """A file produced by a job; download it from `download_url`."""

    id: str
    job_id: str
    kind: str
    name: str
    media_type: str
    size_bytes: int
    created_at: datetime
    download_url: str


class ItemList(BaseModel, Generic[T]):
    """A plain list of items."""

    items: list[T]


NextCursor = Annotated[
    str | None, Field(description="Pass back as `cursor` for the next page; null on the last page.")
]


class ModelPage(BaseModel):
    """One page of models, newest first."""

    items: list[ModelView]
    next_cursor: NextCursor


class DatasetPage(BaseModel):
    """One page of datasets: the built-in ones first, then uploads newest first."""

    items: list[DatasetView]
    next_cursor: NextCursor


class ArtifactPage(BaseModel):
    """One page of a job's artifacts, oldest first."""

    items: list[ArtifactView]
    next_cursor: NextCursor


# The multipart form of a model upload, as the OpenAPI document declares it (form parts are text;
# list-valued fields are JSON text). Declared by hand: the route also takes JSON bodies.
MODEL_UPLOAD_FORM: dict[str, Any] = {
    "title": "ModelUploadForm",
    "type": "object",
    "required": ["file", "name", "format"],
    "properties": {
        "file": {
            "type": "string",
            "format": "binary",
            "description": "The model file: ONNX, or the safetensors weights of a catalog architecture.",
        },
        "name": {"type": "string", "minLength": 1, "maxLength": 200, "description": "A name for people."},
        "format": {"type": "string", "enum": ["onnx", "safetensors"]},
        "input_shape": {
            "type": "string",
            "description": "The shape of one sample without the batch dimension, as JSON: `[1, 8, 8]`. "
            "Required for safetensors; an ONNX graph that states a fixed input shape may leave it out "
            "(validation reads it from the graph).",
        },
        "num_classes": {
            "type": "integer",
            "minimum": 2,
            "maximum": 100000,
            "description": "Required for safetensors; an ONNX graph with a fixed [batch, classes] output "
            "may leave it out.",
        },
        "input_range": {
            "type": "string",
            "description": "The inputs' value range as JSON `[low, high]`; default `[0, 1]`.",
        },
        "architecture": {
            "type": "string",
            "enum": ["mlp", "small-cnn", "bn-cnn", "small-resnet"],
            "description": "The catalog architecture of safetensors weights (safetensors only).",
        },
        "input_mean": {
            "type": "string",
            "description": "Per-channel mean the model expects subtracted, as JSON (with input_std).",
        },
        "input_std": {
            "type": "string",
            "description": "Per-channel standard deviation the model expects divided by, as JSON.",
        },
    },
}

# Names of the engine's architecture catalog (worker/engine/catalog.py); a test keeps them equal.
ARCHITECTURE_NAMES: tuple[str, ...] = ("mlp", "small-cnn", "bn-cnn", "small-resnet")
