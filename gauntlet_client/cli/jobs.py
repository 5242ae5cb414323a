"""`gauntlet jobs list|show|cancel|wait`."""

import argparse
from itertools import islice

from gauntlet_client.cli import submit
from gauntlet_client.cli.common import EXIT_OK, Commands, connection_options, make_client, table

JOB_STATUSES = ("queued", "running", "succeeded", "failed", "cancelled")
JOB_KINDS = ("evasion", "extraction", "poisoning", "defense")


def list_jobs(args: argparse.Namespace) -> int:
    """Print the newest jobs (every page up to --limit; 0 for all)."""
    with make_client(args) as client:
        found = client.jobs.list(status=args.status, kind=args.kind, limit=min(args.limit or 100, 100))
        jobs = list(islice(found, args.limit or None))
    rows = [
        (
            job.id,
            job.view.kind,
            job.status,
            f"{job.view.progress:.0%}",
            job.view.model_id,
            f"{job.view.created_at:%Y-%m-%d %H:%M:%S}",
        )
        for job in jobs
    ]
    print("\n".join(table(["id", "kind", "status", "progress", "model", "created"], rows)))
    return EXIT_OK


def show_job(args: argparse.Namespace) -> int:
    """Print one job as JSON."""
    with make_client(args) as client:
        print(client.jobs.get(args.job_id).view.model_dump_json(indent=2))
    return EXIT_OK


def cancel_job(args: argparse.Namespace) -> int:
    """Cancel a job and print its state."""
    with make_client(args) as client:
        job = client.jobs.cancel(args.job_id)
    print(f"{job.id} {job.status}")
    return EXIT_OK


def register(commands: Commands) -> None:
    """Add `jobs` with its subcommands, and `submit`."""
    jobs = commands.add_parser("jobs", help="list, show, cancel or wait for jobs").add_subparsers(
        dest="jobs_command", required=True
    )
    listing = jobs.add_parser("list", parents=[connection_options()], help="the newest jobs")
    listing.add_argument("--status", choices=JOB_STATUSES, default=None)
    listing.add_argument("--kind", choices=JOB_KINDS, default=None)
    listing.add_argument("--limit", type=int, default=20, help="how many to show (0: all)")
    listing.set_defaults(handler=list_jobs)
    for name, handler, text in (
        ("show", show_job, "one job as JSON"),
        ("cancel", cancel_job, "cancel a job"),
    ):
        sub = jobs.add_parser(name, parents=[connection_options()], help=text)
        sub.add_argument("job_id")
        sub.set_defaults(handler=handler)
    submit.register(commands, jobs)
