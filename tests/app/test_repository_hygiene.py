"""The repository tracks no binary archives: no pickles, zips (TorchScript, .npz, .pt) or .npy files.

Test fixtures are made at run time; a committed archive is either a mistake (a TorchScript file named
after a BytesIO's repr once was) or code-carrying data nobody reviewed.
"""

import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# Magic bytes: zip (TorchScript, torch.save, .npz), pickle protocols 2 to 5, NumPy's .npy.
MAGIC = (b"PK\x03\x04", b"\x80\x02", b"\x80\x03", b"\x80\x04", b"\x80\x05", b"\x93NUMPY")


def test_no_tracked_file_is_a_pickle_or_a_zip_archive():
    tracked = subprocess.run(
        ["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True
    ).stdout.split(b"\0")
    offenders = []
    for name in filter(None, tracked):
        path = ROOT / name.decode()
        if path.is_file():
            with path.open("rb") as handle:
                head = handle.read(8)
            if head.startswith(MAGIC):
                offenders.append(name.decode())
    assert offenders == []


def test_the_check_recognises_an_archive(tmp_path):
    import zipfile

    archive = tmp_path / "x.npz"
    with zipfile.ZipFile(archive, "w") as handle:
        handle.writestr("a", "b")
    assert archive.read_bytes()[:8].startswith(MAGIC)


def test_the_design_document_in_the_repository_is_the_shared_one():
    shared = ROOT.parent / "shared" / "DESIGN.md"
    if not shared.exists():  # a clone without the shared folder beside it has only the copy
        return
    assert (ROOT / "docs" / "DESIGN.md").read_text() == shared.read_text(), (
        "docs/DESIGN.md is a copy of ../shared/DESIGN.md: copy the shared one again"
    )
