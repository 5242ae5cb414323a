"""The client commands of `gauntlet` (submit, jobs, report, artifacts, models, datasets), on the SDK."""

import argparse
import sys
from collections.abc import Callable

from gauntlet_client.cli import jobs, reports, resources
from gauntlet_client.cli.common import EXIT_ERROR, EXIT_INTERRUPTED, Commands
from gauntlet_client.errors import GauntletError


def register(commands: Commands) -> None:
    """Add every client command to the `gauntlet` parser."""
    jobs.register(commands)
    reports.register(commands)
    resources.register(commands)


def run(handler: Callable[[argparse.Namespace], int], args: argparse.Namespace) -> int:
    """Run a client command: a service error or an unreadable file is one line on stderr and exit 3."""
    try:
        return handler(args)
    except GauntletError as exc:
        print(f"error: {exc.code}: {exc.message}", file=sys.stderr)
    except (OSError, ValueError, RuntimeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
    except KeyboardInterrupt:
        print(
            "interrupted; a submitted job keeps running (gauntlet jobs wait|cancel JOB_ID)", file=sys.stderr
        )
        return EXIT_INTERRUPTED
    return EXIT_ERROR
