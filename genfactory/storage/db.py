"""Engine creation, SQLite tuning, and automatic Alembic upgrades on start."""

from __future__ import annotations

import os
import re
import threading
from pathlib import Path
from typing import Any

import platformdirs
from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.pool import QueuePool

from genfactory.errors import ConfigError

_engines: dict[str, Engine] = {}
_lock = threading.Lock()

MIGRATIONS_DIR = Path(__file__).with_name("migrations")
#: Held while migrating on PostgreSQL, so several workers starting at once migrate once.
_PG_MIGRATION_LOCK = 7_311_042


def data_dir() -> Path:
    """Where the store, temp files, outputs and logs live unless configured otherwise."""
    configured = os.environ.get("GENFACTORY_DATA_DIR", "").strip()
    path = (
        Path(configured).expanduser()
        if configured
        else Path(platformdirs.user_data_dir("genfactory"))
    )
    return path


def database_url() -> str:
    url = os.environ.get("GENFACTORY_DATABASE_URL", "").strip()
    if url:
        return url
    return f"sqlite:///{data_dir() / 'genfactory.sqlite3'}"


def describe_url(url: str) -> str:
    """The URL without its password, for messages and the CLI."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return "<unparseable database URL>"


def _configure_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy's "begin" event issue BEGIN itself (pysqlite's implicit BEGIN is
        # DEFERRED, which fails with "database is locked" when a reader upgrades to writer).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA busy_timeout=60000")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        read_only = conn.get_execution_options().get("genfactory_read_only", False)
        conn.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")


def create_store_engine(url: str) -> Engine:
    """A new engine for `url`, tuned for many concurrent short writes."""
    try:
        parsed = make_url(url)
    except Exception:
        raise ConfigError(
            f"GENFACTORY_DATABASE_URL {url!r} is not a database URL; "
            "e.g. postgresql+psycopg://user@host/db or sqlite:////path/store.sqlite3"
        ) from None
    if parsed.get_backend_name() == "sqlite":
        database = parsed.database or ""
        if database and database != ":memory:":
            Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(
            url,
            connect_args={"check_same_thread": False, "timeout": 60},
            # Pooled: opening a connection (and its PRAGMAs) per transaction cost more CPU than
            # the transaction. A pooled pysqlite connection serves one thread at a time.
            poolclass=QueuePool,
            pool_size=8,
            max_overflow=64,
        )
        _configure_sqlite(engine)
        return engine
    if parsed.get_backend_name() == "postgresql" and parsed.drivername == "postgresql":
        parsed = parsed.set(drivername="postgresql+psycopg")
    return create_engine(parsed, pool_pre_ping=True, pool_size=5, max_overflow=64)


_REVISION = re.compile(r"""^(down_revision|revision)\b[^=]*=\s*(?:None|["']([^"']+)["'])""", re.M)


def migration_head() -> str | None:
    """The newest migration's revision, read from the files in migrations/versions without
    Alembic; None when any file does not name its revisions plainly or there is not exactly
    one head (then `upgrade` asks Alembic)."""
    revisions: set[str] = set()
    parents: set[str] = set()
    for path in sorted((MIGRATIONS_DIR / "versions").glob("*.py")):
        pairs = _REVISION.findall(path.read_text())
        found = dict(pairs)
        if len(pairs) != 2 or set(found) != {"revision", "down_revision"} or not found["revision"]:
            return None
        revisions.add(found["revision"])
        if found["down_revision"]:
            parents.add(found["down_revision"])
    heads = revisions - parents
    return heads.pop() if len(heads) == 1 else None


def _at_head(engine: Engine) -> bool:
    """Whether the store is at the newest migration already: one query, so that a command
    on an up-to-date store does not import Alembic (~0.2 s of every start)."""
    head = migration_head()
    if head is None:
        return False
    try:
        with engine.execution_options(genfactory_read_only=True).connect() as connection:
            current = connection.execute(text("SELECT version_num FROM alembic_version")).all()
    except Exception:  # no table yet: a new store
        return False
    return [row[0] for row in current] == [head]


def upgrade(engine: Engine) -> None:
    """Apply every Alembic migration not yet applied."""
    if _at_head(engine):
        return
    from alembic import command
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    with engine.connect() as connection:
        sqlite = engine.dialect.name == "sqlite"
        if sqlite:
            # A migration that rebuilds a table (SQLite's batch mode: copy, DROP, rename) must
            # not cascade the DROP to the rows that reference it; the pragma only takes effect
            # outside a transaction, so it is set on the driver connection before BEGIN.
            connection.connection.driver_connection.execute("PRAGMA foreign_keys=OFF")  # type: ignore[union-attr]
        try:
            with connection.begin():
                if engine.dialect.name == "postgresql":
                    connection.execute(
                        text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_MIGRATION_LOCK}
                    )
                cfg.attributes["connection"] = connection
                command.upgrade(cfg, "head")
                if sqlite:
                    broken = connection.exec_driver_sql("PRAGMA foreign_key_check").first()
                    if broken is not None:
                        raise RuntimeError(f"a migration broke a foreign key: {tuple(broken)}")
        finally:
            if sqlite:
                connection.connection.driver_connection.execute("PRAGMA foreign_keys=ON")  # type: ignore[union-attr]


def get_engine(url: str | None = None) -> Engine:
    """The process-wide engine for `url` (default: the configured store), migrated to head."""
    url = url or database_url()
    with _lock:
        engine = _engines.get(url)
        if engine is None:
            engine = create_store_engine(url)
            try:
                upgrade(engine)
            except Exception as exc:
                engine.dispose()
                raise ConfigError(
                    f"the store at {describe_url(url)} cannot be opened: {exc.__class__.__name__}: "
                    f"{str(exc).splitlines()[0] if str(exc) else ''}"
                ) from exc
            _engines[url] = engine
        return engine


def dispose_engines() -> None:
    """Close every pooled connection (tests, process exit)."""
    with _lock:
        for engine in _engines.values():
            engine.dispose()
        _engines.clear()


def store_exists(url: str | None = None) -> bool:
    """False when the store is a SQLite file that does not exist yet: read-only commands then
    answer "nothing there" instead of creating it."""
    url = url or database_url()
    try:
        parsed = make_url(url)
    except Exception:
        return True  # get_engine names the problem
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return True
    return Path(str(parsed.database)).expanduser().exists()
