"""`gauntlet submit SPEC.json` and `gauntlet jobs wait JOB_ID`: follow a job and gate on its figures."""

import argparse
import json
import sys
from functools import partial
from pathlib import Path
from typing import Any

from gauntlet_client.cli.common import (
    EXIT_JOB_FAILED,
    EXIT_OK,
    EXIT_THRESHOLD_MISSED,
    Commands,
    connection_options,
    make_client,
)
from gauntlet_client.cli.results import result_table
from gauntlet_client.cli.thresholds import Threshold, evaluate, parse_threshold
from gauntlet_client.job import Job
from gauntlet_client.progress import ProgressDisplay


def _threshold(floor: bool, text: str) -> Threshold:
    """argparse type: a threshold, or a usage error naming what is wrong."""
    try:
        return parse_threshold(text, floor=floor)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_gate_options(parser: argparse.ArgumentParser) -> None:
    """--fail-under, --fail-over, --timeout and --quiet."""
    parser.add_argument(
        "--fail-under",
        action="append",
        default=[],
        metavar="METRIC[@EPS]=VALUE",
        type=partial(_threshold, True),
        help="exit 1 when a figure of the metric is below VALUE (implies --wait); "
        "metrics: clean_accuracy, robust_accuracy, certified_accuracy (README: Python client and CLI)",
    )
    parser.add_argument(
        "--fail-over",
        action="append",
        default=[],
        metavar="METRIC[@EPS]=VALUE",
        type=partial(_threshold, False),
        help="exit 1 when a figure of the metric is above VALUE (implies --wait); "
        "metrics: attack_success_rate, accuracy_drop, fidelity",
    )
    parser.add_argument("--timeout", type=float, default=None, help="give up waiting after this many seconds")
    parser.add_argument("--quiet", action="store_true", help="no progress output")


def _read_spec(path: str) -> dict[str, Any]:
    """A JSON spec from a file, or from standard input for `-`."""
    text = sys.stdin.read() if path == "-" else Path(path).read_text()
    spec = json.loads(text)
    if not isinstance(spec, dict):
        raise ValueError(f"{path}: a job spec is a JSON object")
    return spec


def follow(job: Job, args: argparse.Namespace) -> int:
    """Wait for the job, print its result table and the thresholds' verdicts; the exit code."""
    final = job.wait(progress=False if args.quiet else ProgressDisplay(), timeout=args.timeout)
    if final.status != "succeeded":
        error = f": {final.error.code}: {final.error.message}" if final.error else ""
        print(f"job {final.id} {final.status}{error}", file=sys.stderr)
        return EXIT_JOB_FAILED
    report = job.report_json()
    print("\n".join(result_table(report)))
    thresholds: list[Threshold] = [*args.fail_under, *args.fail_over]
    passed = True
    for threshold in thresholds:
        ok, line = evaluate(report, threshold)
        passed &= ok
        print(line)
    if not passed:
        print(f"job {final.id}: a threshold was missed", file=sys.stderr)
        return EXIT_THRESHOLD_MISSED
    return EXIT_OK


def submit(args: argparse.Namespace) -> int:
    """Submit a spec; with --wait (or a threshold) follow it to the end."""
    spec = _read_spec(args.spec)
    overrides = {"model_id": args.model_id, "dataset_id": args.dataset_id}
    spec |= {key: value for key, value in overrides.items() if value}
    with make_client(args) as client:
        job = client.jobs.submit(spec, idempotency_key=args.idempotency_key)
        print(job.id, flush=True)
        if not (args.wait or args.fail_under or args.fail_over):
            return EXIT_OK
        return follow(job, args)


def wait(args: argparse.Namespace) -> int:
    """Follow an existing job to the end and gate on its figures."""
    with make_client(args) as client:
        return follow(client.jobs.get(args.job_id), args)


def register(commands: Commands, jobs: Commands) -> None:
    """Add `submit` and `jobs wait`."""
    parser = commands.add_parser(
        "submit",
        parents=[connection_options()],
        help="submit a job spec (JSON); --wait follows it: exit 0, 1 (threshold missed), 2 (job failed)",
    )
    parser.add_argument("spec", help="the job spec, a JSON file (`-` for standard input)")
    parser.add_argument("--model-id", default=None, help="the model under test (overrides the spec's)")
    parser.add_argument("--dataset-id", default=None, help="the held-out dataset (overrides the spec's)")
    parser.add_argument("--idempotency-key", default=None, help="the same key returns the same job")
    parser.add_argument("--wait", action="store_true", help="follow the job and print its result table")
    add_gate_options(parser)
    parser.set_defaults(handler=submit)
    waiting = jobs.add_parser(
        "wait", parents=[connection_options()], help="follow a job to the end and gate on its figures"
    )
    waiting.add_argument("job_id")
    add_gate_options(waiting)
    waiting.set_defaults(handler=wait)
