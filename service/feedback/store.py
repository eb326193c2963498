"""Where answers wait for their labels: one small interface, SQLite or PostgreSQL behind it.

An answered prediction is one row once a label asks for it (until then it waits in the memory
of the worker that gave it, recorder.py): the request id and item, the model, when, which side
answered, each side's version and answer (a label in the answers' words, or a price), the input
(only with DLWP_FEEDBACK_KEEP_INPUTS=true) and the label. Rows without a label (a label that was
refused) are kept for a bounded window (`max_answers` rows and `max_age_s` seconds, whichever is
reached first); labelled rows are the examples `dlwp feedback export` writes, and stay.
`dlwp_wanted` holds the request ids labels are waiting for, until their answers are written.

SQLite (the default): one file in the state folder, shared by the workers of one host (WAL
journal, so readers never wait for the writer). PostgreSQL (`DLWP_FEEDBACK_DB=postgresql://…`,
the `postgres` extra): one store for replicas on several hosts. The SQL is the same for both.

Not thread-safe: a store is used from one thread (the recorder's, `recorder.py`).
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

FEEDBACK_FILE = "feedback.sqlite3"

_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS dlwp_answers (
        request_id TEXT NOT NULL,
        item INTEGER NOT NULL,
        model TEXT NOT NULL,
        created DOUBLE PRECISION NOT NULL,
        answered_by TEXT NOT NULL,
        rollout TEXT,
        serving_version INTEGER,
        serving_answer TEXT,
        candidate_version INTEGER,
        candidate_answer TEXT,
        input TEXT,
        label TEXT,
        labelled_at DOUBLE PRECISION,
        PRIMARY KEY (request_id, item)
    )""",
    "CREATE INDEX IF NOT EXISTS dlwp_answers_created ON dlwp_answers (created)",
    "CREATE INDEX IF NOT EXISTS dlwp_answers_rollout ON dlwp_answers (rollout)",
    "CREATE INDEX IF NOT EXISTS dlwp_answers_labelled ON dlwp_answers (model, labelled_at)",
    # Answers a label is waiting for, asked of the workers that hold them (recorder.py).
    """CREATE TABLE IF NOT EXISTS dlwp_wanted (
        request_id TEXT PRIMARY KEY,
        asked DOUBLE PRECISION NOT NULL
    )""",
)
WANTED_FOR_S = 60.0  # a wanted row outlives its asker's wait (a crashed asker) this long at most
# The columns an answer is written with, in a row's order, and their SQL types.
_COLUMNS = {
    "request_id": "TEXT", "item": "INTEGER", "model": "TEXT", "created": "DOUBLE PRECISION",
    "answered_by": "TEXT", "rollout": "TEXT", "serving_version": "INTEGER",
    "serving_answer": "TEXT", "candidate_version": "INTEGER", "candidate_answer": "TEXT",
    "input": "TEXT",
}  # fmt: skip
COLUMNS = tuple(_COLUMNS)


@dataclass(frozen=True)
class Answer:
    """One prediction as it was answered (and, in a rollout, as the other side computed it)."""

    request_id: str
    item: int
    model: str
    created: float
    answered_by: str  # "serving" or "candidate"
    rollout: str | None
    serving_version: int | None
    serving_answer: str | None
    candidate_version: int | None = None
    candidate_answer: str | None = None
    input: str | None = None  # JSON, only when inputs are kept
    label: str | None = None
    labelled_at: float | None = None


