"""The playground's runs, in one SQLite file that every server process on the machine shares.

A run's record (what was asked, with which models, how it ended) is a row
of ``runs``. While it goes, the process that drives it appends its events to
``run_events`` (the journal) and beats its row, so that a page served by any
other process can tail the journal; a stop asked in another process is a
flag on the row that the driver polls, and a page following from another
process is a row of ``run_followers``, so that the driver knows when the
last page has left. A run whose driver is gone (no process with its pid on
this host, or no beat for ``LEASE_S``) is marked ``interrupted``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, NamedTuple, TypeVar

__all__ = ["BEAT_S", "INTERRUPTED", "LEASE_S", "Control", "RunStore", "Tail", "compact"]

# The driver of a run and each page following it from another process beat
# every BEAT_S; one silent for LEASE_S is taken for gone.
BEAT_S = 2.0
LEASE_S = 20.0
# A finished run's journal is kept this long for pages still tailing it; the record stays.
JOURNAL_KEPT_S = 600.0
INTERRUPTED = "the server process running this run stopped before it finished"

_SCHEMA = (
    """
    CREATE TABLE IF NOT EXISTS runs (
        id TEXT PRIMARY KEY,
        created REAL NOT NULL,
        question TEXT NOT NULL,
        settings TEXT NOT NULL,
        state TEXT NOT NULL,
        events TEXT NOT NULL DEFAULT '[]',
        result TEXT,
        answer TEXT NOT NULL DEFAULT '',
        error TEXT
    )
    """,
    """
    CREATE TABLE IF NOT EXISTS run_events (
        run_id TEXT NOT NULL,
        seq INTEGER NOT NULL,
        event TEXT NOT NULL,
        PRIMARY KEY (run_id, seq)
    ) WITHOUT ROWID
    """,
    """
    CREATE TABLE IF NOT EXISTS run_followers (
        run_id TEXT NOT NULL,
        follower TEXT NOT NULL,
        beat REAL NOT NULL,
        PRIMARY KEY (run_id, follower)
    ) WITHOUT ROWID
    """,
)
# Columns that files written before the journal lack.
_DRIVER_COLUMNS = {
    "host": "TEXT",
    "pid": "INTEGER",
    "beat": "REAL",
    "stop": "INTEGER NOT NULL DEFAULT 0",
}
_COLUMNS = ("id", "created", "question", "settings", "state", "events", "result", "answer", "error")
_JSON_COLUMNS = ("settings", "events", "result")
_T = TypeVar("_T")
Event = dict[str, Any]
Journal = Sequence[tuple[int, str]]


class Control(NamedTuple):
    """What the driver of a run learns from the store: a stop asked, pages following elsewhere."""

    stop: bool
    followers: int


class Tail(NamedTuple):
    """The journal after a point, and the run's state when it was read."""

    events: list[tuple[int, Event]]
    state: str


def compact(events: Iterable[Event]) -> list[Event]:
    """Events as a page replays them: each token stream's text in its first entry."""
    replay: list[Event] = []
    streams: dict[tuple[str, str, str], Event] = {}
    for event in events:
        if event["type"] != "token":
            replay.append(event)
            continue
        key = (event["role"], event["model"], event["message_id"])
        entry = streams.get(key)
        if entry is None:
            streams[key] = entry = {**event, "text": ""}
            replay.append(entry)
        entry["text"] += event["text"]
    return replay


