"""The playground's runs, kept in SQLite so that a reload or a restart can reopen them."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import threading
from pathlib import Path
from typing import Any

__all__ = ["RunStore"]

_SCHEMA = """
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
"""
_COLUMNS = ("id", "created", "question", "settings", "state", "events", "result", "answer", "error")
_JSON_COLUMNS = ("settings", "events", "result")


class RunStore:
    """Runs by id: what was asked, with which models, what happened and what came out.

    One connection, used from worker threads one call at a time, so the event
    loop never waits on the disk.

    Args:
        path: The database file (its folder is created), or ``":memory:"``.
    """

    def __init__(self, path: str | Path) -> None:
        if str(path) != ":memory:":
            Path(path).expanduser().parent.mkdir(parents=True, exist_ok=True)
            path = Path(path).expanduser()
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(_SCHEMA)
        self._lock = threading.Lock()
        # A run still "running" in the file was cut off when its server stopped.
        self._db.execute("UPDATE runs SET state = 'interrupted' WHERE state = 'running'")

    def _run(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            return self._db.execute(sql, params).fetchall()

    async def create(self, run_id: str, created: float, question: str, settings: Any) -> None:
        """Record a run that is starting."""
        await asyncio.to_thread(
            self._run,
            "INSERT INTO runs (id, created, question, settings, state) VALUES (?, ?, ?, ?, ?)",
            (run_id, created, question, json.dumps(settings), "running"),
        )

    async def finish(
        self,
        run_id: str,
        *,
        state: str,
        events: list[dict[str, Any]],
        result: dict[str, Any] | None,
        answer: str,
        error: str | None,
    ) -> None:
        """Record how a run ended, with the events that led there."""
        await asyncio.to_thread(
            self._run,
            "UPDATE runs SET state = ?, events = ?, result = ?, answer = ?, error = ? WHERE id = ?",
            (
                state,
                json.dumps(events, ensure_ascii=False),
                None if result is None else json.dumps(result, ensure_ascii=False),
                answer,
                error,
                run_id,
            ),
        )

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
        rows = await asyncio.to_thread(
            self._run,
            "SELECT id, created, question, state, json_extract(result, '$.status'), "
            "json_extract(result, '$.failure_reason') FROM runs "
            "ORDER BY created DESC LIMIT ?",
            (limit,),
        )
        names = ("id", "created", "question", "state", "status", "failure_reason")
        return [dict(zip(names, row, strict=True)) for row in rows]

    def close(self) -> None:
        """Close the database."""
        with self._lock:
            self._db.close()
