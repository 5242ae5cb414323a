"""Training surrogates through the shared fit loop on what the victim's interface returned."""

from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch
from torch import nn

from worker.engine.extraction.outputs import training_targets
from worker.engine.progress import ProgressTracker
from worker.engine.training.fit import fit
from worker.engine.training.recipe import TrainingRecipe

# seed -> a freshly initialised surrogate (eval mode): the victim's graph re-initialised, or a catalog one.
SurrogateFactory = Callable[[int], nn.Module]
RECIPE_KEYS = ("epochs", "batch_size", "learning_rate", "optimizer", "weight_decay")
PREDICT_BATCH = 512


def surrogate_recipe(spec: Mapping[str, Any]) -> TrainingRecipe:
    """The recipe of a surrogate spec (`architecture` is the caller's business; other keys are refused)."""
    unknown = sorted(set(spec) - {"architecture", *RECIPE_KEYS})
    if unknown:
        raise ValueError(f"surrogate: unknown keys {', '.join(unknown)}")
    defaults = {"epochs": 30, "batch_size": 64, "learning_rate": 1e-3}
    values = defaults | {key: spec[key] for key in RECIPE_KEYS if spec.get(key) is not None}
    return TrainingRecipe(**values)


def model_device(model: nn.Module) -> torch.device:
    """Device of the model's first parameter (CPU without parameters)."""
    return next((p.device for p in model.parameters()), torch.device("cpu"))


@torch.no_grad()
def predict_probs(model: nn.Module, x: np.ndarray) -> np.ndarray:
    """Softmax outputs [N, K] (float32, CPU) of a module in eval mode, in batches."""
    model.eval()
    device = model_device(model)
    chunks = [
        torch.softmax(
            model(torch.from_numpy(np.ascontiguousarray(x[i : i + PREDICT_BATCH])).to(device)).float(), 1
        )
        .cpu()
        .numpy()
        for i in range(0, len(x), PREDICT_BATCH)
    ]
    return np.concatenate(chunks) if chunks else np.zeros((0, 0), dtype=np.float32)


@dataclass
class SurrogateTrainer:
    """Builds fresh surrogates and trains them with the fit loop on logged interface outputs.

    `progress`, when given, advances by one unit per trained sample per epoch (so cancellation reaches
    inside training).
    """

    factory: SurrogateFactory
    recipe: TrainingRecipe
    device: torch.device
    progress: ProgressTracker | None = None

    def fresh(self, seed: int) -> nn.Module:
        """A new surrogate on the device, initialised from `seed`."""
        return self.factory(seed).to(self.device).eval()

    def train(self, x: np.ndarray, outputs: np.ndarray, *, seed: int, stage: str) -> nn.Module:
        """A fresh surrogate trained from scratch on (x, interface outputs)."""
        model = self.fresh(seed)
        self.update(model, x, outputs, seed=seed, stage=stage)
        return model

    def update(
        self,
        model: nn.Module,
        x: np.ndarray,
        outputs: np.ndarray,
        *,
        seed: int,
        stage: str,
        epochs: int | None = None,
    ) -> None:
        """Go on training `model` in place on (x, interface outputs); soft targets for scores."""
        if len(x) == 0:
            return
        recipe = self.recipe
        if epochs is not None:
            recipe = replace(recipe, epochs=epochs)
        fit(
            model,
            x,
            training_targets(outputs),
            recipe=recipe,
            seed=seed,
            device=self.device,
            progress=self.progress,
            stage=stage,
        )
