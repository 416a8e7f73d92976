"""What every part of the repository shares: its sessions, its two errors, and the row
helpers (one row by id, a row as a record, the compare-and-set of a status).

Transactions are short (one `with self._writing() as s` each) so many concurrent slots can
write to SQLite without "database is locked".
"""

from __future__ import annotations

from collections.abc import Collection, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Generic, TypeVar, cast

from sqlalchemy import (
    ClauseElement,
    ColumnElement,
    Connection,
    Engine,
    RowMapping,
    Select,
    Table,
    Update,
    bindparam,
    select,
    update,
)
from sqlalchemy.orm import Session, sessionmaker

from genfactory.errors import UserError
from genfactory.statuses import allowed
from genfactory.storage.models import Base, column_keys, column_names

M = TypeVar("M", bound=Base)


class NotFound(UserError):
    """No row with that id ("job 12 does not exist"): the user named something not there."""

    code = "not_found"


class TransitionError(RuntimeError):
    """A status change the state machine refuses, or one whose row was not in the expected
    status (another process changed it first)."""


S = TypeVar("S", bound="StoreBase")


class StoreBase:
    """Transactions over one store's engine: write transactions (BEGIN IMMEDIATE on SQLite:
    writers queue up front) and read transactions (a plain BEGIN on SQLite, so readers never
    wait for the write lock; WAL lets them read beside a writer), each in an ORM session
    (`_writing`, `_reading`) or on a plain connection (`_write_tx`, `_read_tx`, the steps'
    hot path)."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._read_engine = engine.execution_options(genfactory_read_only=True)
        self._writes = sessionmaker(engine, expire_on_commit=False)
        self._reads = sessionmaker(self._read_engine, expire_on_commit=False)

    @classmethod
    def over_engine(cls: type[S], engine: Engine) -> S:
        """A repository over `engine` (already migrated: see `db.upgrade`)."""
        return cls(engine)

    @contextmanager
    def _writing(self) -> Iterator[Session]:
        """A short write transaction in an ORM session."""
        with self._writes() as session, session.begin():
            yield session

    @contextmanager
    def _reading(self) -> Iterator[Session]:
        """A short read transaction in an ORM session."""
        with self._reads() as session, session.begin():
            yield session

    @contextmanager
    def _write_tx(self) -> Iterator[Connection]:
        """A short write transaction on a plain connection: the hot path of the steps, without
        an ORM session's per-transaction work."""
        with self._engine.begin() as connection:
            yield connection

    @contextmanager
    def _read_tx(self) -> Iterator[Connection]:
        """A short read transaction on a plain connection (see `_write_tx`)."""
        with self._read_engine.connect() as connection, connection.begin():
            yield connection

    def _open_rows(
        self, model: type[M], execution_id: int, statuses: Collection[str], *order: Any
    ) -> list[M]:
        """The rows of `model` (slots or images) of one execution in one of `statuses`, in
        `order`."""
        rows = model.__table__.c
        query = select(model).where(rows.execution_id == execution_id, rows.status.in_(statuses))
        with self._reading() as s:
            return list(s.scalars(query.order_by(*order)))


def get_row(session: Session, model: type[M], row_id: int, what: str) -> M:
    """The row `row_id` of `model`, loaded in `session`; NotFound names it as `what`."""
    row = session.get(model, row_id)
    if row is None:
        raise NotFound(f"{what} {row_id} does not exist")
    return row


_LABELLED: dict[type[Base], tuple[ColumnElement[Any], ...]] = {}


def labelled_columns(model: type[Base]) -> tuple[ColumnElement[Any], ...]:
    """Every table column of `model`, labelled by attribute name."""
    if model not in _LABELLED:
        table = model.__table__
        _LABELLED[model] = tuple(
            table.c[name].label(key) for key, name in column_names(model).items()
        )
    return _LABELLED[model]


def record_from_row(model: type[M], row: RowMapping) -> M:
    """A record (a detached `model` instance) from a Core row labelled by attribute name.
    Built as the ORM builds the instances it loads (a new instance, its columns written to its
    dict), not through the constructor, whose attribute events cost ~15 times more."""
    record = cast(M, model.__mapper__.class_manager.new_instance())
    record.__dict__.update({key: row[key] for key in column_keys(model)})
    return record


_BY_ID: dict[type[Any], Select[Any]] = {}


def _select_by_id(model: type[Any]) -> Select[Any]:
    """`SELECT <the record's columns> WHERE id = :row_id`, built once per model: a statement
    built anew per call costs SQLAlchemy its cache key each time (~0.15 ms)."""
    statement = _BY_ID.get(model)
    if statement is None:
        statement = select(*labelled_columns(model)).where(
            model.__table__.c.id == bindparam("row_id")
        )
        _BY_ID[model] = statement
    return statement


def connection_of(session: Session | Connection) -> Connection:
    """The connection a Core statement runs on: the session's, or the connection itself."""
    return session.connection() if isinstance(session, Session) else session


def fetch(session: Session | Connection, model: type[M], row_id: int, what: str) -> M:
    """One row as a record, by a Core select on the session's connection: the hot path of
    every step skips the ORM's per-statement work."""
    row = connection_of(session).execute(_select_by_id(model), {"row_id": row_id}).first()
    if row is None:
        raise NotFound(f"{what} {row_id} does not exist")
    return record_from_row(model, row._mapping)


