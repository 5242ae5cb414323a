"""The API process stays small: it never imports torch or the engine (fast: runs in `make test-fast`)."""

import ast
import os
import subprocess
import sys
from pathlib import Path

HEAVY = "('torch', 'onnx', 'onnxruntime', 'sklearn', 'worker', 'worker.engine')"
ROOT = Path(__file__).resolve().parents[2]


def _imported(code: str) -> str:
    """Which heavy modules a fresh interpreter holds after running `code`."""
    env = {**os.environ, "GAUNTLET_DATA_DIR": "/tmp/gauntlet-import-check"}
    script = f"{code}; print(sorted(m for m in {HEAVY} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, check=True)
    return out.stdout.strip()


def test_api_process_never_imports_torch_or_the_engine():
    code = "import sys, app.main, gauntlet_cli.main; app.main.create_app(); gauntlet_cli.main.build_parser()"
    assert _imported(code) == "[]"


def test_the_client_sdk_imports_neither_torch_nor_the_worker():
    assert _imported("import sys, gauntlet_client, gauntlet_client.cli") == "[]"


def test_app_imports_nothing_of_the_worker():
    offenders = []
    for path in (ROOT / "app").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                names = [node.module or ""]
            offenders += [f"{path.relative_to(ROOT)}: {n}" for n in names if n.split(".")[0] == "worker"]
    assert offenders == []
