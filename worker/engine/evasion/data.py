"""The evaluated data of an evasion run: inputs, labels, clean logits and the batch bounds."""

from dataclasses import dataclass

from torch import Tensor


@dataclass(frozen=True)
class EvaluationData:
    """The evaluated set on the CPU, its clean logits and correctness, and the batch bounds."""

    x: Tensor
    y: Tensor
    logits: Tensor
    clean_correct: Tensor
    batches: list[tuple[int, int]]
