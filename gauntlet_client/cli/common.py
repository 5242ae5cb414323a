"""What every client command shares: the connection options, the client, exit codes, tables."""

import argparse
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING

from gauntlet_client.client import DEFAULT_URL, Client

if TYPE_CHECKING:
    Commands = argparse._SubParsersAction[argparse.ArgumentParser]
else:
    Commands = argparse._SubParsersAction

EXIT_OK = 0
EXIT_THRESHOLD_MISSED = 1
EXIT_JOB_FAILED = 2
EXIT_ERROR = 3
EXIT_INTERRUPTED = 130


def connection_options() -> argparse.ArgumentParser:
    """A parent parser with --url and --api-key (GAUNTLET_URL and GAUNTLET_API_KEY by default)."""
    parent = argparse.ArgumentParser(add_help=False)
    group = parent.add_argument_group("connection")
    group.add_argument(
        "--url",
        default=None,
        help=f"service URL (default: $GAUNTLET_URL, else {DEFAULT_URL})",
    )
    group.add_argument("--api-key", default=None, help="API key (default: $GAUNTLET_API_KEY)")
    return parent


def make_client(args: argparse.Namespace) -> Client:
    """A client from the command's options and the environment."""
    return Client(
        args.url or os.environ.get("GAUNTLET_URL"), args.api_key or os.environ.get("GAUNTLET_API_KEY")
    )


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> list[str]:
    """A plain text table, columns padded to their widest cell."""
    cells = [[str(h) for h in headers]] + [["" if c is None else str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    return [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in cells
    ]