class RunStore:
    """Runs by id: what was asked, with which models, what happened and what came out.

    One connection per process, used from worker threads one call at a time,
    so the event loop never waits on the disk; SQLite's own locking orders
    the processes that share the file.

    Args:
        path: The database file (its folder is created), or ``":memory:"``.
    """

    def __init__(self, path: str | Path) -> None:
        if str(path) != ":memory:":
            Path(path).expanduser().parent.mkdir(parents=True, exist_ok=True)
            path = Path(path).expanduser()
        # A writer in another process holds the file for milliseconds; wait for it.
        self._db = sqlite3.connect(
            str(path), timeout=30, check_same_thread=False, isolation_level=None
        )
        self._db.execute("PRAGMA journal_mode=WAL")
        # WAL with NORMAL survives a crashed process; only a power cut may lose the last events.
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._lock = threading.Lock()
        self._transaction(self._migrate)
        self._reap()

    @staticmethod
    def _migrate(db: sqlite3.Connection) -> None:
        for statement in _SCHEMA:
            db.execute(statement)
        have = {row[1] for row in db.execute("PRAGMA table_info(runs)")}
        for name, kind in _DRIVER_COLUMNS.items():
            if name not in have:
                db.execute(f"ALTER TABLE runs ADD COLUMN {name} {kind}")

    def _run(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            return self._db.execute(sql, params).fetchall()

    def _transaction(self, work: Callable[[sqlite3.Connection], _T]) -> _T:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                done = work(self._db)
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")
            return done

    async def create(
        self,
        run_id: str,
        created: float,
        question: str,
        settings: Any,
        *,
        journal: Journal = (),
    ) -> None:
        """Record a run that is starting here, with the first rows of its journal."""

        def work(db: sqlite3.Connection) -> None:
            db.execute(
                "INSERT INTO runs (id, created, question, settings, state, host, pid, beat) "
                "VALUES (?, ?, ?, ?, 'running', ?, ?, ?)",
                (
                    run_id,
                    created,
                    question,
                    json.dumps(settings),
                    socket.gethostname(),
                    os.getpid(),
                    time.time(),
                ),
            )
            _append(db, run_id, journal)

        await asyncio.to_thread(self._transaction, work)

    async def sync(self, run_id: str, journal: Journal, *, beat: bool) -> Control:
        """Append the driver's journal rows (and its beat); say whether to stop, and who follows."""

        def work() -> Control:
            if journal or beat:
                self._transaction(lambda db: _write(db, run_id, journal, beat=beat))
            ((stop,),) = self._run("SELECT stop FROM runs WHERE id = ?", (run_id,))
            ((followers,),) = self._run(
                "SELECT count(*) FROM run_followers WHERE run_id = ? AND beat > ?",
                (run_id, time.time() - LEASE_S),
            )
            return Control(bool(stop), int(followers))

        return await asyncio.to_thread(work)

    async def finish(
        self,
        run_id: str,
        *,
        state: str,
        events: list[dict[str, Any]],
        result: dict[str, Any] | None,
        answer: str,
        error: str | None,
        journal: Journal = (),
    ) -> None:
        """Record how a run ended, with the events that led there and its journal's last rows."""
        now = time.time()

        def work(db: sqlite3.Connection) -> None:
            db.execute(
                "UPDATE runs SET state = ?, events = ?, result = ?, answer = ?, error = ?, "
                "beat = ? WHERE id = ?",
                (
                    state,
                    json.dumps(events, ensure_ascii=False),
                    None if result is None else json.dumps(result, ensure_ascii=False),
                    answer,
                    error,
                    now,
                    run_id,
                ),
            )
            _append(db, run_id, journal)
            # Pages still tailing a run read its journal to the end; later ones read the record.
            gone = "SELECT id FROM runs WHERE state <> 'running' AND beat < ?"
            for table in ("run_events", "run_followers"):
                db.execute(f"DELETE FROM {table} WHERE run_id IN ({gone})", (now - JOURNAL_KEPT_S,))

        await asyncio.to_thread(self._transaction, work)

    async def request_stop(self, run_id: str) -> bool:
        """Ask the process driving a run to stop it; ``False`` when it is not running."""

        def work(db: sqlite3.Connection) -> bool:
            if not _running(db, run_id, time.time()):
                return False
            db.execute("UPDATE runs SET stop = 1 WHERE id = ?", (run_id,))
            return True

        return await asyncio.to_thread(self._transaction, work)

    async def tail(self, run_id: str, after: int, follower: str, *, beat: bool) -> Tail:
        """The journal's rows after ``after`` for a page following from another process.

        With ``beat`` the follower says it is still there. A run whose driver
        is gone is marked interrupted here, and its state says so.
        """

        def work() -> Tail:
            now = time.time()
            if beat:
                self._run(
                    "INSERT OR REPLACE INTO run_followers (run_id, follower, beat) "
                    "VALUES (?, ?, ?)",
                    (run_id, follower, now),
                )
            # The state first: a run read as ended has its last rows in the journal already.
            rows = self._run("SELECT state, host, pid, beat FROM runs WHERE id = ?", (run_id,))
            if not rows:
                return Tail([], "missing")
            state, host, pid, last = rows[0]
            events = self._run(
                "SELECT seq, event FROM run_events WHERE run_id = ? AND seq > ? ORDER BY seq",
                (run_id, after),
            )
            if state == "running" and _gone(host, pid, last, now):
                state = "interrupted"
                self._check_running(run_id, now)
            return Tail([(seq, json.loads(event)) for seq, event in events], state)

        return await asyncio.to_thread(work)

    def leave_soon(self, run_id: str, follower: str) -> None:
        """Forget a page that followed from here, on a worker thread, without waiting for it.

        Callable from a ``finally`` whose task is being cancelled; a row left
        behind by a failed write lapses after ``LEASE_S``.
        """

        def work() -> None:
            with contextlib.suppress(sqlite3.Error):
                self._run(
                    "DELETE FROM run_followers WHERE run_id = ? AND follower = ?",
                    (run_id, follower),
                )

        with contextlib.suppress(RuntimeError):  # no loop left: the row lapses
            asyncio.get_running_loop().run_in_executor(None, work)

    async def get(self, run_id: str) -> dict[str, Any] | None:
        """One run, whole; ``None`` when there is no such run."""
        rows = await asyncio.to_thread(
            self._run, f"SELECT {', '.join(_COLUMNS)} FROM runs WHERE id = ?", (run_id,)
        )
        if not rows:
            return None
        record = dict(zip(_COLUMNS, rows[0], strict=True))
        for column in _JSON_COLUMNS:
            if record[column] is not None:
                record[column] = json.loads(record[column])
        return record

    async def recent(self, limit: int = 100) -> list[dict[str, Any]]:
        """The latest runs, newest first, without their events and results."""

        def work() -> list[tuple[Any, ...]]:
            self._reap()
            return self._run(
                "SELECT id, created, question, state, json_extract(result, '$.status'), "
                "json_extract(result, '$.failure_reason') FROM runs "
                "ORDER BY created DESC LIMIT ?",
                (limit,),
            )

        rows = await asyncio.to_thread(work)
        names = ("id", "created", "question", "state", "status", "failure_reason")
        return [dict(zip(names, row, strict=True)) for row in rows]

    def _reap(self) -> None:
        """Mark interrupted every run whose driver is gone (a server stopped or killed)."""
        now = time.time()
        running = self._run("SELECT id, host, pid, beat FROM runs WHERE state = 'running'")
        for run_id, host, pid, beat in running:
            if _gone(host, pid, beat, now):
                self._check_running(run_id, now)

    def _check_running(self, run_id: str, now: float) -> bool:
        return self._transaction(lambda db: _running(db, run_id, now))

    def close(self) -> None:
        """Close the database."""
        with self._lock:
            self._db.close()


def _append(db: sqlite3.Connection, run_id: str, journal: Journal) -> None:
    # OR IGNORE: a write retried after an error may repeat rows that landed.
    db.executemany(
        "INSERT OR IGNORE INTO run_events (run_id, seq, event) VALUES (?, ?, ?)",
        [(run_id, seq, event) for seq, event in journal],
    )


def _write(db: sqlite3.Connection, run_id: str, journal: Journal, *, beat: bool) -> None:
    _append(db, run_id, journal)
    if beat:
        db.execute("UPDATE runs SET beat = ? WHERE id = ?", (time.time(), run_id))


def _running(db: sqlite3.Connection, run_id: str, now: float) -> bool:
    """Whether a run is running; one whose driver is gone is marked interrupted first."""
    rows = db.execute("SELECT state, host, pid, beat FROM runs WHERE id = ?", (run_id,)).fetchall()
    if not rows or rows[0][0] != "running":
        return False
    _, host, pid, beat = rows[0]
    if not _gone(host, pid, beat, now):
        return True
    journal = db.execute(
        "SELECT event FROM run_events WHERE run_id = ? ORDER BY seq", (run_id,)
    ).fetchall()
    replay = compact(json.loads(event) for (event,) in journal)
    db.execute(
        "UPDATE runs SET state = 'interrupted', error = ?, events = ?, beat = ? WHERE id = ?",
        (INTERRUPTED, json.dumps(replay, ensure_ascii=False), now, run_id),
    )
    return False


def _gone(host: str | None, pid: int | None, beat: float | None, now: float) -> bool:
    """Whether a run's driver is gone: no beat for ``LEASE_S``, or no such process here."""
    if beat is None or pid is None or now - beat > LEASE_S:
        return True
    if host != socket.gethostname():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # a process of another user's: alive
        return False
    return False
