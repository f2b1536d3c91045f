"""The event store: one SQLite file in WAL mode, written by one thread in group commits.

`EventStore` has the interface of the JSON-lines `EventFile` (`write`, `commit`, `stats`, `close`): the server
awaits `commit(records)` before sending the reply those records produced, and the future completes only once the
transaction holding them is committed — with `synchronous=FULL` (the default, `fsync=True`) that commit has synced
the WAL to disk, so an acknowledged event survives a power loss; `fsync=False` is `synchronous=NORMAL`, which
survives a crash of the process (kill -9) but maybe not of the machine.

Each record is kept whole in `events` (as JSON) and, by its kind, also in the typed tables the analyses read
(sessions, candidates, choices, skips, ratings, decisions, pings, trials, answers). docs/studies.md has the schema.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
import time
from pathlib import Path
from typing import Any, Iterator, Sequence

from omokage.errors import UserError
from omokage.store.group_commit import Flush, GroupCommitWriter
from omokage.store.schema import MIGRATIONS, SCHEMA_VERSION

log = logging.getLogger("omokage.store")

SQLITE_MAGIC = b"SQLite format 3\x00"


class StoreError(UserError):
    """The store cannot be used (damaged, or made by a newer omokage); the message says what to do."""


def is_store_file(path: str | Path) -> bool:
    try:
        with open(path, "rb") as f:
            return f.read(16) == SQLITE_MAGIC
    except OSError:
        return False


def _advice(path: Path, what: str) -> StoreError:
    return StoreError(
        f"the event store {path} is damaged ({what}); it is not served. Keep a copy of it (with its -wal file), then "
        f"recover what can be read into a new file: `sqlite3 {path} .recover | sqlite3 {path.with_suffix('.recovered.db')}`"
        f" and serve that with --db, or move {path} aside to start an empty store")


def connect(path: str | Path, *, readonly: bool = False, check_same_thread: bool = True) -> sqlite3.Connection:
    """A connection with the store's settings (WAL, foreign keys, a busy timeout). No checks, no migration."""
    path = Path(path)
    if readonly:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, isolation_level=None,
                               check_same_thread=check_same_thread, timeout=10)
    else:
        conn = sqlite3.connect(path, isolation_level=None, check_same_thread=check_same_thread, timeout=10)
    conn.execute("PRAGMA foreign_keys = ON")
    conn.execute("PRAGMA busy_timeout = 10000")
    return conn


def open_database(path: str | Path, *, create: bool = True, check: bool = True) -> sqlite3.Connection:
    """Open (or create) the store at `path`: integrity check (`PRAGMA quick_check`), WAL mode, migrations.

    A damaged file raises StoreError with advice; so does a store written by a newer omokage."""
    path = Path(path)
    if not path.exists():
        if not create:
            raise StoreError(f"no event store at {path}; `omokage serve` creates one (default var/omokage.db), "
                             "or give the right --db")
        path.parent.mkdir(parents=True, exist_ok=True)
    elif path.stat().st_size and not is_store_file(path):
        raise _advice(path, "not a SQLite database")
    try:
        conn = connect(path)
        if check:
            rows = [r[0] for r in conn.execute("PRAGMA quick_check(20)")]
            if rows != ["ok"]:
                conn.close()
                raise _advice(path, "quick_check: " + "; ".join(rows[:3]) + (" ..." if len(rows) > 3 else ""))
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if mode.lower() != "wal":
            log.warning("the event store is not in WAL mode", extra={"fields": {"mode": mode, "path": str(path)}})
        migrate(conn, path)
    except sqlite3.DatabaseError as exc:
        raise _advice(path, str(exc)) from None
    return conn


