"""Server commands: `api`, `worker`, `db upgrade`, `demo` and `serve`."""

import argparse

from app.settings import get_settings
from gauntlet_client.cli.common import Commands


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
        workers=args.workers,
    )
    return 0


def _pool(args: argparse.Namespace) -> tuple[int, str, str | None]:
    """Concurrency, pool and GPU list of a worker: with GPUs, one prefork process per GPU."""
    from worker.runtime import parse_gpus

    gpus = args.gpus if args.gpus is not None else get_settings().worker_gpus
    if not gpus:
        return args.concurrency or 1, args.pool, None
    count = len(parse_gpus(gpus))
    if count == 0 or args.pool != "prefork" or args.concurrency not in (None, count):
        raise SystemExit(
            f"gauntlet worker: --gpus {gpus!r} runs one prefork pool process per GPU "
            "(leave --concurrency and --pool out)"
        )
    return count, "prefork", gpus


def _worker(args: argparse.Namespace) -> int:
    """Run a Celery worker on the given queues (all of them by default)."""
    import os

    concurrency, pool, gpus = _pool(args)
    # Pool processes read these at start (worker/celery_app.py); set before the Celery app reads settings.
    if gpus:
        os.environ["GAUNTLET_WORKER_GPUS"] = gpus
    if args.threads:
        os.environ["GAUNTLET_TORCH_THREADS"] = str(args.threads)
    get_settings.cache_clear()
    from worker.celery_app import celery_app

    argv = [
        "worker",
        "--queues",
        args.queues,
        "--concurrency",
        str(concurrency),
        "--pool",
        pool,
        "--loglevel",
        args.log_level,
        "--without-gossip",
        "--without-mingle",
    ]
    if args.hostname:
        argv += ["--hostname", args.hostname]
    celery_app.worker_main(argv)
    return 0


def _db_upgrade(args: argparse.Namespace) -> int:
    """Apply Alembic migrations."""
    from app.migrate import upgrade

    upgrade(get_settings().resolved_database_url, args.revision)
    return 0


def _demo(args: argparse.Namespace) -> int:
    """Run the whole system on the embedded default and one job of every kind end to end."""
    from worker.demo import run_demo

    return run_demo(keep_running=False, port=args.port)


def _serve(args: argparse.Namespace) -> int:
    """Set everything up and keep the API and a worker running until SIGTERM or Ctrl-C."""
    from worker.demo import run_demo

    return run_demo(keep_running=True, port=args.port, run_jobs=not args.no_demo)


def register(commands: Commands) -> None:
    """Add the server commands."""
    from app.queue import ALL_QUEUES

    api = commands.add_parser("api", help="serve the HTTP API")
    api.add_argument("--host", default=None, help="bind address (GAUNTLET_API_HOST, default 127.0.0.1)")
    api.add_argument("--port", type=int, default=None, help="port (GAUNTLET_API_PORT, default 8000)")
    api.add_argument("--migrate", action="store_true", help="apply database migrations first")
    api.add_argument("--log-level", default="info")
    api.add_argument(
        "--workers", type=int, default=1, help="API processes on the one port (default 1; one per core)"
    )
    api.set_defaults(handler=_api)

    worker = commands.add_parser("worker", help="run a worker")
    worker.add_argument(
        "--queues", default=",".join(ALL_QUEUES), help="comma-separated queues (default: all)"
    )
    worker.add_argument("--concurrency", type=int, default=None, help="jobs run at once (default 1)")
    worker.add_argument(
        "--gpus",
        default=None,
        help="comma-separated GPUs (0,1,...): one pool process per GPU, each sees one (GAUNTLET_WORKER_GPUS)",
    )
    worker.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch threads per pool process (GAUNTLET_TORCH_THREADS; default: cores // pool processes)",
    )
    worker.add_argument("--pool", default="prefork", choices=["prefork", "solo", "threads"])
    worker.add_argument("--hostname", default=None, help="Celery node name")
    worker.add_argument("--log-level", default="INFO")
    worker.set_defaults(handler=_worker)

    db = commands.add_parser("db", help="database schema").add_subparsers(dest="db_command", required=True)
    upgrade = db.add_parser("upgrade", help="apply migrations")
    upgrade.add_argument("--revision", default="head")
    upgrade.set_defaults(handler=_db_upgrade)

    demo = commands.add_parser("demo", help="run one job of every kind end to end on the embedded default")
    demo.add_argument("--port", type=int, default=None, help="API port (default: a free one)")
    demo.set_defaults(handler=_demo)
    serve = commands.add_parser("serve", help="run the API and a worker until SIGTERM or Ctrl-C")
    serve.add_argument("--port", type=int, default=None, help="API port (GAUNTLET_API_PORT, default 8000)")
    serve.add_argument("--no-demo", action="store_true", help="start without running the four demo jobs")
    serve.set_defaults(handler=_serve)
