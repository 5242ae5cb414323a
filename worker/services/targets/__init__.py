"""The model under test, one class per source behind one interface (`Target`)."""

from worker.services.targets.base import Classifier, Signature, Target
from worker.services.targets.build import build_target, signature_of
from worker.services.targets.defended import DefendedTarget
from worker.services.targets.local import ArchitectureTarget, OnnxTarget, SafetensorsTarget
from worker.services.targets.remote import RemoteTarget

__all__ = [
    "ArchitectureTarget",
    "Classifier",
    "DefendedTarget",
    "OnnxTarget",
    "RemoteTarget",
    "SafetensorsTarget",
    "Signature",
    "Target",
    "build_target",
    "signature_of",
]
