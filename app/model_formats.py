"""What each stored model format is, as facts the API's checks and the worker's intake read.

A model row's `format` names its source: an uploaded ONNX graph, safetensors weights of a catalog
architecture, a catalog architecture without weights, or a remote endpoint. Checks read a fact of the
format (`facts_of(model).remote`), never the format string; the worker's `build_target` is the one other
place that tells formats apart. Adding a format means one entry here, one intake in
`worker.services.model_validation.INTAKES` and one branch in `worker.services.targets.build`. Torch-free.
"""

from dataclasses import dataclass
from typing import Literal, Protocol

# Every format a model row may hold; app.schemas.resources.ModelFormat (onnx, safetensors) is the
# uploadable part of it.
StoredFormat = Literal["onnx", "safetensors", "architecture", "remote"]


@dataclass(frozen=True)
class FormatFacts:
    """The facts of one format that submission checks and the intake read."""

    name: str
    # Sent as a file to the upload route (the rest are registered with a JSON body).
    uploadable: bool
    # Queried over HTTP: no weights, graph, gradients or activations, only predictions.
    remote: bool
    # Names a catalog architecture that the worker builds.
    needs_architecture: bool
    # The source may declare its input shape and class count (an ONNX graph), so an upload may leave them out.
    states_interface: bool
    # Answers prediction queries as stored (an ONNX graph with its blob, an endpoint): an extraction victim.
    answers_queries: bool
    # Has a graph of its own that a surrogate can re-initialise (surrogate architecture 'victim').
    own_graph: bool
    # Whether it is white-box is the intake's finding (an ONNX graph may be usable black-box only).
    white_box_by_intake: bool


class HasFormat(Protocol):
    """Anything with a stored format: a model row, an upload's fields."""

    @property
    def format(self) -> str: ...


FORMATS: dict[str, FormatFacts] = {
    "onnx": FormatFacts(
        name="onnx",
        uploadable=True,
        remote=False,
        needs_architecture=False,
        states_interface=True,
        answers_queries=True,
        own_graph=True,
        white_box_by_intake=True,
    ),
    "safetensors": FormatFacts(
        name="safetensors",
        uploadable=True,
        remote=False,
        needs_architecture=True,
        states_interface=False,
        answers_queries=False,
        own_graph=False,
        white_box_by_intake=False,
    ),
    "architecture": FormatFacts(
        name="architecture",
        uploadable=False,
        remote=False,
        needs_architecture=True,
        states_interface=False,
        answers_queries=False,
        own_graph=False,
        white_box_by_intake=False,
    ),
    "remote": FormatFacts(
        name="remote",
        uploadable=False,
        remote=True,
        needs_architecture=False,
        states_interface=False,
        answers_queries=True,
        own_graph=False,
        white_box_by_intake=False,
    ),
}

# A row whose format this service does not know (none is ever stored): every fact false, so no check
# treats it as remote, queryable or self-describing; the worker's intake rejects it as unsupported_format.
UNKNOWN = FormatFacts(
    name="unknown",
    uploadable=False,
    remote=False,
    needs_architecture=False,
    states_interface=False,
    answers_queries=False,
    own_graph=False,
    white_box_by_intake=False,
)

UPLOAD_FORMATS: tuple[str, ...] = tuple(name for name, facts in FORMATS.items() if facts.uploadable)


def facts_of(model: HasFormat) -> FormatFacts:
    """The facts of a model's (or an upload's) format."""
    return FORMATS.get(model.format, UNKNOWN)
