"""One attack against one defense row: its query stream, then a surrogate per budget, measured."""

import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from worker.engine.extraction.cells import CellResult
from worker.engine.extraction.evaluate import EvaluationSet, measure_surrogate
from worker.engine.extraction.plan import Cell, Plan
from worker.engine.extraction.query import QueryInterface, victim_logits
from worker.engine.extraction.strategies import StrategyContext, build_strategy
from worker.engine.extraction.surrogate import SurrogateTrainer
from worker.engine.extraction.transfer import craft, success_on
from worker.engine.progress import ProgressTracker

Classifier = Callable[[np.ndarray], np.ndarray]


def derive_seed(seed: int, *keys: int) -> int:
    """An integer seed for one position of the run."""
    return int(np.random.SeedSequence([seed, *keys]).generate_state(1)[0])


def slug(text: str) -> str:
    """A file-name-safe form of a label."""
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")


@dataclass
class AttackRunner:
    """What one extraction run shares: the victim, the plan, the evaluation set, trainer and progress."""

    victim: Classifier
    plan: Plan
    data: EvaluationSet
    pool: np.ndarray
    input_shape: tuple[int, ...]
    num_classes: int
    input_range: tuple[float, float]
    trainer: SurrogateTrainer
    tracker: ProgressTracker
    seed: int
    device: torch.device

    def victim_labels(self, x: np.ndarray) -> np.ndarray:
        """The undefended victim's labels (evaluator queries, outside any attacker's budget)."""
        return victim_logits(self.victim, x, self.num_classes).argmax(axis=1)

    def transfer(self, module: nn.Module, seed: int) -> list[dict[str, Any]]:
        """Transfer success on the victim of PGD examples crafted on `module`, per eps."""
        spec = self.plan.params.transfer
        if spec is None:
            return []
        correct = self.data.victim_labels == self.data.y
        rows = []
        for eps in spec.eps:
            x_adv = craft(
                module, self.data.x, self.data.y, spec, eps, input_range=self.input_range, seed=seed
            )
            rate = success_on(self.victim_labels, x_adv, self.data.y, correct)
            rows.append({"eps": eps, "transfer_success_rate": rate, "n_attacked": int(correct.sum())})
            self.tracker.advance(len(self.data.x) * spec.steps, f"transfer at eps {eps:g}")
        return rows

    def run_cell(self, cell: Cell) -> CellResult:
        """One attack against one defense row: its stream, then a surrogate per budget, measured.

        Every random stream is keyed by the run seed and the cell's position, so a cell gives the same
        figures whichever cells ran before it, in this process or another.
        """
        index, row_index = cell.attack, cell.row
        row = self.plan.rows[row_index]
        strategy = build_strategy(self.plan.attacks[index])
        interface = QueryInterface(
            self.victim,
            num_classes=self.num_classes,
            input_shape=self.input_shape,
            input_range=self.input_range,
            output=self.plan.params.victim_output,
            defense=row.defense,
            budget=self.plan.max_budget,
            seed=derive_seed(self.seed, index, row_index, 1),
        )
        context = StrategyContext(
            self.trainer, derive_seed(self.seed, index), self.device, self.input_range, self.tracker
        )
        started = time.perf_counter()
        strategy.run(interface, self.pool, context)
        log = interface.log()
        if interface.used > self.plan.max_budget or len(log.x) != interface.used:
            raise AssertionError(
                "the query layer let an attack past its budget"
            )  # never: the interface refuses
        results, measured, module = [], None, None
        for budget in self.plan.budgets:
            part = log.prefix(min(budget, len(log.x)))
            stage = f"{strategy.label} vs {row.name}: surrogate at {budget} queries"
            module = self.trainer.train(
                part.x,
                part.outputs,
                seed=derive_seed(self.seed, index, budget),
                stage=stage,
                measured=True,
            )
            self.tracker.advance(0, f"{stage}: exported and measured")  # a beat (and a cancel check) before
            measured = measure_surrogate(
                module,
                self.data,
                input_shape=self.input_shape,
                num_classes=self.num_classes,
                input_range=self.input_range,
                seed=self.seed,
            )
            results.append(
                {
                    "budget": budget,
                    "queries": len(part.x),
                    "fidelity": measured.fidelity,
                    "surrogate_accuracy": measured.surrogate_accuracy,
                    "victim_accuracy": self.data.victim_accuracy,
                }
            )
        assert module is not None and measured is not None
        results[-1]["transfer"] = self.transfer(module, derive_seed(self.seed, index, row_index, 2))
        entry: dict[str, Any] = {
            "defense": row.name,
            "sees": interface.sees,
            "queries": interface.used,
            "results": results,
            "seconds": time.perf_counter() - started,
        }
        known_as = strategy.known_as(interface.labels_only)
        if known_as is not None:
            entry["known_as"] = known_as
        trace = getattr(strategy, "policy_trace", None)
        if trace:
            entry["policy"] = trace
        if row_index != 0:
            return CellResult(cell, entry)
        return CellResult(cell, entry, log, measured)
