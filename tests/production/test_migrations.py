"""The migrations build exactly the schema the models describe, on SQLite and PostgreSQL, and go back down."""

from __future__ import annotations

import subprocess

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, inspect

import chargeshed.models  # noqa: F401  (every table in db.metadata)
from chargeshed.extensions import db
from tests.production.live import FLASK, ROOT, process_env, write_instance


def _flask(url: str, instance: str, *args: str) -> subprocess.CompletedProcess:
    result = subprocess.run(
        FLASK + list(args), env=process_env(url, instance), cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def _meaningful(diffs) -> list:
    """Differences that matter: tables, columns, indexes and constraints (not type spellings)."""
    kinds = {
        "add_table",
        "remove_table",
        "add_column",
        "remove_column",
        "add_index",
        "remove_index",
        "add_constraint",
        "remove_constraint",
        "add_fk",
        "remove_fk",
    }
    flat = []
    for diff in diffs:
        for item in diff if isinstance(diff, list) else [diff]:
            if item[0] in kinds:
                flat.append(item)
    return flat


def test_upgrade_matches_the_models_and_downgrade_removes_everything(db_url, tmp_path):
    instance = write_instance(str(tmp_path / "instance"))
    _flask(db_url, instance, "db", "upgrade", "heads")
    engine = create_engine(db_url)
    try:
        with engine.connect() as conn:
            diffs = compare_metadata(MigrationContext.configure(conn), db.metadata)
        assert _meaningful(diffs) == [], "models and migrations differ: " + repr(_meaningful(diffs))[:3000]
        _flask(db_url, instance, "db", "downgrade", "base")
        assert set(inspect(engine).get_table_names()) <= {"alembic_version"}
    finally:
        engine.dispose()
