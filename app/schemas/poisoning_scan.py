"""The poisoning kind's scan mode (params.scan): the backdoor scanners run on the model under test."""

from typing import Annotated, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field


class _Closed(BaseModel):
    """A closed schema: unknown fields are a 422."""

    model_config = ConfigDict(extra="forbid")


class TriggerSearchParams(_Closed):
    """Neural Cleanse's trigger search, shared by both scanners (Wang et al., S&P 2019, their released code):
    steps (mini-batch steps per class), epoch_steps (mini-batches per schedule epoch, 5), batch_size (clean
    inputs per step, 16), learning_rate (Adam's, 0.1), init_cost (the first l1 weight, 1e-3),
    success_threshold (the share of stamped inputs a mask must send to its class, 0.99), patience (schedule
    epochs before the cost moves, 5), cost_multiplier (the cost's factor up, its 1.5th power down; 1.5 as
    the released Visualizer, whose GTSRB example uses 2), early_stop_patience (epochs without a smaller mask
    before a class stops, 10; the released example 25), anomaly_threshold (the MAD anomaly index above which
    a class is flagged, 2 as the paper), reset_cost_to_zero (start every class at cost 0 until its trigger
    succeeds, as the released code; off: with it, multiplier 2 and early stop 25 over up to 1000 steps the
    digits benchmark flagged blended 7 of 10 but BadNets 8 of 10, against 9 of 10 with these defaults)."""

    steps: Annotated[int, Field(ge=1, le=20_000)] = 600
    epoch_steps: Annotated[int, Field(ge=1, le=1000)] = 5
    batch_size: Annotated[int, Field(ge=1, le=1024)] = 16
    learning_rate: Annotated[float, Field(gt=0, le=10)] = 0.1
    init_cost: Annotated[float, Field(gt=0, le=100)] = 1e-3
    success_threshold: Annotated[float, Field(gt=0, le=1)] = 0.99
    patience: Annotated[int, Field(ge=1, le=1000)] = 5
    cost_multiplier: Annotated[float, Field(gt=1, le=100)] = 1.5
    early_stop_patience: Annotated[int, Field(ge=1, le=1000)] = 10
    anomaly_threshold: Annotated[float, Field(gt=0, le=100)] = 2.0
    reset_cost_to_zero: bool = False


class NeuralCleanseScanParams(TriggerSearchParams):
    """Neural Cleanse (Wang et al., S&P 2019), white-box: per class the smallest mask and pattern sending the
    clean set to it, the paper's cost schedule, the MAD anomaly index of the masks' l1 norms. Defaults:
    600 steps of batch 16, 5 steps per schedule epoch, lr 0.1, init cost 1e-3, threshold 2."""

    white_box: ClassVar[bool] = True
    name: Literal["neural_cleanse"]


class B3DScanParams(TriggerSearchParams):
    """B3D (Dong et al., ICCV 2021), black-box: Neural Cleanse's objective minimised with gradients estimated
    from queries (natural evolution strategies), the same MAD anomaly index. Defaults: 200 steps of batch
    16, 20 antithetic probe pairs of scale 0.1, threshold 2."""

    white_box: ClassVar[bool] = False
    name: Literal["b3d"]
    steps: Annotated[int, Field(ge=1, le=20_000)] = 200
    samples: Annotated[int, Field(ge=1, le=1000)] = 20
    sigma: Annotated[float, Field(gt=0, le=10)] = 0.1


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