def migrate(conn: sqlite3.Connection, path: Path | None = None) -> int:
    """Run the migrations not yet applied; returns the schema version. Refuses a store from a newer omokage."""
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    if version > SCHEMA_VERSION:
        raise StoreError(f"the event store {path} has schema version {version}, newer than this omokage knows "
                         f"({SCHEMA_VERSION}); upgrade omokage to read it")
    for n in range(version, SCHEMA_VERSION):
        conn.execute("BEGIN IMMEDIATE")
        try:
            for statement in _statements(MIGRATIONS[n]):
                conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {n + 1}")
            conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('migrated_at', ?)", (str(time.time()),))
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
    return SCHEMA_VERSION


def _statements(script: str) -> list[str]:
    out, buf = [], []
    for line in script.splitlines():
        buf.append(line)
        if sqlite3.complete_statement("\n".join(buf)):
            text = "\n".join(buf).strip()
            if text.strip(";").strip():
                out.append(text)
            buf = []
    return out


def _json(value: Any) -> str:
    # ensure_ascii: a lone surrogate (an undecodable file name, say) stays valid UTF-8 text for SQLite
    return json.dumps(value, default=str, separators=(",", ":"))


class EventStore(GroupCommitWriter):
    """Group-committed writes to the store from one thread; see the module docstring."""

    def __init__(self, path: str | Path, fsync: bool = True, check: bool = True):
        self.path = Path(path)
        self.fsync = fsync
        conn = open_database(self.path, check=check)
        conn.close()
        self._conn = connect(self.path, check_same_thread=False)
        self._conn.execute(f"PRAGMA synchronous = {'FULL' if fsync else 'NORMAL'}")
        self.events = self.batches = self.failed_batches = 0
        self.commit_seconds = 0.0
        self.ignored = 0      # typed rows refused by a uniqueness rule (kept in `events` all the same)
        super().__init__("omokage-store")

    # -- the EventFile interface ------------------------------------------------------------------
    def write(self, record: dict[str, Any]) -> None:
        """Queue a record without waiting for it (nothing is acknowledged by it)."""
        self._enqueue((record,))

    def write_many(self, records: Sequence[dict[str, Any]]) -> None:
        """Queue several records at once without waiting (the messages a reply sent)."""
        self._enqueue(records)

    def commit(self, records: Sequence[dict[str, Any]]) -> asyncio.Future:
        """Queue records; the future completes once the transaction holding them is committed."""
        return self._enqueue_commit(records)

    def flush(self, timeout: float = 30) -> None:
        """Block (not on an event loop) until everything queued so far is committed."""
        flag = Flush()
        self._enqueue((), flag)
        flag.event.wait(timeout)

    def stats(self) -> dict[str, Any]:
        return {"store": str(self.path), "events": self.events, "batches": self.batches, "fsync": self.fsync,
                "failed_batches": self.failed_batches, "ignored_rows": self.ignored,
                "commit_ms_per_batch": round(1000 * self.commit_seconds / self.batches, 3) if self.batches else None,
                "events_per_batch": round(self.events / self.batches, 2) if self.batches else None}

    def close(self) -> None:
        self._stop_writer(60)
        if self._thread is not None and self._thread.is_alive():   # a commit stuck on the disk: never close under it
            log.error("the event store's writer did not finish within 60 s; its connection is left open",
                      extra={"fields": {"store": str(self.path)}})
            return
        try:
            self._conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
        except sqlite3.Error:
            pass
        self._conn.close()

    # -- the writer thread ------------------------------------------------------------------------
    def _write_batch(self, items: list[Sequence[dict[str, Any]]]) -> list[BaseException | None] | None:
        n = sum(len(records) for records in items)
        if not n:
            return None
        t = time.perf_counter()
        try:
            self._transaction(items)
            return None
        except Exception:
            if len(items) == 1:
                self.failed_batches += 1
                raise
            # one caller's bad record must not fail the others' acknowledgements: each alone, in its own transaction
            errors: list[BaseException | None] = []
            for records in items:
                try:
                    self._transaction([records])
                    errors.append(None)
                except Exception as exc:
                    errors.append(exc)
                    self.failed_batches += 1
            return errors
        finally:
            self.commit_seconds += time.perf_counter() - t
            self.batches += 1
            self.events += n

    def _transaction(self, items: list[Sequence[dict[str, Any]]]) -> None:
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            cur = self._conn.cursor()
            rows = _Rows()
            for records in items:
                for record in records:
                    self._apply(cur, record, rows)
            rows.flush(cur)     # the bulk tables, one executemany each, in arrival order
            self._conn.execute("COMMIT")
        except BaseException:
            self._conn.execute("ROLLBACK")
            raise

    def _apply(self, cur: sqlite3.Cursor, rec: dict[str, Any], rows: "_Rows") -> None:
        wire = rec.get("wire")
        sid = rec.get("session_id")
        at = rec.get("at")
        if not isinstance(at, (int, float)):
            at = time.time()
        trial = rec.get("trial")
        if wire is not None:  # a message in or out: {"wire", "session_id", "at", "kind", "rid", "client_time", "body"}
            kind = rec.get("kind", "?")
            rows.events.append((sid, at, wire, kind, rec.get("rid"), rec.get("client_time"), trial,
                                _json(rec.get("body"))))
            if wire == "in" and kind == "ping" and isinstance(rec.get("client_time"), (int, float)):
                cur.execute("INSERT INTO pings (session_id, client_time, server_time) VALUES (?, ?, ?)",
                            (sid, rec["client_time"], at))
            return
        kind = str(rec.get("event", "event"))
        rows.events.append((sid, at, "log", kind, None, None, trial, _json(rec)))
        handler = _HANDLERS.get(kind)
        if handler is not None:
            if not handler(cur, rec, sid, at, trial, rows):
                self.ignored += 1


