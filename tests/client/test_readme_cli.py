"""The README's client section can be pasted: its CI workflow is valid YAML and every `gauntlet` command in
it parses with the real command line."""

import re
import shlex
from pathlib import Path

import yaml

from gauntlet_cli.main import build_parser

ROOT = Path(__file__).resolve().parents[2]


def _section() -> str:
    text = (ROOT / "README.md").read_text()
    return text[text.index("## Python client and CLI") : text.index("## Extraction")]


def _blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", _section(), flags=re.S)


def _commands(script: str) -> list[list[str]]:
    """Every `gauntlet ...` invocation in a shell snippet, continuation lines joined, comments dropped."""
    text = re.sub(r'"\$\([^)]*\)"', "JOB_ID", script.replace("\\\n", " "))
    found = []
    for line in text.splitlines():
        for match in re.finditer(r"(?:^|\$\(|;|&&)\s*(gauntlet [^|)\n]*)", line):
            command = match.group(1).split(" #")[0]
            found.append(shlex.split(command)[1:])
    return found


def test_the_ci_workflow_is_valid_and_gates_on_robust_accuracy():
    (workflow,) = _blocks("yaml")
    steps = yaml.safe_load(workflow)["jobs"]["gate"]["steps"]
    runs = "\n".join(step.get("run", "") for step in steps)
    commands = _commands(runs)
    submit = next(c for c in commands if c[0] == "submit")
    assert "--wait" in submit and "robust_accuracy@0.1=0.6" in submit
    for command in commands:
        args = build_parser().parse_args(command)
        assert callable(args.handler), command


def test_every_cli_example_parses():
    commands = [c for block in _blocks("sh") for c in _commands(block)]
    assert {c[0] for c in commands} >= {"models", "submit", "jobs", "report", "artifacts"}
    for command in commands:
        assert callable(build_parser().parse_args(command).handler), command
