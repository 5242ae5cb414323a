"""Errors raised while turning an ONNX graph into a PyTorch module."""

from collections.abc import Iterable

from worker.engine.errors import EngineError


class GraphBuildError(EngineError, ValueError):
    """The ONNX graph cannot be turned into a differentiable PyTorch module."""

    default_code = "graph_unsupported"


class UnsupportedOpsError(GraphBuildError):
    """The graph uses operators outside the allowlist; `missing` lists every one of them."""

    def __init__(self, missing: Iterable[str], supported: Iterable[str] | None = None) -> None:
        """Record the sorted unique missing op names and build a message listing them all."""
        if supported is None:
            from worker.engine.models.onnx_graph.ops import SUPPORTED_OPS  # late: ops imports this module

            supported = SUPPORTED_OPS
        self.missing: list[str] = sorted(set(missing))
        self.supported: list[str] = sorted(set(supported))
        super().__init__(
            "the ONNX graph uses operators Gauntlet cannot differentiate through: "
            f"{', '.join(self.missing)}. Supported: {', '.join(self.supported)}"
        )


class UnsupportedAttributeError(GraphBuildError):
    """An allowlisted op is used with an attribute value or output the builder does not handle."""
