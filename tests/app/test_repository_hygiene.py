"""The repository tracks no binary archives: no pickles, zips (TorchScript, .npz, .pt) or .npy files.

Test fixtures are made at run time; a committed archive is either a mistake (a TorchScript file named
after a BytesIO's repr once was) or code-carrying data nobody reviewed.
"""

import re
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


# The one place that builds a target from a row's format, and the table of the formats' facts.
FORMAT_COMPARISON_ALLOWED = {"worker/services/targets/build.py", "app/model_formats.py"}
FORMAT_COMPARISON = re.compile(r"\bformat\s*[!=]=|[!=]=\s*[\w.]*\bformat\b")


def test_no_format_comparison_outside_the_target_builder_and_the_facts_table():
    offenders = [
        f"{path.relative_to(ROOT)}:{number}: {line.strip()}"
        for folder in ("app", "worker")
        for path in sorted((ROOT / folder).rglob("*.py"))
        if str(path.relative_to(ROOT)) not in FORMAT_COMPARISON_ALLOWED
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if FORMAT_COMPARISON.search(line)
    ]
    assert offenders == [], "read a fact of app.model_formats.facts_of(model) instead of comparing formats"


def test_the_format_check_recognises_a_comparison():
    for line in ('if model.format == "remote":', 'if fields.format != "onnx"', 'if "onnx" == record.format:'):
        assert FORMAT_COMPARISON.search(line), line
    for line in ("output_format = 'npz'", "f'{x.format}'", 'if out_format == "png":'):
        assert not FORMAT_COMPARISON.search(line), line
