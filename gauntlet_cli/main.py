"""The `gauntlet` command's parser and dispatch; it sits above both the API (`app`) and the worker."""

import argparse
import sys
from collections.abc import Callable

from gauntlet_cli import keys, server


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the `gauntlet` command."""
    import gauntlet_client.cli

    parser = argparse.ArgumentParser(
        prog="gauntlet",
        description="Attack-and-defend as a service. Server commands run the system; client commands "
        "talk to a running service at $GAUNTLET_URL with $GAUNTLET_API_KEY.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    server.register(commands)
    keys.register(commands)
    gauntlet_client.cli.register(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `gauntlet` command."""
    args = build_parser().parse_args(argv)
    handler: Callable[[argparse.Namespace], int] = args.handler
    if hasattr(args, "api_key"):
        import gauntlet_client.cli

        return gauntlet_client.cli.run(handler, args)
    return handler(args)


if __name__ == "__main__":
    sys.exit(main())
