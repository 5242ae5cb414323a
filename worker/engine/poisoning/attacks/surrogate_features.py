"""Differentiable features of a surrogate for feature-space attacks: the input of its last linear layer."""

from collections.abc import Callable

from torch import Tensor, nn


def penultimate(model: nn.Module) -> tuple[Callable[[Tensor], Tensor], str]:
    """A function from inputs to the surrogate's penultimate activations, and the layer's name.

    The penultimate layer is the input of the model's last nn.Linear (a catalog architecture). A
    module without one (a graph built from ONNX) falls back to its logits, the last representation
    it exposes.
    """
    linear = [(name, module) for name, module in model.named_modules() if isinstance(module, nn.Linear)]
    if not linear:
        return model, "logits"
    name, layer = linear[-1]
    captured: list[Tensor] = []

    def features(x: Tensor) -> Tensor:
        handle = layer.register_forward_pre_hook(lambda _module, inputs: captured.append(inputs[0]))
        try:
            model(x)
        finally:
            handle.remove()
        return captured.pop().flatten(1)

    return features, f"input of {name}"
