"""The table of kinds: each job spec type and the runner of its kind, `run(spec, target, data, env)`."""

from collections.abc import Callable
from typing import Any

from app.schemas.defense import DefenseJobSpec
from app.schemas.evasion import EvasionJobSpec
from app.schemas.extraction import ExtractionJobSpec
from app.schemas.jobs import AnyJobSpec
from app.schemas.poisoning import PoisoningJobSpec
from worker.services.context import JobData, RunEnv
from worker.services.kinds import defense, evasion, extraction, poisoning
from worker.services.outputs import Outcome
from worker.services.targets import Target

Runner = Callable[[Any, Target, JobData, RunEnv], Outcome]

RUNNERS: dict[type[AnyJobSpec], Runner] = {
    EvasionJobSpec: evasion.run,
    ExtractionJobSpec: extraction.run,
    PoisoningJobSpec: poisoning.run,
    DefenseJobSpec: defense.run,
}


def run_kind(spec: AnyJobSpec, target: Target, data: JobData, env: RunEnv) -> Outcome:
    """Run a typed job spec with the runner of its kind."""
    return RUNNERS[type(spec)](spec, target, data, env)
