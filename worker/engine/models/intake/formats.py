"""Recognise serialisation formats that can run code when loaded, without ever loading them.

Only bytes and zip member names are inspected. Detection is for a helpful message: anything not
refused here must still parse with a safe parser (protobuf for ONNX, safetensors), so a format
this misses is rejected later anyway and nothing is ever unpickled.
"""

import io
import pickletools
import zipfile

from worker.engine.models.intake.errors import ModelRejected

ONNX_EXPORT_HINT = (
    "Export the model to ONNX instead, for example: torch.onnx.export(model.eval(), "
    "torch.rand(1, *input_shape), 'model.onnx', dynamo=False, input_names=['input'], "
    "output_names=['logits'], dynamic_axes={'input': {0: 'batch'}}). For a catalog architecture "
    "you can also upload weights with safetensors.torch.save_file(model.state_dict(), 'model.safetensors')."
)
_ZIP_MAGICS = (b"PK\x03\x04", b"PK\x05\x06", b"PK\x07\x08")
# Opcodes a real protocol 0/1 pickle starts with (MARK, containers, GLOBAL and plain values).
_PICKLE_STARTS = frozenset("(])}cNILFSVKJMGTUX")
_PICKLE_SCAN_BYTES = 1 << 16
_PICKLE_MIN_OPCODES = 3


def _pickle_opcode_count(data: bytes) -> tuple[int, bool]:
    """Parse opcodes (never executing them) from the start; return (count parsed, reached STOP)."""
    count = 0
    try:
        for opcode, _arg, _pos in pickletools.genops(io.BytesIO(data[:_PICKLE_SCAN_BYTES])):
            count += 1
            if opcode.name == "STOP":
                return count, True
            if count >= 64:
                break
    except Exception:
        return count, False
    return count, False


def looks_like_pickle(data: bytes) -> bool:
    """True when the bytes start like a pickle: PROTO 0-5, or raw protocol 0/1 opcodes."""
    if not data:
        return False
    has_proto = data[0] == 0x80 and len(data) > 1 and data[1] <= 5
    if not has_proto and chr(data[0]) not in _PICKLE_STARTS:
        return False
    count, stopped = _pickle_opcode_count(data)
    return stopped or count >= _PICKLE_MIN_OPCODES


def _describe_zip(data: bytes) -> str:
    """Name the kind of zip archive from its member names alone (nothing is extracted)."""
    try:
        names = zipfile.ZipFile(io.BytesIO(data)).namelist()
    except Exception:
        return "a zip archive"
    parts = [name.split("/") for name in names]
    leaves = {p[-1] for p in parts}
    folders = {folder for p in parts for folder in p[:-1]}
    if "archive_format" in leaves or any(leaf.startswith("serialized_exported_program") for leaf in leaves):
        return "a torch.export archive (.pt2, torch.export.save)"
    if "code" in folders or "constants.pkl" in leaves:
        return "a TorchScript archive (torch.jit.save / torch.jit.script(...).save)"
    if "data.pkl" in leaves:
        return "a torch.save file (a zip holding data.pkl, which is a pickle)"
    return "a zip archive (possibly a NumPy .npz or another pickle container)"


def detect_unsafe_format(data: bytes) -> str | None:
    """Describe the unsafe or unsupported container the bytes are in, or None if none is recognised."""
    if data[:4] in _ZIP_MAGICS:
        return _describe_zip(data)
    if data.startswith(b"\x93NUMPY"):
        return "a NumPy .npy array file"
    if looks_like_pickle(data):
        return "a Python pickle (this includes legacy torch.save files)"
    return None


def refuse_unsafe_format(data: bytes) -> None:
    """Raise ModelRejected('refused_format') for pickles, torch.save/TorchScript/torch.export files, zips."""
    kind = detect_unsafe_format(data)
    if kind is not None:
        raise ModelRejected(
            "refused_format",
            f"The upload is {kind}. Gauntlet never loads such files because loading them can run "
            f"arbitrary code. {ONNX_EXPORT_HINT}",
        )