class FeedbackStore:
    """The answers table over a DB-API connection (sqlite3 or psycopg)."""

    def __init__(
        self, connection: Any, placeholder: str, max_answers: int, max_age_s: float, rows_of: str
    ):
        """`rows_of`: the table function that turns a JSON array parameter into one row per
        element with its element in a column `value` (SQLite's json_each, PostgreSQL's
        json_array_elements)."""
        self._db = connection
        self._p = placeholder
        self.max_answers = max_answers
        self.max_age_s = max_age_s
        values = ", ".join(
            f"CAST(value ->> {i} AS {kind})" for i, kind in enumerate(_COLUMNS.values())
        )
        updates = ", ".join(f"{c} = excluded.{c}" for c in list(_COLUMNS)[2:])
        # WHERE true: SQLite's grammar needs it between a SELECT and ON CONFLICT.
        self._insert = (
            f"INSERT INTO dlwp_answers ({', '.join(_COLUMNS)}) SELECT {values} "
            f"FROM {rows_of} WHERE true ON CONFLICT (request_id, item) "
            f"DO UPDATE SET {updates}, label = NULL, labelled_at = NULL"
        )
        for statement in _SCHEMA:
            self._execute(statement)
        self._db.commit()

    def _sql(self, statement: str) -> str:
        return statement.replace("?", self._p)

    def _execute(self, statement: str, parameters: Sequence[Any] = ()) -> Any:
        cursor = self._db.cursor()
        cursor.execute(self._sql(statement), tuple(parameters))
        return cursor

    def record(self, rows: Sequence[Sequence[Any]]) -> None:
        """Add answers, each a row of `COLUMNS` values (a request id and item seen again replace
        the earlier answer: the last one in `rows` wins).

        One statement for the lot, its rows passed as one JSON array: the database parses and
        inserts them without coming back to Python (and for the GIL) once a row.
        """
        unique = {(row[0], row[1]): row for row in rows}
        if unique:
            self._execute(self._insert, (json.dumps(list(unique.values())),))
            self._db.commit()

    def want(self, request_id: str) -> None:
        """Ask the workers that hold answer `request_id` in memory to write it here."""
        self._execute(
            "INSERT INTO dlwp_wanted (request_id, asked) VALUES (?, ?) "
            "ON CONFLICT (request_id) DO NOTHING",
            (request_id, time.time()),
        )
        self._db.commit()

    def unwant(self, request_id: str) -> None:
        self._execute("DELETE FROM dlwp_wanted WHERE request_id = ?", (request_id,))
        self._db.commit()

    def wanted(self) -> list[str]:
        """The request ids labels are waiting for (usually none: one cheap read)."""
        cursor = self._execute("SELECT request_id FROM dlwp_wanted")
        found = [row[0] for row in cursor.fetchall()]
        self._db.commit()  # PostgreSQL: end the read's transaction, see the next asks
        return found

    def find(self, request_id: str, item: int) -> Answer | None:
        cursor = self._execute(
            "SELECT * FROM dlwp_answers WHERE request_id = ? AND item = ?", (request_id, item)
        )
        row = cursor.fetchone()
        if row is None:
            return None
        names = [d[0] for d in cursor.description]
        return Answer(**dict(zip(names, row, strict=True)))

    def label(self, request_id: str, item: int, label: str) -> bool:
        """Store the label of an answer not labelled yet; False if it was labelled already."""
        cursor = self._execute(
            "UPDATE dlwp_answers SET label = ?, labelled_at = ? "
            "WHERE request_id = ? AND item = ? AND label IS NULL",
            (label, time.time(), request_id, item),
        )
        self._db.commit()
        return bool(cursor.rowcount)

    def rollout_labels(self, rollout: str) -> list[tuple[str, str, str]]:
        """(serving answer, candidate answer, label) of the labelled predictions of a rollout
        that both sides made."""
        cursor = self._execute(
            "SELECT serving_answer, candidate_answer, label FROM dlwp_answers WHERE rollout = ? "
            "AND label IS NOT NULL AND serving_answer IS NOT NULL "
            "AND candidate_answer IS NOT NULL",
            (rollout,),
        )
        return [tuple(row) for row in cursor.fetchall()]

    def labelled(self, model: str) -> list[tuple[str | None, str]]:
        """(input, label) of every labelled prediction of `model`, oldest first."""
        cursor = self._execute(
            "SELECT input, label FROM dlwp_answers WHERE model = ? AND label IS NOT NULL "
            "ORDER BY labelled_at, request_id, item",
            (model,),
        )
        return [tuple(row) for row in cursor.fetchall()]

    def prune(self, now: float | None = None) -> None:
        """Forget unlabelled answers past the window (older than max_age_s, or beyond the
        newest max_answers)."""
        now = now or time.time()
        cutoff = now - self.max_age_s
        self._execute("DELETE FROM dlwp_answers WHERE label IS NULL AND created < ?", (cutoff,))
        self._execute("DELETE FROM dlwp_wanted WHERE asked < ?", (now - WANTED_FOR_S,))
        cursor = self._execute(
            "SELECT created FROM dlwp_answers WHERE label IS NULL ORDER BY created DESC "
            "LIMIT 1 OFFSET ?",
            (self.max_answers,),
        )
        oldest_kept = cursor.fetchone()
        if oldest_kept is not None:
            self._execute(
                "DELETE FROM dlwp_answers WHERE label IS NULL AND created <= ?", (oldest_kept[0],)
            )
        self._db.commit()

    def close(self) -> None:
        self._db.close()


def open_store(
    url: str | None, state_dir: Path, max_answers: int, max_age_s: float
) -> FeedbackStore:
    """The store `url` names (postgresql://…), else the SQLite file in the state folder."""
    if url and url.startswith(("postgresql://", "postgres://")):
        try:
            import psycopg
        except ModuleNotFoundError:
            raise RuntimeError(
                "DLWP_FEEDBACK_DB names PostgreSQL but psycopg is not installed: "
                "pip install 'dlwp-serving[postgres]'"
            ) from None
        return FeedbackStore(psycopg.connect(url), "%s", max_answers, max_age_s,
                             "json_array_elements(%s::json)")  # fmt: skip
    if url:
        raise RuntimeError(f"DLWP_FEEDBACK_DB must be a postgresql:// URL, got {url!r}")
    state_dir.mkdir(parents=True, exist_ok=True)
    connection = sqlite3.connect(state_dir / FEEDBACK_FILE, timeout=10, check_same_thread=False)
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute("PRAGMA synchronous=NORMAL")  # WAL: durable at checkpoints, never corrupt
    return FeedbackStore(connection, "?", max_answers, max_age_s, "json_each(?)")
