"""The store writer's hot statements, compiled once from the table metadata and run on the
driver's cursor (see :class:`Statements`)."""

from __future__ import annotations

import functools
import operator
from collections.abc import Callable

from sqlalchemy import func, select

from engine.store.schema import channel_runs, deliveries, messages

_MULTI_MAX = 128  # rows per multi-row INSERT on SQLite (x 24 columns: under its 32766 limit)


def _compiled_insert(table, dialect, with_id: bool = False, cols=None):
    """INSERT for ``table`` compiled once: (sql, positional key order or None for named).

    ``cols`` limits it to the columns given (the others take their server defaults)."""
    cols = cols or [c.name for c in table.columns if with_id or c.name != "id"]
    compiled = table.insert().compile(dialect=dialect, column_keys=cols)
    if compiled.positional:
        return str(compiled), tuple(compiled.positiontup)
    return str(compiled), _Named(cols)


class _Named(tuple):
    """The parameter names of a statement in the named (pyformat) style."""


def _params(rows: list[dict], order):
    """Driver parameters: tuples in order (qmark), or dicts with every name (a column a row
    leaves out is NULL, as in the positional style)."""
    if order is None:
        return rows
    if isinstance(order, _Named):
        return [{k: row.get(k) for k in order} for row in rows]
    get = _getter(order)
    try:
        return [get(row) for row in rows]  # every column present (intake's rows): in C
    except KeyError:
        return [tuple(row.get(k) for k in order) for row in rows]


@functools.lru_cache(maxsize=32)
def _getter(order: tuple) -> Callable:
    return operator.itemgetter(*order) if len(order) > 1 else lambda row: (row[order[0]],)


