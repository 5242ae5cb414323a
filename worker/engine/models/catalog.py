"""Built-in architecture catalog for safetensors uploads.

A safetensors file carries only tensors, so the architecture must come from code we own. Each entry
builds a module from the declared input shape and class count; weights are loaded strictly.
"""

from collections.abc import Callable
from math import prod

from torch import nn

ArchitectureBuilder = Callable[[tuple[int, ...], int], nn.Module]


def _mlp(input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    """Two hidden layers of 256 units with ReLU."""
    return nn.Sequential(
        nn.Flatten(),
        nn.Linear(prod(input_shape), 256),
        nn.ReLU(),
        nn.Linear(256, 256),
        nn.ReLU(),
        nn.Linear(256, num_classes),
    )


def _small_cnn(input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    """Two 3x3 conv blocks (32 and 64 channels, each halving the size) and a 128-unit head."""
    if len(input_shape) != 3:
        raise ValueError("small-cnn needs an input shape [channels, height, width]")
    channels, height, width = input_shape
    if height % 4 or width % 4:
        raise ValueError("small-cnn needs height and width divisible by 4")
    return nn.Sequential(
        nn.Conv2d(channels, 32, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(64 * (height // 4) * (width // 4), 128),
        nn.ReLU(),
        nn.Linear(128, num_classes),
    )


ARCHITECTURES: dict[str, ArchitectureBuilder] = {
    "mlp": _mlp,
    "small-cnn": _small_cnn,
}


def build_architecture(name: str, input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    """Build a catalog architecture; raises KeyError for an unknown name."""
    return ARCHITECTURES[name](tuple(input_shape), num_classes)
