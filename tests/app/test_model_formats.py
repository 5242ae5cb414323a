"""Every stored format has its facts, its intake and its target; the uploadable ones are ModelFormat's."""

import ast
import re
from pathlib import Path
from typing import get_args

from app.model_formats import FORMATS, UNKNOWN, UPLOAD_FORMATS, StoredFormat, facts_of
from app.schemas.resources import ModelFormat
from app.services.models import ACCEPTED_FORMATS
from worker.services.model_validation import INTAKES

ROOT = Path(__file__).resolve().parents[2]


def _literal_keys(path: str, name: str) -> list[str]:
    """The keys of the dict literal assigned to `name` in a module, duplicates included."""
    for node in ast.walk(ast.parse((ROOT / path).read_text())):
        if isinstance(node, ast.AnnAssign | ast.Assign):
            targets = [node.target] if isinstance(node, ast.AnnAssign) else node.targets
            if any(isinstance(t, ast.Name) and t.id == name for t in targets):
                assert isinstance(node.value, ast.Dict)
                return [k.value for k in node.value.keys if isinstance(k, ast.Constant)]
    raise AssertionError(f"{name} not found in {path}")


def test_every_stored_format_has_exactly_one_facts_entry_and_one_intake():
    formats = sorted(get_args(StoredFormat))
    tables = (("app/model_formats.py", "FORMATS"), ("worker/services/model_validation.py", "INTAKES"))
    for path, name in tables:
        assert sorted(_literal_keys(path, name)) == formats, name
    assert sorted(FORMATS) == formats and sorted(INTAKES) == formats
    assert all(facts.name == name for name, facts in FORMATS.items())


def test_every_stored_format_has_a_target():
    build = (ROOT / "worker/services/targets/build.py").read_text()
    for fmt in get_args(StoredFormat):
        assert len(re.findall(rf'record\.format == "{fmt}"', build)) == 1, fmt


def test_the_uploadable_formats_are_model_format():
    assert sorted(UPLOAD_FORMATS) == sorted(get_args(ModelFormat))
    assert ACCEPTED_FORMATS == UPLOAD_FORMATS == ("onnx", "safetensors")


def test_the_facts_the_checks_read():
    class Row:
        def __init__(self, fmt: str) -> None:
            self.format = fmt

    assert facts_of(Row("remote")).remote and not facts_of(Row("onnx")).remote
    assert facts_of(Row("onnx")).states_interface and not facts_of(Row("safetensors")).states_interface
    assert [f for f, facts in FORMATS.items() if facts.needs_architecture] == ["safetensors", "architecture"]
    assert [f for f, facts in FORMATS.items() if facts.answers_queries] == ["onnx", "remote"]
    assert [f for f, facts in FORMATS.items() if facts.own_graph] == ["onnx"]
    assert [f for f, facts in FORMATS.items() if facts.white_box_by_intake] == ["onnx"]
    assert [f for f, facts in FORMATS.items() if facts.uploadable] == ["onnx", "safetensors"]
    assert facts_of(Row("pickle")) is UNKNOWN
