"""Shared fixtures: an isolated store and data dir per test, one Prefect harness per session,
PostgreSQL when it answers."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

# Prefect settings must be in place before prefect is imported anywhere.
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "INFO")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("GENFACTORY_PROCESS_POOL", "0")
# In-process CLI runs use the session's Prefect test harness, never a local server of their own
# (the subprocess tests in test_engine_processes start one on purpose).
os.environ.setdefault("GENFACTORY_PREFECT_SERVER", "ephemeral")

from genfactory.storage.db import dispose_engines

POSTGRES_ADMIN_URL = os.environ.get(
    "GENFACTORY_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)


@pytest.fixture(autouse=True)
def isolated_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Every test gets its own data dir and SQLite store; no test sees the user's."""
    data = tmp_path / "data"
    monkeypatch.setenv("GENFACTORY_DATA_DIR", str(data))
    monkeypatch.setenv("GENFACTORY_DATABASE_URL", f"sqlite:///{data / 'store.sqlite3'}")
    for name in list(os.environ):
        if name.startswith("GENFACTORY_") and "__" in name:
            monkeypatch.delenv(name)
    yield data
    dispose_engines()


@pytest.fixture(scope="session")
def prefect_harness() -> Iterator[None]:
    """One ephemeral Prefect API for the whole session (it takes ~10 s to start)."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


def _postgres_available(url: str) -> str | None:
    try:
        import psycopg  # noqa: F401
        from sqlalchemy import create_engine, text

        engine = create_engine(url, connect_args={"connect_timeout": 3})
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        engine.dispose()
    except Exception as exc:  # pragma: no cover - depends on the machine
        return f"{exc.__class__.__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
    return None


@pytest.fixture(scope="session")
def postgres_server() -> str:
    """The admin URL of a reachable PostgreSQL; skipped (failed in CI) when there is none."""
    problem = _postgres_available(POSTGRES_ADMIN_URL)
    if problem:
        reason = f"PostgreSQL at {POSTGRES_ADMIN_URL} does not answer ({problem})"
        if os.environ.get("GENFACTORY_REQUIRE_POSTGRES") == "1":
            pytest.fail(reason + " and GENFACTORY_REQUIRE_POSTGRES=1")
        pytest.skip(reason)
    return POSTGRES_ADMIN_URL


@pytest.fixture
def postgres_store(postgres_server: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A fresh PostgreSQL database as this test's store, dropped afterwards."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    name = f"genfactory_test_{uuid.uuid4().hex[:10]}"
    admin = create_engine(postgres_server, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(postgres_server).set(database=name).render_as_string(hide_password=False)
    monkeypatch.setenv("GENFACTORY_DATABASE_URL", url)
    yield url
    dispose_engines()
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()
