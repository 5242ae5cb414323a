"""The preprocessing defense's transforms: one typed spec per transform, with the facts the checks read."""

from collections.abc import Mapping, Sequence
from typing import Annotated, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

Budget = Annotated[float, Field(gt=0, le=1_000, allow_inf_nan=False)]


class TransformBase(BaseModel):
    """Facts of a transform: the submission checks and the engine's adaptive evaluation read them.

    `differentiable` (autograd's own gradient is meaningful; False for quantizers, which BPDA replaces),
    `randomized` (a fresh draw per call, which EOT averages over), `needs_image` ([C, H, W] inputs) and
    `channels` (allowed channel counts of an image).
    """

    model_config = ConfigDict(extra="forbid")

    needs_image: ClassVar[bool] = False
    channels: ClassVar[tuple[int, ...] | None] = None
    randomized: ClassVar[bool] = False
    differentiable: ClassVar[bool] = True

    name: str


class JpegParams(TransformBase):
    """JPEG compression through a real codec; grayscale or RGB images. BPDA (identity) backward."""

    needs_image: ClassVar[bool] = True
    channels: ClassVar[tuple[int, ...] | None] = (1, 3)
    differentiable: ClassVar[bool] = False
    name: Literal["jpeg"]
    quality: Annotated[int, Field(ge=1, le=95)] = 75


class MedianParams(TransformBase):
    """Median filter over size x size windows (odd, 3 to 7)."""

    needs_image: ClassVar[bool] = True
    name: Literal["median"]
    size: Literal[3, 5, 7] = 3


class GaussianParams(TransformBase):
    """Gaussian blur with standard deviation sigma pixels."""

    needs_image: ClassVar[bool] = True
    name: Literal["gaussian"]
    sigma: Annotated[float, Field(gt=0, le=10)] = 1.0


class BitDepthParams(TransformBase):
    """Bit-depth reduction to `bits` per value. BPDA (identity) backward."""

    differentiable: ClassVar[bool] = False
    name: Literal["bit_depth"]
    bits: Annotated[int, Field(ge=1, le=8)] = 4


class RandomResizePadParams(TransformBase):
    """Random resizing and padding (Xie et al. 2018) at the input size; EOT averages over draws."""

    needs_image: ClassVar[bool] = True
    randomized: ClassVar[bool] = True
    name: Literal["random_resize_pad"]
    min_scale: Annotated[float, Field(ge=0.5, le=0.99)] = 0.8


class GaussianNoiseParams(TransformBase):
    """Additive Gaussian noise of standard deviation sigma (input units); EOT averages over draws."""

    randomized: ClassVar[bool] = True
    name: Literal["gaussian_noise"]
    sigma: Budget = 0.1


TransformParams = Annotated[
    JpegParams | MedianParams | GaussianParams | BitDepthParams | RandomResizePadParams | GaussianNoiseParams,
    Field(discriminator="name"),
]
_TRANSFORM_LIST: TypeAdapter[list[TransformParams]] = TypeAdapter(list[TransformParams])


def transform_specs(records: Sequence[Mapping[str, Any]]) -> list[TransformParams]:
    """A defended model's stored preprocessing record read back into the typed transforms."""
    return _TRANSFORM_LIST.validate_python(list(records))
