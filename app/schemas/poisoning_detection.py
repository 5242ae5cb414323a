"""The poisoning kind's detectors (params.detection): training-set poison detection at a feature layer or by
entropy under overlays."""

from typing import Annotated, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

Layer = Annotated[
    str,
    Field(
        min_length=1,
        max_length=200,
        description="'auto' (the last convolutional block, else the penultimate layer), 'last_conv', "
        "'penultimate', or the name of a value in the model's graph. Never the logits.",
    ),
]


class _Closed(BaseModel):
    """A closed schema: unknown fields are a 422."""

    model_config = ConfigDict(extra="forbid")


class ActivationClusteringParams(_Closed):
    """Activation clustering (Chen et al. 2018) at a feature layer: 2-means per class on `dims` principal
    components, gated by an exclusionary reclassification in feature space. Defaults: layer auto, 10 dims,
    gate threshold 0.8."""

    reads_features: ClassVar[bool] = True
    name: Literal["activation_clustering"]
    layer: Layer = "auto"
    dims: Annotated[int, Field(ge=1, le=1000)] = 10
    threshold: Annotated[float, Field(gt=0, le=1)] = 0.8


class SpectralSignaturesParams(_Closed):
    """Spectral signatures (Tran et al. 2018) at a feature layer: the top singular direction per class, the
    tail group of a two-component mixture, the same gate. Defaults: layer auto, threshold 0.8."""

    reads_features: ClassVar[bool] = True
    name: Literal["spectral_signatures"]
    layer: Layer = "auto"
    threshold: Annotated[float, Field(gt=0, le=1)] = 0.8


class StripParams(_Closed):
    """STRIP (Gao et al. 2019): entropy under superimposed clean held-out images, at inference time and over
    the training set. Defaults: 20 overlays, blend 1.0, frr 0.01, alpha 0.01, min_share 0.1."""

    reads_features: ClassVar[bool] = False
    name: Literal["strip"]
    overlays: Annotated[int, Field(ge=1, le=1000)] = 20
    blend: Annotated[float, Field(gt=0, le=1)] = 1.0
    frr: Annotated[float, Field(gt=0, lt=1)] = 0.01
    alpha: Annotated[float, Field(gt=0, lt=1)] = 0.01
    min_share: Annotated[float, Field(ge=0, lt=1)] = 0.1


PoisoningDetector = Annotated[
    ActivationClusteringParams | SpectralSignaturesParams | StripParams, Field(discriminator="name")
]
