"""`gauntlet report JOB_ID [--html FILE] [--json] [--mlflow URI]` and `gauntlet artifacts JOB_ID`."""

import argparse
import json
from pathlib import Path
from typing import Any

from gauntlet_client.cli.common import EXIT_OK, Commands, connection_options, make_client, table
from gauntlet_client.cli.results import result_table


def report(args: argparse.Namespace) -> int:
    """Print a job's result table (or its JSON), save its HTML page, log it to MLflow."""
    with make_client(args) as client:
        job = client.jobs.get(args.job_id)
        body = job.report_json()
        html = job.report_html() if args.html or args.mlflow else None
        if args.mlflow:
            from gauntlet_client.cli.mlflow_log import log_report

            assert html is not None
            view = job.view
            spec: dict[str, Any] = {"kind": view.kind, "model_id": view.model_id}
            spec |= {"dataset_id": view.dataset_id, "seed": view.seed, "params": view.params}
            run_id = log_report(body, html, spec, tracking_uri=args.mlflow, experiment=args.experiment)
            print(f"logged to MLflow run {run_id} (experiment {args.experiment})")
    if args.html:
        Path(args.html).write_text(html or "", encoding="utf-8")
        print(f"HTML report written to {args.html}")
    print(json.dumps(body, indent=2) if args.json else "\n".join(result_table(body)))
    return EXIT_OK


def artifacts(args: argparse.Namespace) -> int:
    """List a job's artifacts, or download them into a folder."""
    with make_client(args) as client:
        job = client.jobs.get(args.job_id)
        if args.download:
            for path in job.artifacts.download(args.download):
                print(path)
            return EXIT_OK
        rows = [(a.id, a.kind, a.name, a.size_bytes, a.media_type) for a in job.artifacts.list()]
    print("\n".join(table(["id", "kind", "name", "bytes", "media type"], rows)))
    return EXIT_OK


def register(commands: Commands) -> None:
    """Add `report` and `artifacts`."""
    parser = commands.add_parser("report", parents=[connection_options()], help="a job's report")
    parser.add_argument("job_id")
    parser.add_argument("--json", action="store_true", help="print the whole report as JSON")
    parser.add_argument("--html", metavar="FILE", default=None, help="write the HTML page to FILE")
    parser.add_argument(
        "--mlflow",
        metavar="URI",
        default=None,
        help="log the headline figures, spec and report files to an MLflow tracking URI (extra: mlflow)",
    )
    parser.add_argument("--experiment", default="gauntlet", help="MLflow experiment name (default gauntlet)")
    parser.set_defaults(handler=report)
    files = commands.add_parser("artifacts", parents=[connection_options()], help="a job's artifacts")
    files.add_argument("job_id")
    files.add_argument("--download", metavar="DIR", default=None, help="download every artifact into DIR")
    files.set_defaults(handler=artifacts)
