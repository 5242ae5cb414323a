"""Built-in architecture catalog for safetensors uploads.

A safetensors file carries only tensors, so the architecture must come from code we own. Each entry
builds a module from the declared input shape and class count; weights are loaded strictly.
"""

from collections.abc import Callable
from math import prod

import torch
from torch import Tensor, nn

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


def _bn_cnn(input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    """small-cnn with batch normalization after each convolution (conv, BN, ReLU, pool), 128-unit head."""
    channels, height, width = _image_shape("bn-cnn", input_shape, multiple=4)
    return nn.Sequential(
        nn.Conv2d(channels, 32, 3, padding=1, bias=False),
        nn.BatchNorm2d(32),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3, padding=1, bias=False),
        nn.BatchNorm2d(64),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(64 * (height // 4) * (width // 4), 128),
        nn.ReLU(),
        nn.Linear(128, num_classes),
    )


class BasicBlock(nn.Module):
    """ResNet's basic block (He et al., 2016): two 3x3 conv-BN layers and a shortcut, then ReLU.

    The shortcut is the identity, or a strided 1x1 conv with BN when the shape changes.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        """Create the two conv-BN layers and the shortcut."""
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False),
                nn.BatchNorm2d(out_channels),
            )

    def forward(self, x: Tensor) -> Tensor:
        """relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x))."""
        out = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


class SmallResNet(nn.Module):
    """A conv-BN stem (16 channels), two basic blocks (16, then 32 channels at stride 2), global average
    pooling and a linear head."""

    def __init__(self, channels: int, num_classes: int) -> None:
        """Create the stem, the blocks and the head."""
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(channels, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU()
        )
        self.block1 = BasicBlock(16, 16, 1)
        self.block2 = BasicBlock(16, 32, 2)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Linear(32, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        """Logits for a batch of images."""
        return self.head(torch.flatten(self.pool(self.block2(self.block1(self.stem(x)))), 1))


def _small_resnet(input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    """SmallResNet for images of at least 2x2."""
    channels, _, _ = _image_shape("small-resnet", input_shape, multiple=1)
    return SmallResNet(channels, num_classes)


def _image_shape(name: str, input_shape: tuple[int, ...], multiple: int) -> tuple[int, int, int]:
    """Check an image input shape [channels, height, width] whose sides are multiples of `multiple`."""
    if len(input_shape) != 3:
        raise ValueError(f"{name} needs an input shape [channels, height, width]")
    channels, height, width = input_shape
    if height % multiple or width % multiple or min(height, width) < max(multiple, 2):
        raise ValueError(f"{name} needs height and width of at least 2 and divisible by {multiple}")
    return channels, height, width


ARCHITECTURES: dict[str, ArchitectureBuilder] = {
    "mlp": _mlp,
    "small-cnn": _small_cnn,
    "bn-cnn": _bn_cnn,
    "small-resnet": _small_resnet,
}


def build_architecture(name: str, input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    """Build a catalog architecture; raises KeyError for an unknown name."""
    return ARCHITECTURES[name](tuple(input_shape), num_classes)
