"""Training surrogates through the shared fit loop on what the victim's interface returned.

A surrogate measured at a budget trains for `epochs` passes and at least `min_steps` optimizer steps:
at small budgets a fixed epoch count leaves it far from converged (1000 queries at 30 epochs and batch
64 are 480 steps), most of all from an out-of-distribution pool, where the victim's scores are hard to
fit. More passes over the same logged answers cost no query.
"""

import math
from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np
import torch
from torch import nn

from app.schemas.extraction import SurrogateParams
from worker.engine.extraction.outputs import training_targets
from worker.engine.progress import ProgressTracker
from worker.engine.training.fit import fit
from worker.engine.training.recipe import TrainingRecipe

# seed -> a freshly initialised surrogate (eval mode): the victim's graph re-initialised, or a catalog one.
SurrogateFactory = Callable[[int], nn.Module]
PREDICT_BATCH = 512


def surrogate_recipe(spec: SurrogateParams) -> TrainingRecipe:
    """The fit loop's recipe of a surrogate spec (`architecture` is the caller's business)."""
    return TrainingRecipe(
        epochs=spec.epochs,
        batch_size=spec.batch_size,
        learning_rate=spec.learning_rate,
        optimizer=spec.optimizer,
        weight_decay=spec.weight_decay,
    )


def steps_per_epoch(n: int, batch_size: int) -> int:
    """Optimizer steps of one pass over n samples (the fit loop joins a last batch of one to the previous)."""
    steps = math.ceil(n / batch_size)
    return steps - 1 if steps > 1 and n - (steps - 1) * batch_size == 1 else steps


def epochs_for(n: int, recipe: TrainingRecipe, min_steps: int) -> int:
    """Epochs over n samples: the recipe's, or more to reach min_steps optimizer steps."""
    if n <= 0:
        return recipe.epochs
    return max(recipe.epochs, math.ceil(min_steps / steps_per_epoch(n, recipe.batch_size)))


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

    `min_steps` is the floor of optimizer steps of `train(..., measured=True)` (the surrogate measured
    at a budget); a strategy's intermediate surrogates train for the recipe's epochs. `progress`, when
    given, advances by one unit per trained sample per epoch (so cancellation reaches inside training).
    """

    factory: SurrogateFactory
    recipe: TrainingRecipe
    device: torch.device
    progress: ProgressTracker | None = None
    min_steps: int = 0

    def fresh(self, seed: int) -> nn.Module:
        """A new surrogate on the device, initialised from `seed`."""
        return self.factory(seed).to(self.device).eval()

    def train(
        self, x: np.ndarray, outputs: np.ndarray, *, seed: int, stage: str, measured: bool = False
    ) -> nn.Module:
        """A fresh surrogate trained from scratch on (x, outputs); `measured`: for at least min_steps."""
        model = self.fresh(seed)
        epochs = epochs_for(len(x), self.recipe, self.min_steps) if measured else None
        self.update(model, x, outputs, seed=seed, stage=stage, epochs=epochs)
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