class _Rows:
    """Rows of the high-volume tables gathered over one group commit, inserted with one executemany each."""

    def __init__(self):
        self.events: list[tuple] = []
        self.candidates: list[tuple] = []

    def flush(self, cur: sqlite3.Cursor) -> None:
        if self.events:
            cur.executemany("INSERT INTO events (session_id, at, direction, kind, rid, client_time, trial_id, body) "
                            "VALUES (?, ?, ?, ?, ?, ?, ?, ?)", self.events)
        if self.candidates:
            cur.executemany("INSERT INTO candidates (session_id, trial_id, step, position, item, algorithm, policy, "
                            "at, event) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", self.candidates)



# --- typed tables, by event kind: each returns False when a uniqueness rule refused its row -------------------------

def _grid(rows, rec, sid, at, trial, kind) -> None:
    cands = rec.get("candidates")
    if isinstance(cands, list):
        step, algorithm, policy = rec.get("step"), rec.get("algorithm"), rec.get("policy")
        rows.candidates.extend((sid, trial, step, pos, item, algorithm, policy, at, kind)
                               for pos, item in enumerate(cands))


def _hello(cur, rec, sid, at, trial, rows) -> bool:
    cur.execute("INSERT OR REPLACE INTO sessions (id, started_at, client, protocol_minor, participant_id) "
                "VALUES (?, ?, ?, ?, ?)", (sid, at, rec.get("client"), rec.get("protocol_minor"), rec.get("participant")))
    return True


def _start(cur, rec, sid, at, trial, rows) -> bool:
    _grid(rows, rec, sid, at, trial, "start")
    return True


def _choose(cur, rec, sid, at, trial, rows) -> bool:
    # the event's step is the grid it produced; the pick was made on the one before
    cur.execute("INSERT INTO choices (session_id, trial_id, step, item, at) VALUES (?, ?, ?, ?, ?)",
                (sid, trial, (rec.get("step") or 1) - 1, rec.get("item"), at))
    _grid(rows, rec, sid, at, trial, "choose")
    return True


def _skip(cur, rec, sid, at, trial, rows) -> bool:
    cur.execute("INSERT INTO skips (session_id, trial_id, step, at) VALUES (?, ?, ?, ?)",
                (sid, trial, (rec.get("step") or 1) - 1, at))
    _grid(rows, rec, sid, at, trial, "skip")
    return True


