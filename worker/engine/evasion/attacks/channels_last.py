"""Running a convolutional model on channels-last inputs: the same function, a cheaper memory layout.

PyTorch's CPU convolutions (oneDNN) work in the channels-last (NHWC) layout; given the default NCHW
layout they convert every activation to it and back, on every pass. Handing the model its input in
channels-last makes the convolutions keep that layout end to end: on the CIFAR-sized CNN of
benchmarks/bench_pgd.py a forward pass of 17 images took 23 ms in NCHW and 16 ms in channels-last
(one thread), a forward and backward pass about 17% less. The model computes the same function of
the same input values (a layout is not a value), though a convolution's float sums may round
differently in the last bits (a logit moved by about 2e-6 there).

`ChannelsLast` wraps the model for an attack's passes. It converts only 4-D inputs of a model that
has a 2-D convolution, and falls back to the model's own layout for good if a pass fails in
channels-last (a model that calls `.view` on an activation, for example).
"""

import torch
from torch import Tensor, nn


def has_conv2d(model: nn.Module) -> bool:
    """Whether the model has a 2-D convolution (the layer the layout speeds up)."""
    return any(isinstance(module, nn.Conv2d) for module in model.modules())


class ChannelsLast(nn.Module):
    """Runs the wrapped model on channels-last copies of 4-D inputs, or as given where that fails."""

    def __init__(self, model: nn.Module, *, enabled: bool = True) -> None:
        """Wrap model; the layout is used only where enabled and the model has a 2-D convolution."""
        super().__init__()
        self.model = model
        self.enabled = enabled and has_conv2d(model)

    def forward(self, x: Tensor) -> Tensor:
        """The model's output for x, computed from a channels-last copy where possible."""
        if self.enabled and x.dim() == 4:
            try:
                return self.model(x.contiguous(memory_format=torch.channels_last))  # type: ignore[no-any-return]
            except RuntimeError:
                self.enabled = False
        return self.model(x)  # type: ignore[no-any-return]
