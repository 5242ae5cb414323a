"""Model extraction: steal a model through its prediction interface, measure how well (DESIGN section 7)."""

from worker.engine.extraction.outputs import ExtractionError, VictimOutput
from worker.engine.extraction.runner import ExtractionOutcome, SurrogateArtifact, run_extraction

__all__ = ["ExtractionError", "ExtractionOutcome", "SurrogateArtifact", "VictimOutput", "run_extraction"]
