"""The API process stays small: it never imports torch or the engine (fast: runs in `make test-fast`)."""

import os
import subprocess
import sys


def test_api_process_never_imports_torch_or_the_engine():
    heavy = "('torch', 'onnx', 'onnxruntime', 'sklearn', 'worker.engine')"
    code = (
        "import sys, app.main, app.cli; app.main.create_app(); "
        f"print(sorted(m for m in {heavy} if m in sys.modules))"
    )
    env = {**os.environ, "GAUNTLET_DATA_DIR": "/tmp/gauntlet-import-check"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert out.stdout.strip() == "[]"
