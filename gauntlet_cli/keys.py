"""`gauntlet keys create|list|revoke`: API keys, administered directly in the service's database."""

import argparse
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.exc import OperationalError, ProgrammingError
from sqlalchemy.orm import Session

from app.settings import Settings, get_settings
from gauntlet_client.cli.common import Commands

NO_DATABASE = 4


class NoDatabase(Exception):
    """The configured database is missing or has no Gauntlet schema."""


def _where_to_run(settings: Settings) -> str:
    """What to do when the database is not there."""
    return (
        f"no Gauntlet database at {settings.resolved_database_url}. Run `gauntlet keys` from the folder "
        f"you started `gauntlet serve` (or `make serve`) in, which holds {settings.data_dir}/, or point "
        "GAUNTLET_DATA_DIR (embedded SQLite) or GAUNTLET_DATABASE_URL at the service's database; "
        "`gauntlet db upgrade` creates a new one."
    )


@contextmanager
def _session() -> Iterator[Session]:
    """A session on the service's database; NoDatabase when it is not there (nothing is created)."""
    from app.db import make_engine, make_session_factory, session_scope

    settings = get_settings()
    url = settings.resolved_database_url
    if url.startswith("sqlite:///") and not Path(url.removeprefix("sqlite:///")).is_file():
        raise NoDatabase(_where_to_run(settings))
    try:
        with session_scope(make_session_factory(make_engine(settings))) as session:
            yield session
    except (OperationalError, ProgrammingError) as exc:
        raise NoDatabase(f"{_where_to_run(settings)} ({type(exc.orig).__name__}: {exc.orig})") from exc


def _create(args: argparse.Namespace) -> int:
    """Create a tenant (if new) and print a new API key for it."""
    from app.auth import create_key

    with _session() as session:
        key = create_key(session, args.tenant)
    print(key)
    return 0


def _list(args: argparse.Namespace) -> int:
    """List keys (never the keys themselves: their ids, prefixes and tenants)."""
    from app.orm import ApiKey, Tenant

    with _session() as session:
        query = (
            select(ApiKey, Tenant.name)
            .join(Tenant, Tenant.id == ApiKey.tenant_id)
            .order_by(ApiKey.created_at)
        )
        if args.tenant:
            query = query.where(Tenant.name == args.tenant)
        rows = session.execute(query).all()
        lines = [
            f"{key.id}  {name}  {key.prefix}...  created {key.created_at:%Y-%m-%d %H:%M}"
            + (f"  revoked {key.revoked_at:%Y-%m-%d %H:%M}" if key.revoked_at else "")
            for key, name in rows
        ]
    print("\n".join(lines) if lines else "no keys")
    return 0


def _revoke(args: argparse.Namespace) -> int:
    """Revoke a key by its id or its prefix."""
    from app.orm import ApiKey

    with _session() as session:
        found = session.scalars(
            select(ApiKey).where((ApiKey.id == args.key) | (ApiKey.prefix == args.key[:10]))
        ).all()
        if len(found) != 1:
            print(f"no single key matches {args.key!r} ({len(found)} found)", file=sys.stderr)
            return 1
        found[0].revoked_at = found[0].revoked_at or datetime.now(UTC)
        cache = get_settings().api_key_cache_s
        within = f"; running API processes refuse it within {cache:g} s (GAUNTLET_API_KEY_CACHE_S)"
        print(f"revoked {found[0].id}{within if cache else ''}")
    return 0


def _guarded(handler: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """A keys command that says what to do, not a traceback, when the database is not there."""

    def run(args: argparse.Namespace) -> int:
        try:
            return handler(args)
        except NoDatabase as exc:
            print(f"error: {exc}", file=sys.stderr)
            return NO_DATABASE

    return run


def register(commands: Commands) -> None:
    """Add `keys create|list|revoke`."""
    keys = commands.add_parser("keys", help="manage API keys (on the service's database)").add_subparsers(
        dest="keys_command", required=True
    )
    create = keys.add_parser("create", help="create a key for a tenant and print it")
    create.add_argument("--tenant", required=True, help="tenant name (created if new)")
    create.set_defaults(handler=_guarded(_create))
    listing = keys.add_parser("list", help="list keys: id, tenant, prefix, created, revoked")
    listing.add_argument("--tenant", default=None, help="only this tenant's keys")
    listing.set_defaults(handler=_guarded(_list))
    revoke = keys.add_parser("revoke", help="revoke a key by its id or the key's first characters")
    revoke.add_argument("key", help="a key id (key_...) or the key itself / its first 10 characters")
    revoke.set_defaults(handler=_guarded(_revoke))