_UPDATES: dict[tuple[Any, ...], Update] = {}


def _update_statement(
    model: type[Base], values: dict[str, Any], expected: int, returning: bool
) -> tuple[Update, dict[str, Any]]:
    """`UPDATE <table> SET values WHERE id = :_row_id` (the table, not the ORM entity: no
    session synchronisation for a row no session holds), `AND status IN (:_expected_0, …)`
    for `expected` statuses (a compare-and-set), with RETURNING every column, labelled, if
    `returning`; and the values' parameters (`_v_<name>`). Built once per shape (model,
    columns, expected, returning): a statement built anew per call costs SQLAlchemy its cache
    key each time. A value that is an SQL expression (attempts + 1) is used as given, in a
    statement of its own."""
    sql = {k: v for k, v in values.items() if isinstance(v, ClauseElement)}
    params = {f"_v_{k}": v for k, v in values.items() if k not in sql}
    key = (model, tuple(sorted(values)), expected, returning)
    statement = None if sql else _UPDATES.get(key)
    if statement is None:
        rows = cast(Table, model.__table__)
        names = column_names(model)
        condition = [rows.c.id == bindparam("_row_id")]
        if expected:
            condition.append(
                rows.c.status.in_([bindparam(f"_expected_{i}") for i in range(expected)])
            )
        statement = (
            update(rows)
            .where(*condition)
            .values(
                {
                    names[k]: sql.get(k, bindparam(f"_v_{k}", type_=rows.c[names[k]].type))
                    for k in values
                }
            )
        )
        if returning:
            statement = statement.returning(*labelled_columns(model))
        if not sql:
            _UPDATES[key] = statement
    return statement, params


@dataclass(frozen=True)
class StatusChange(Generic[M]):
    """One compare-and-set of a row's status: row `row_id` of `model` goes from `expected`
    to `new` (checked against the state machine `table`), setting `values` with it; `what`
    names the row in errors ("image 12 ...")."""

    model: type[M]
    table: dict[Any, frozenset[Any]]
    row_id: int
    expected: str | Collection[str]
    new: str
    what: str
    values: dict[str, Any]

    def statement(self, *, returning: bool = False) -> tuple[Any, dict[str, Any], set[str]]:
        """`UPDATE … WHERE id = ? AND status IN expected` (prebuilt per shape: see
        `_update_statement`) and its parameters, and the expected statuses."""
        expected_set = {self.expected} if isinstance(self.expected, str) else set(self.expected)
        for current in expected_set:
            if not allowed(self.table, current, self.new):
                raise TransitionError(
                    f"{self.what} {self.row_id}: {current} -> {self.new} is not a status change"
                )
        values = {"status": self.new, **self.values}
        statement, params = _update_statement(self.model, values, len(expected_set), returning)
        params["_row_id"] = self.row_id
        params.update({f"_expected_{i}": status for i, status in enumerate(sorted(expected_set))})
        return statement, params, expected_set

    def refused(self, session: Session | Connection, expected: set[str]) -> Exception:
        """The error for an update that changed no row: NotFound or TransitionError."""
        rows = self.model.__table__
        query = select(rows.c.status).where(rows.c.id == self.row_id)
        found = connection_of(session).execute(query).scalar()
        if found is None:
            return NotFound(f"{self.what} {self.row_id} does not exist")
        return TransitionError(
            f"{self.what} {self.row_id} is {found}, expected {' or '.join(sorted(expected))}"
            f" (to become {self.new})"
        )


def update_row(
    session: Session | Connection, model: type[Base], row_id: int, values: dict[str, Any]
) -> None:
    """Set `values` on row `row_id` of `model` (nothing when there is no such row)."""
    statement, params = _update_statement(model, values, 0, False)
    connection_of(session).execute(statement, {**params, "_row_id": row_id})


def update_returning(
    session: Session | Connection, model: type[M], row_id: int, what: str, values: dict[str, Any]
) -> M:
    """Set `values` on row `row_id` and return it as a record (`UPDATE … RETURNING`; the
    ORM's load-modify-flush costs several times more); NotFound names it as `what`."""
    statement, params = _update_statement(model, values, 0, True)
    first = connection_of(session).execute(statement, {**params, "_row_id": row_id}).first()
    if first is None:
        raise NotFound(f"{what} {row_id} does not exist")
    return record_from_row(model, first._mapping)


def cas(session: Session | Connection, change: StatusChange[Any]) -> None:
    """Compare-and-set one row's status: `UPDATE … WHERE id = ? AND status IN expected`;
    TransitionError when the row was not `expected`, NotFound when there is no such row."""
    statement, params, expected_set = change.statement()
    if connection_of(session).execute(statement, params).rowcount != 1:
        raise change.refused(session, expected_set)


def cas_returning(session: Session | Connection, change: StatusChange[M]) -> M:
    """`cas`, returning the updated row as a record (UPDATE … RETURNING)."""
    statement, params, expected_set = change.statement(returning=True)
    row = connection_of(session).execute(statement, params).first()
    if row is None:
        raise change.refused(session, expected_set)
    return record_from_row(change.model, row._mapping)
