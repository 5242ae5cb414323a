"""Run Alembic migrations programmatically (the only way the schema changes)."""

from pathlib import Path

from alembic import command
from alembic.config import Config

import migrations
from app.db import ensure_sqlite_folder


def alembic_config(database_url: str) -> Config:
    """An Alembic config pointing at the packaged migrations and the given database."""
    config = Config()
    config.set_main_option("script_location", str(Path(migrations.__file__).parent))
    config.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    return config


def upgrade(database_url: str, revision: str = "head") -> None:
    """Upgrade the database schema to a revision (head by default)."""
    ensure_sqlite_folder(database_url)
    command.upgrade(alembic_config(database_url), revision)
