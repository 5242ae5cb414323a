"""safetensors intake: catalog architecture + strictly loaded weights (no code in the upload)."""

from collections.abc import Sequence

import torch
from safetensors.torch import load as load_safetensors_bytes

from worker.engine.models.catalog import ARCHITECTURES, build_architecture
from worker.engine.models.intake.errors import IntakeReport, ModelRejected
from worker.engine.models.intake.formats import refuse_unsafe_format

SAVE_HINT = "Save the weights with safetensors.torch.save_file(model.state_dict(), 'model.safetensors')."
_LIST_LIMIT = 8


def _listing(items: Sequence[str]) -> str:
    """Join at most a few items, saying how many more there are."""
    shown = ", ".join(items[:_LIST_LIMIT])
    return shown + (f" and {len(items) - _LIST_LIMIT} more" if len(items) > _LIST_LIMIT else "")


def _read_tensors(data: bytes) -> dict[str, torch.Tensor]:
    """Parse safetensors bytes; refuse pickles and archives with the export hint."""
    try:
        return load_safetensors_bytes(data)
    except Exception as exc:
        refuse_unsafe_format(data)
        raise ModelRejected(
            "safetensors_invalid", f"The upload is not a valid safetensors file ({exc}). {SAVE_HINT}"
        ) from exc


def _build(architecture: str, input_shape: Sequence[int], num_classes: int) -> torch.nn.Module:
    """Instantiate a catalog architecture for the declared input shape and class count."""
    if architecture not in ARCHITECTURES:
        raise ModelRejected(
            "unknown_architecture",
            f"Unknown architecture {architecture!r}; the catalog has: {', '.join(sorted(ARCHITECTURES))}.",
        )
    try:
        return build_architecture(architecture, tuple(int(d) for d in input_shape), num_classes)
    except ValueError as exc:
        raise ModelRejected(
            "shape_mismatch",
            f"Architecture {architecture!r} does not fit input shape {list(input_shape)}: {exc}",
        ) from exc


def _check_state(architecture: str, model: torch.nn.Module, tensors: dict[str, torch.Tensor]) -> None:
    """Compare keys, shapes, dtypes and finiteness with what the architecture expects."""
    expected = model.state_dict()
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    problems = []
    if missing:
        problems.append(f"missing keys: {_listing(missing)}")
    if unexpected:
        problems.append(f"unexpected keys: {_listing(unexpected)}")
    shared = sorted(set(expected) & set(tensors))
    wrong_shape = [
        f"{k} is {list(tensors[k].shape)}, expected {list(expected[k].shape)}"
        for k in shared
        if tensors[k].shape != expected[k].shape
    ]
    if wrong_shape:
        problems.append(f"wrong shapes: {_listing(wrong_shape)}")
    wrong_type = [k for k in shared if tensors[k].is_floating_point() != expected[k].is_floating_point()]
    if wrong_type:
        problems.append(f"wrong dtypes: {_listing(wrong_type)}")
    if problems:
        raise ModelRejected(
            "safetensors_invalid",
            f"The weights do not match architecture {architecture!r} ({'; '.join(problems)}). "
            f"Expected keys: {_listing(list(expected))}.",
        )
    not_finite = [
        k for k in shared if tensors[k].is_floating_point() and not torch.isfinite(tensors[k]).all()
    ]
    if not_finite:
        raise ModelRejected(
            "safetensors_invalid", f"The weights contain NaN or infinity: {_listing(not_finite)}."
        )


def _load(
    data: bytes, architecture: str, input_shape: Sequence[int], num_classes: int
) -> tuple[torch.nn.Module, list[str]]:
    """Build, load strictly, run one forward pass on random input; return the model and notes."""
    model = _build(architecture, input_shape, num_classes)
    tensors = _read_tensors(data)
    _check_state(architecture, model, tensors)
    model.load_state_dict(tensors, strict=True)
    model.eval()
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        out = model(torch.rand((2, *input_shape), generator=generator))
    if tuple(out.shape) != (2, num_classes):
        raise ModelRejected(
            "shape_mismatch", f"The model returned shape {list(out.shape)}; expected [2, {num_classes}]."
        )
    if not torch.isfinite(out).all():
        raise ModelRejected("safetensors_invalid", "The model's outputs on random input are not finite.")
    parameters = sum(t.numel() for t in tensors.values())
    return model, [
        f"Architecture {architecture!r}: {len(tensors)} tensors ({parameters} values) loaded strictly."
    ]


def validate_safetensors(
    data: bytes, architecture: str, input_shape: Sequence[int], num_classes: int
) -> IntakeReport:
    """Vet a safetensors upload for a catalog architecture."""
    _, notes = _load(data, architecture, input_shape, num_classes)
    return IntakeReport(white_box=True, max_abs_diff=None, missing_ops=[], onnx_opset=None, notes=notes)


def load_safetensors_module(
    data: bytes, architecture: str, input_shape: Sequence[int], num_classes: int
) -> torch.nn.Module:
    """The catalog module with the uploaded weights, in eval mode."""
    model, _ = _load(data, architecture, input_shape, num_classes)
    return model
