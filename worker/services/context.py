"""What a kind's runner gets besides its typed spec and target: the loaded data and the run's environment."""

from dataclasses import dataclass, field

import torch

from app.settings import Settings
from worker.engine.datasets import ArrayDataset
from worker.engine.progress import ProgressCallback
from worker.services.job_state import JobFailure


@dataclass(frozen=True)
class JobData:
    """The held-out evaluation set and the further datasets that params name, in the model's input range.

    `named` maps a params field that names a dataset (`train_dataset_id`, `query_dataset_id`, ...) to
    its loaded arrays.
    """

    held_out: ArrayDataset
    named: dict[str, ArrayDataset] = field(default_factory=dict)

    def get(self, params_field: str) -> ArrayDataset | None:
        """The dataset a params field names, if the spec names one."""
        return self.named.get(params_field)

    def require(self, params_field: str, dataset_id: str, what: str) -> ArrayDataset:
        """The dataset a params field names; `dataset_not_found` when it could not be loaded."""
        data = self.named.get(params_field)
        if data is None:
            raise JobFailure("dataset_not_found", f"{what} {dataset_id} could not be loaded")
        return data


@dataclass(frozen=True)
class RunEnv:
    """Where and how a job runs: device, seed, progress (which also carries cancellation) and settings."""

    job_id: str
    device: torch.device
    seed: int
    progress: ProgressCallback
    settings: Settings
