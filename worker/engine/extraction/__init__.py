"""Model extraction: steal a model through its prediction interface, measure how well (DESIGN section 7)."""

from worker.engine.extraction.outputs import ExtractionError
from worker.engine.extraction.runner import (
    ExtractionOutcome,
    SurrogateArtifact,
    finish_extraction,
    prepare_extraction,
    run_extraction,
)

__all__ = [
    "ExtractionError",
    "ExtractionOutcome",
    "SurrogateArtifact",
    "finish_extraction",
    "prepare_extraction",
    "run_extraction",
]
