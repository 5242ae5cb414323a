"""Alembic migrations and the SQLAlchemy models describe the same schema, on SQLite and Postgres."""

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, inspect

from app.migrate import upgrade
from app.orm import Base
from tests.services import create_database, drop_database, require_service


def _diff(url: str) -> list:
    upgrade(url)
    engine = create_engine(url)
    with engine.connect() as connection:
        diff = compare_metadata(MigrationContext.configure(connection), Base.metadata)
        tables = set(inspect(connection).get_table_names())
    engine.dispose()
    assert set(Base.metadata.tables) <= tables
    return diff


def test_migrations_match_models_on_sqlite(tmp_path):
    assert _diff(f"sqlite:///{tmp_path / 'schema.db'}") == []


@pytest.mark.service
def test_migrations_match_models_on_postgres():
    require_service("Postgres", "postgresql://127.0.0.1:5432", 5432)
    url = create_database()
    try:
        assert _diff(url) == []
    finally:
        drop_database(url)


def test_constraint_names_follow_the_convention(tmp_path):
    url = f"sqlite:///{tmp_path / 'names.db'}"
    upgrade(url)
    engine = create_engine(url)
    inspector = inspect(engine)
    unique = {c["name"] for c in inspector.get_unique_constraints("jobs")}
    assert "uq_jobs_tenant_id_idempotency_key" in unique
    foreign = {c["name"] for c in inspector.get_foreign_keys("jobs")}
    assert "fk_jobs_tenant_id_tenants" in foreign
    engine.dispose()
