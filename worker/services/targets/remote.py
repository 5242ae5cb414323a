"""A remote prediction endpoint: black-box only, reached through the operator's host allowlist."""

import numpy as np
from torch import nn

from worker.remote_model import RemoteClassifier, RemoteModelError
from worker.services.job_state import JobFailure
from worker.services.targets.base import Classifier, Signature, Target


class RemoteTarget(Target):
    """A model known only through its HTTP prediction endpoint (the JSON protocol of worker.remote_model)."""

    def __init__(
        self,
        *,
        id: str,
        name: str,
        signature: Signature,
        url: str,
        allowlist: tuple[str, ...],  # noqa: A002
        timeout: float = 10.0,
        retries: int = 3,
    ) -> None:
        super().__init__(id=id, name=name, signature=signature)
        self.url, self.allowlist = url, allowlist
        self.timeout, self.retries = timeout, retries
        self._opened: list[RemoteClassifier] = []

    def raw_classifier(self) -> Classifier:
        """A client of the endpoint; its transport errors become the endpoint's stable codes."""
        remote = RemoteClassifier(
            self.url,
            input_shape=list(self.signature.input_shape),
            num_classes=self.signature.num_classes,
            allowlist=list(self.allowlist),
            timeout=self.timeout,
            retries=self.retries,
        )
        self._opened.append(remote)

        def classify(x: np.ndarray) -> np.ndarray:
            try:
                return remote(x)
            except RemoteModelError as exc:
                raise JobFailure(exc.code, exc.message) from exc

        return classify

    def trainable(self, init: str, seed: int) -> nn.Module:
        """A remote endpoint has no weights to train."""
        raise JobFailure("needs_white_box", f"model {self.id} is a remote endpoint: it cannot be trained")

    def close(self) -> None:
        """Close the clients this target opened (their connection pools)."""
        while self._opened:
            self._opened.pop().close()