class Statements:
    """The writer's hot statements, compiled once from the table metadata and run on the
    driver's cursor (executemany, or multi-row INSERTs on SQLite): SQLAlchemy's per-call
    compile, parameter processing and multi-row RETURNING cost more than SQLite itself here
    (bench/, py-spy).

    Ids are allocated up front: from a sequence on PostgreSQL, from a counter on SQLite, whose
    store has exactly one writing connection by design (the store writer's, used by its
    thread or, for an inline commit, by the event loop; never both at once).
    """

    def __init__(self, conn):
        dialect = conn.dialect
        self.sqlite = dialect.name == "sqlite"
        self.insert_sql, self.order = _compiled_insert(messages, dialect, with_id=True)
        self.dialect = dialect
        self.child_tables = {"_runs": channel_runs, "_deliveries": deliveries}
        self.child_sql: dict[tuple, tuple] = {}  # (key, columns) -> compiled insert
        self._multi: dict[tuple[str, int], str] = {}  # (insert, rows) -> multi-row insert
        self._compiled: dict[int, tuple] = {}  # id(statement) -> (statement, sql, order)
        m = messages.c
        select_sql = select(
            m.dedup_key, m.id, m.received_at, m.ack, m.status, m.ack_code, m.body_hash
        )
        self.lookup_head = str(select_sql.compile(dialect=dialect)) + " WHERE control_id "
        self.lookup_tail = " ORDER BY id"
        self._in_cache: dict[int, str] = {}
        if self.sqlite:
            self.next_id = (conn.execute(select(func.max(m.id))).scalar() or 0) + 1
        else:
            self.sequence = conn.exec_driver_sql(
                "SELECT pg_get_serial_sequence('messages', 'id')"
            ).scalar()

    def ids(self, cur, n: int) -> list[int]:
        if self.sqlite:
            first = self.next_id
            self.next_id += n
            return list(range(first, first + n))
        cur.execute(
            "SELECT nextval(%(seq)s) FROM generate_series(1, %(n)s)", {"seq": self.sequence, "n": n}
        )
        return [r[0] for r in cur.fetchall()]

    def insert(self, cur, rows: list[dict]) -> list[int]:
        ids = self.ids(cur, len(rows))
        for row, i in zip(rows, ids, strict=True):
            row["id"] = i
        self._insert_rows(cur, self.insert_sql, self.order, rows)
        return ids

    def _insert_rows(self, cur, sql: str, order, rows: list[dict]) -> None:
        """INSERT ``rows``. On SQLite, as multi-row INSERTs of power-of-two sizes (a batch of
        30 is 16 + 8 + 4 + 2): executemany steps once per row and takes the GIL back each
        time, which the reactor thread holds for long stretches under load (a convoy that
        doubled the batch's wall time, bench/mllp_intake.py at 8x8). Few sizes keep the
        driver's statement cache warm."""
        if not self.sqlite or isinstance(order, _Named) or len(rows) == 1:
            cur.executemany(sql, _params(rows, order))
            return
        params = _params(rows, order)
        i = 0
        while i < len(rows):
            n = min(_MULTI_MAX, 1 << ((len(rows) - i).bit_length() - 1))
            key = (sql, n)
            text = self._multi.get(key)
            if text is None:
                head, _, values = sql.partition(" VALUES ")
                # OR FAIL: a multi-row INSERT that may abort half-way otherwise keeps a
                # statement journal, which SQLite spilled to a temporary file on every
                # batch (open, writes, unlink: 52 extra writes for 60 rows, strace). Any
                # error here rolls the whole transaction back anyway (StoreWriter).
                if head.startswith("INSERT INTO "):
                    head = "INSERT OR FAIL INTO " + head[len("INSERT INTO ") :]
                text = self._multi[key] = f"{head} VALUES {', '.join([values] * n)}"
            flat = [v for row in params[i : i + n] for v in row]
            cur.execute(text, flat)
            i += n

    def insert_children(self, cur, rows: list[dict]) -> None:
        """channel_runs and deliveries of the inserted messages (ids set by insert)."""
        for key, table in self.child_tables.items():
            children = []
            for row in rows:
                for child in row.get(key) or ():
                    child["message_id"] = row["id"]
                    children.append(child)
            if not children:
                continue
            cols = tuple(children[0])
            compiled = self.child_sql.get((key, cols))
            if compiled is None:
                compiled = _compiled_insert(table, self.dialect, cols=list(cols))
                self.child_sql[(key, cols)] = compiled
            sql, order = compiled
            self._insert_rows(cur, sql, order, children)

    def execute(self, cur, stmt, params: list[dict]) -> None:
        """Run ``stmt`` for each parameter dict: compiled once, then the driver's executemany."""
        compiled = self._compiled.get(id(stmt))
        if compiled is None:
            c = stmt.compile(dialect=self.dialect, column_keys=list(params[0]))
            order = tuple(c.positiontup) if c.positional else None
            defaults = {k: v for k, v in c.params.items() if k not in params[0]}
            compiled = self._compiled[id(stmt)] = (stmt, str(c), order, defaults)
        _, text, order, defaults = compiled
        if defaults:  # literal values of the statement (claimed_by=None) are parameters too
            params = [{**defaults, **p} for p in params]
        cur.executemany(text, _params(params, order))

    def lookup(self, cur, control_ids: list[str]) -> list[tuple]:
        """(dedup_key, id, received_at, ack, status, ack_code, body_hash) of the rows with these
        control ids, oldest first: found through ix_messages_control_id (there is no index on
        dedup_key, migration 0005); the caller keeps those whose dedup_key it asked for."""
        if self.sqlite:
            sql = self._in_cache.get(len(control_ids))
            if sql is None:
                placeholders = ",".join("?" * len(control_ids))
                sql = f"{self.lookup_head}IN ({placeholders}){self.lookup_tail}"
                self._in_cache[len(control_ids)] = sql
            cur.execute(sql, tuple(control_ids))
            return cur.fetchall()
        cur.execute(f"{self.lookup_head}= ANY(%(keys)s){self.lookup_tail}", {"keys": control_ids})
        return cur.fetchall()
