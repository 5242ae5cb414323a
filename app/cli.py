"""The `gauntlet` command: api, worker, keys, db, demo and serve."""

import argparse
import sys
from collections.abc import Callable

from app.settings import get_settings


def _api(args: argparse.Namespace) -> int:
    """Serve the HTTP API."""
    import uvicorn

    settings = get_settings()
    if args.migrate:
        _db_upgrade(argparse.Namespace(revision="head"))
    uvicorn.run(
        "app.main:create_app",
        factory=True,
        host=args.host or settings.api_host,
        port=args.port or settings.api_port,
        log_level=args.log_level,
        proxy_headers=True,
    )
    return 0


def _worker(args: argparse.Namespace) -> int:
    """Run a Celery worker on the given queues (all of them by default)."""
    from worker.celery_app import celery_app

    argv = [
        "worker",
        "--queues",
        args.queues,
        "--concurrency",
        str(args.concurrency),
        "--pool",
        args.pool,
        "--loglevel",
        args.log_level,
        "--without-gossip",
        "--without-mingle",
    ]
    if args.hostname:
        argv += ["--hostname", args.hostname]
    celery_app.worker_main(argv)
    return 0


def _keys_create(args: argparse.Namespace) -> int:
    """Create a tenant (if new) and print a new API key for it."""
    from app.auth import create_key
    from app.db import make_engine, make_session_factory, session_scope

    factory = make_session_factory(make_engine(get_settings()))
    with session_scope(factory) as session:
        key = create_key(session, args.tenant)
    print(key)
    return 0


def _db_upgrade(args: argparse.Namespace) -> int:
    """Apply Alembic migrations."""
    from app.migrate import upgrade

    upgrade(get_settings().resolved_database_url, args.revision)
    return 0


def _demo(args: argparse.Namespace) -> int:
    """Run the whole system on the embedded default and one attack job end to end."""
    from worker.demo import run_demo

    return run_demo(keep_running=False, port=args.port)


def _serve(args: argparse.Namespace) -> int:
    """Set everything up and keep the API and a worker running."""
    from worker.demo import run_demo

    return run_demo(keep_running=True, port=args.port)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the `gauntlet` command."""
    from app.queue import ALL_QUEUES

    parser = argparse.ArgumentParser(prog="gauntlet", description="Attack-and-defend as a service.")
    commands = parser.add_subparsers(dest="command", required=True)

    api = commands.add_parser("api", help="serve the HTTP API")
    api.add_argument("--host", default=None, help="bind address (GAUNTLET_API_HOST, default 127.0.0.1)")
    api.add_argument("--port", type=int, default=None, help="port (GAUNTLET_API_PORT, default 8000)")
    api.add_argument("--migrate", action="store_true", help="apply database migrations first")
    api.add_argument("--log-level", default="info")
    api.set_defaults(handler=_api)

    worker = commands.add_parser("worker", help="run a worker")
    worker.add_argument(
        "--queues", default=",".join(ALL_QUEUES), help="comma-separated queues (default: all)"
    )
    worker.add_argument("--concurrency", type=int, default=1, help="jobs run at once (default 1)")
    worker.add_argument("--pool", default="prefork", choices=["prefork", "solo", "threads"])
    worker.add_argument("--hostname", default=None, help="Celery node name")
    worker.add_argument("--log-level", default="INFO")
    worker.set_defaults(handler=_worker)

    keys = commands.add_parser("keys", help="manage API keys").add_subparsers(
        dest="keys_command", required=True
    )
    create = keys.add_parser("create", help="create a key for a tenant and print it")
    create.add_argument("--tenant", required=True, help="tenant name (created if new)")
    create.set_defaults(handler=_keys_create)

    db = commands.add_parser("db", help="database schema").add_subparsers(dest="db_command", required=True)
    upgrade = db.add_parser("upgrade", help="apply migrations")
    upgrade.add_argument("--revision", default="head")
    upgrade.set_defaults(handler=_db_upgrade)

    for name, handler, text in (
        ("demo", _demo, "run one attack job end to end on the embedded default"),
        ("serve", _serve, "run the API and a worker until interrupted"),
    ):
        sub = commands.add_parser(name, help=text)
        sub.add_argument("--port", type=int, default=None, help="API port (default 8000)")
        sub.set_defaults(handler=handler)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `gauntlet` command."""
    args = build_parser().parse_args(argv)
    handler: Callable[[argparse.Namespace], int] = args.handler
    return handler(args)


if __name__ == "__main__":
    sys.exit(main())
