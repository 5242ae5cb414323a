"""The poisoning kind's scan mode (params.scan): the backdoor scanners run on the model under test."""

from typing import Annotated, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field


class _Closed(BaseModel):
    """A closed schema: unknown fields are a 422."""

    model_config = ConfigDict(extra="forbid")


class NeuralCleanseScanParams(_Closed):
    """Neural Cleanse (Wang et al., S&P 2019), white-box: per class the smallest mask and pattern sending the
    clean set to it, the paper's cost schedule, the MAD anomaly index of the masks' l1 norms. Defaults:
    600 steps of batch 16, 5 steps per schedule epoch, lr 0.1, init cost 1e-3, threshold 2."""

    white_box: ClassVar[bool] = True
    name: Literal["neural_cleanse"]
    steps: Annotated[int, Field(ge=1, le=20_000)] = 600
    epoch_steps: Annotated[int, Field(ge=1, le=1000)] = 5
    batch_size: Annotated[int, Field(ge=1, le=1024)] = 16
    learning_rate: Annotated[float, Field(gt=0, le=10)] = 0.1
    init_cost: Annotated[float, Field(gt=0, le=100)] = 1e-3
    anomaly_threshold: Annotated[float, Field(gt=0, le=100)] = 2.0


class B3DScanParams(_Closed):
    """B3D (Dong et al., ICCV 2021), black-box: Neural Cleanse's objective minimised with gradients estimated
    from queries (natural evolution strategies), the same MAD anomaly index. Defaults: 200 steps of batch
    16, 20 antithetic probe pairs of scale 0.1, threshold 2."""

    white_box: ClassVar[bool] = False
    name: Literal["b3d"]
    steps: Annotated[int, Field(ge=1, le=20_000)] = 200
    batch_size: Annotated[int, Field(ge=1, le=1024)] = 16
    samples: Annotated[int, Field(ge=1, le=1000)] = 20
    sigma: Annotated[float, Field(gt=0, le=10)] = 0.1
    anomaly_threshold: Annotated[float, Field(gt=0, le=100)] = 2.0


PoisoningScanner = Annotated[NeuralCleanseScanParams | B3DScanParams, Field(discriminator="name")]

ScanList = Annotated[list[PoisoningScanner], Field(max_length=4)]


def scan_problem(
    scan: list[NeuralCleanseScanParams | B3DScanParams], others: bool, datasets: bool
) -> str | None:
    """Why a scan-mode params is invalid (`others`: attacks, detection, removal or repair given; `datasets`:
    a training set or pattern given), else None."""
    if others:
        return "scan mode runs alone: no attacks, detection, retrain_after_removal or repair"
    if datasets:
        return "scan mode reads no training set or pattern: use dataset_id for the clean set"
    if len({s.name for s in scan}) != len(scan):
        return "each scanner may appear once"
    return None