def _rate(cur, rec, sid, at, trial, rows) -> bool:
    cur.execute("INSERT INTO ratings (session_id, trial_id, step, item, rating, at) VALUES (?, ?, ?, ?, ?, ?)",
                (sid, trial, rec.get("step"), rec.get("item"), rec.get("rating"), at))
    return True


def _decide(cur, rec, sid, at, trial, rows) -> bool:
    cur.execute("INSERT OR IGNORE INTO decisions (session_id, trial_id, step, item, at) VALUES (?, ?, ?, ?, ?)",
                (sid, trial, rec.get("step"), rec.get("item"), at))
    ok = cur.rowcount == 1
    if trial is not None and ok:
        cur.execute("UPDATE trials SET completed_at = ?, decided_item = ?, steps = ? WHERE id = ?",
                    (at, rec.get("item"), rec.get("step"), trial))
    return ok


def _disconnect(cur, rec, sid, at, trial, rows) -> bool:
    cur.execute("UPDATE sessions SET ended_at = ?, messages_in = ?, errors_out = ? WHERE id = ?",
                (at, rec.get("messages_in"), rec.get("errors_out"), sid))
    return True


def _trial_begin(cur, rec, sid, at, trial, rows) -> bool:
    query = rec.get("query")
    blob = None
    if isinstance(query, list):
        import numpy as np
        blob = np.asarray(query, dtype=np.float32).tobytes()
    cur.execute("UPDATE trials SET started_at = COALESCE(started_at, ?), target = COALESCE(?, target), "
                "query = COALESCE(?, query) WHERE id = ?", (at, rec.get("target"), blob, trial))
    return True


def _trial_resume(cur, rec, sid, at, trial, rows) -> bool:
    cur.execute("UPDATE trials SET resumes = resumes + 1 WHERE id = ?", (trial,))
    return True


def _answers(cur, rec, sid, at, trial, rows) -> bool:
    ok = True
    for item, value in (rec.get("answers") or {}).items():
        cur.execute("INSERT OR IGNORE INTO answers (participant_id, questionnaire, item, value, session_id, at) "
                    "VALUES (?, ?, ?, ?, ?, ?)", (rec.get("participant"), rec.get("questionnaire"), item,
                                                  _json(value), sid, at))
        ok = ok and cur.rowcount == 1
    return ok


_HANDLERS = {"hello": _hello, "start": _start, "choose": _choose, "skip": _skip, "rate": _rate, "decide": _decide,
             "disconnect": _disconnect, "trial_begin": _trial_begin, "trial_resume": _trial_resume,
             "answers": _answers}


# --- reading -----------------------------------------------------------------------------------------------------------

def log_records(path: str | Path, *, wire: bool = False) -> Iterator[dict[str, Any]]:
    """The logged records in commit order, as the JSON-lines log holds them (with `wire`, the messages in and out
    too, each {"wire": "in"|"out", "session_id", "at", "kind", "rid", "client_time", "body"})."""
    conn = open_database(path, create=False)
    try:
        sql = "SELECT direction, session_id, at, kind, rid, client_time, body FROM events"
        if not wire:
            sql += " WHERE direction = 'log'"
        for direction, sid, at, kind, rid, client_time, body in conn.execute(sql + " ORDER BY seq"):
            value = json.loads(body)
            if direction == "log":
                yield value
            else:
                yield {"wire": direction, "session_id": sid, "at": at, "kind": kind, "rid": rid,
                       "client_time": client_time, "body": value}
    finally:
        conn.close()


def export_jsonl(path: str | Path, out, *, wire: bool = False) -> int:
    """Write the store's records to the binary stream `out` as JSON lines (UTF-8, as `EventFile` writes them);
    returns how many."""
    n = 0
    for record in log_records(path, wire=wire):
        out.write((json.dumps(record, ensure_ascii=False, default=str) + "\n").encode("utf-8", "backslashreplace"))
        n += 1
    return n
