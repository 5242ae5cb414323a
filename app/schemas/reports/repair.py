"""The repair section of a defense report (defense.name backdoor_repair): clean accuracy and attack success
before and after, measured on the exported model, and Neural Cleanse's scan before and after."""

from typing import Any

from pydantic import Field

from app.schemas.reports.envelope import Closed, MethodParams, Open, Share
from app.schemas.reports.poisoning import ScanClass


class RepairMethod(Closed):
    """The repair method as it ran: its name, paper and every parameter, defaults resolved."""

    name: str
    paper: str
    params: MethodParams


class RepairFigures(Closed):
    """One model (the upload, or the repaired export through onnxruntime) on the held-out set."""

    clean_accuracy: Share
    reversed_trigger_success: dict[str, Share] = Field(
        description="Per class Neural Cleanse reversed a trigger for (on the upload): the share of held-out "
        "inputs of other classes the stamped trigger sends to that class."
    )
    real_trigger_success: Share | None = Field(
        default=None, description="The supplied trigger's success (only when the job gives one)."
    )


class RepairScan(Closed):
    """Neural Cleanse on one model (before or after the repair), on the clean set."""

    scanner: str
    paper: str
    statistic: str
    threshold: float
    flagged: list[int]
    classes: list[ScanClass]


class PrunedLayer(Closed):
    """Neurons a pruning repair cut in one layer."""

    pruned: int
    of: int


class RepairActions(Open):
    """What the method did: neurons pruned per layer, fine-tuning epochs, and the method's own details."""

    pruned: dict[str, PrunedLayer]
    fine_tuning_epochs: int


class RealTriggerFacts(Closed):
    """The supplied trigger's target class."""

    target_class: int


class RepairSection(Closed):
    """The repair: method, what it did, the figures before and after, the scans before and after."""

    method: RepairMethod
    before: RepairFigures
    after: RepairFigures
    repair: RepairActions
    training_curve: list[dict[str, Any]]
    scan_before: RepairScan
    scan_after: RepairScan
    n_clean: int = Field(description="Clean samples the repair used (params.train_dataset_id).")
    n_held_out: int = Field(description="Held-out samples every figure is measured on.")
    real_trigger: RealTriggerFacts | None = None
