"""The query layer: the victim's prediction interface as an attacker sees it, counted and budgeted.

Every query goes through `QueryInterface.query`: it refuses a batch that would exceed the budget
before the victim sees it, counts samples (not calls), applies the victim-side defense and the output
granularity, and logs inputs and answers. Label-only interfaces return labels and nothing else.
"""

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from app.schemas.extraction import VictimOutputParams
from worker.engine.extraction.defenses import Defense
from worker.engine.extraction.outputs import Answer, ExtractionError, shape_answer, softmax

Classifier = Callable[[np.ndarray], np.ndarray]
VICTIM_BATCH = 512


class BudgetExceeded(Exception):  # noqa: N818 - a refusal, not a bug
    """A query that would take the attacker past its budget; nothing was sent to the victim."""


@dataclass(frozen=True)
class QueryLog:
    """Everything that crossed the interface, in order.

    `x` are the queried inputs, `outputs` what the attacker got (labels [N] or scores [N, K]),
    `victim_labels` the undefended victim's own labels (the server side's record, never shown to the
    attacker; a detector such as PRADA sees them).
    """

    x: np.ndarray
    outputs: np.ndarray
    victim_labels: np.ndarray

    def prefix(self, n: int) -> "QueryLog":
        """The first n queries."""
        return QueryLog(self.x[:n], self.outputs[:n], self.victim_labels[:n])

    def arrays(self) -> dict[str, np.ndarray]:
        """For an `.npz` artifact."""
        return {"x": self.x, "outputs": self.outputs, "victim_labels": self.victim_labels}


def victim_logits(victim: Classifier, x: np.ndarray, num_classes: int) -> np.ndarray:
    """The victim's logits for x in batches, checked: [N, num_classes] and finite."""
    chunks = []
    for start in range(0, len(x), VICTIM_BATCH):
        batch = np.ascontiguousarray(x[start : start + VICTIM_BATCH], dtype=np.float32)
        out = np.asarray(victim(batch))
        if out.shape != (len(batch), num_classes) or out.dtype.kind not in "fiu":
            raise ExtractionError(
                "victim_bad_output",
                f"the victim answered shape {list(out.shape)} for {len(batch)} samples; "
                f"expected [{len(batch)}, {num_classes}]",
            )
        if not np.isfinite(out).all():
            raise ExtractionError("victim_bad_output", "the victim answered non-finite scores")
        chunks.append(out.astype(np.float32))
    return np.concatenate(chunks) if chunks else np.zeros((0, num_classes), dtype=np.float32)


class QueryInterface:
    """The victim behind its defense and output granularity, with a query budget.

    Parameters:
        victim: NumPy classifier returning logits (onnxruntime session or remote endpoint).
        num_classes, input_shape, input_range: what the victim accepts and returns.
        output: the interface's granularity (victim_output).
        defense: a victim-side defense, or None.
        budget: the most samples this interface will ever send to the victim.
        seed: seeds a random defense's noise.
    """

    def __init__(
        self,
        victim: Classifier,
        *,
        num_classes: int,
        input_shape: tuple[int, ...],
        input_range: tuple[float, float],
        output: VictimOutputParams,
        defense: Defense | None,
        budget: int,
        seed: int = 0,
    ) -> None:
        """Start with nothing queried."""
        if budget < 0:
            raise ValueError("budget must be non-negative")
        self._victim = victim
        self.num_classes = int(num_classes)
        self.input_shape = tuple(int(d) for d in input_shape)
        self.input_range = (float(input_range[0]), float(input_range[1]))
        self.output = output
        self.defense = defense
        self.budget = int(budget)
        self.used = 0
        self.labels_only = output.kind == "label" or (defense is not None and defense.labels_only)
        self._rng = np.random.default_rng(np.random.SeedSequence([seed, 0xDEF]))
        self._x: list[np.ndarray] = []
        self._outputs: list[np.ndarray] = []
        self._labels: list[np.ndarray] = []

    @property
    def remaining(self) -> int:
        """Queries left in the budget."""
        return self.budget - self.used

    @property
    def sees(self) -> str:
        """What the attacker sees: "label", "top_k" or "probabilities"."""
        return "label" if self.labels_only else self.output.kind

    def query(self, x: np.ndarray) -> Answer:
        """The interface's answer for a batch; BudgetExceeded (before any victim call) past the budget."""
        batch = np.ascontiguousarray(x, dtype=np.float32)
        if batch.ndim != len(self.input_shape) + 1 or tuple(batch.shape[1:]) != self.input_shape:
            raise ValueError(f"queries must have shape [N, {', '.join(map(str, self.input_shape))}]")
        low, high = self.input_range
        if not np.isfinite(batch).all() or batch.min(initial=low) < low or batch.max(initial=high) > high:
            raise ValueError(f"queries must be finite and inside the input range [{low}, {high}]")
        if self.used + len(batch) > self.budget:
            raise BudgetExceeded(f"{len(batch)} more queries would exceed the budget of {self.budget}")
        self.used += len(batch)
        logits = victim_logits(self._victim, batch, self.num_classes)
        probs = softmax(logits)
        defended = self.defense.transform(probs, self._rng) if self.defense is not None else probs
        answer = shape_answer(defended, self.output, labels_only=self.labels_only)
        self._x.append(batch)
        self._outputs.append(answer.labels if answer.scores is None else answer.scores)
        self._labels.append(logits.argmax(axis=1).astype(np.int64))
        return answer

    def log(self) -> QueryLog:
        """Every query so far, in order."""
        if not self._x:
            empty = np.zeros((0, *self.input_shape), dtype=np.float32)
            outputs = (
                np.zeros(0, np.int64) if self.labels_only else np.zeros((0, self.num_classes), np.float32)
            )
            return QueryLog(empty, outputs, np.zeros(0, dtype=np.int64))
        return QueryLog(np.concatenate(self._x), np.concatenate(self._outputs), np.concatenate(self._labels))


def honest_answers(
    victim_probs: np.ndarray, output: VictimOutputParams, defense: Defense | None, seed: int
) -> Answer:
    """What an honest caller would get for probabilities already computed (the defense's cost)."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0xC057]))
    defended = defense.transform(victim_probs, rng) if defense is not None else victim_probs
    labels_only = output.kind == "label" or (defense is not None and defense.labels_only)
    return shape_answer(defended, output, labels_only=labels_only)
