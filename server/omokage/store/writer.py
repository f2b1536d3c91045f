"""The event store's writer process: the SQLite side of `EventStore`, run in a child process of its own.

Why a process, not a thread: turning records into rows (JSON bodies, one tuple per candidate) is Python work that
holds the GIL, and sqlite3 gives the GIL up and takes it back around every statement. On a thread beside the server's
event loop the two took turns (the GIL hands over at most every 5 ms under contention), and at 100 paced clients a
step's p99 was 33-62 ms with the store against 4.6 ms without it. In a child process the writer has a core of its
own; the server's side (`EventStore`) only packs each batch with msgpack (C) and waits for the answer on a pipe,
blocked in a read that releases the GIL.

The pipe carries frames of a 4-byte big-endian length and a msgpack body:

    parent -> child   [batch_no, items, synced]    items: a list of record lists, one per caller; synced: false
                                                   for records nothing waits for (committed without a sync)
    child -> parent   [batch_no, errors, stats]    errors: None (all committed) or one message (or None) per item

A reply is sent only after the transaction holding the batch has committed (with `synchronous=FULL`, after the WAL
is synced), so an answer without error is an acknowledgement. At the end of its input (the server closed the pipe,
or died, even by kill -9) the child checkpoints the WAL and exits; a batch it was writing is finished first.

Started by `EventStore` as `python -c "from omokage.store.writer import main; ..." DB_PATH [--no-fsync]`.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import struct
import sys
import time
from array import array
from typing import Any, BinaryIO, Sequence

import msgpack

HEADER = struct.Struct(">I")
MAX_FRAME = 1 << 30   # one group commit's records; far above what a batch holds, a guard against a torn length


def frame_bytes(value: Any, packed: bytes | None = None) -> bytes:
    """One frame: the body's length (4 bytes, big-endian) and the body, `value` in msgpack (or `packed` as it is)."""
    body = packed if packed is not None else msgpack.packb(value, use_bin_type=True)
    return HEADER.pack(len(body)) + body


def write_frame(out: BinaryIO, value: Any, packed: bytes | None = None) -> None:
    out.write(frame_bytes(value, packed))
    out.flush()


def read_frame(inp: BinaryIO) -> Any | None:
    """The next frame's value; None at the end of the stream (a frame cut short counts as the end)."""
    head = _read_exactly(inp, HEADER.size)
    if head is None:
        return None
    (size,) = HEADER.unpack(head)
    if size > MAX_FRAME:
        raise ValueError(f"a frame of {size} bytes: the pipe is out of step")
    body = _read_exactly(inp, size)
    if body is None:
        return None
    return msgpack.unpackb(body, raw=False, strict_map_key=False)


def _read_exactly(inp: BinaryIO, n: int) -> bytes | None:
    chunks, got = [], 0
    while got < n:
        chunk = inp.read(n - got)
        if not chunk:
            return None
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


def _json(value: Any) -> str:
    # ensure_ascii: a lone surrogate (an undecodable file name, say) stays valid UTF-8 text for SQLite
    return json.dumps(value, default=str, separators=(",", ":"))


class BatchWriter:
    """Writes batches of records into the store, each batch one transaction; counts what it did."""

    def __init__(self, conn: sqlite3.Connection, fsync: bool = True):
        self._conn = conn
        self.fsync = fsync
        self._synchronous = "FULL" if fsync else "NORMAL"
        conn.execute(f"PRAGMA synchronous = {self._synchronous}")
        self.events = self.batches = self.failed_batches = 0
        self.commit_seconds = 0.0
        self.ignored = 0      # typed rows refused by a uniqueness rule (kept in `events` all the same)

    def stats(self) -> dict[str, Any]:
        return {"events": self.events, "batches": self.batches, "failed_batches": self.failed_batches,
                "ignored_rows": self.ignored, "commit_seconds": self.commit_seconds}

    def write_batch(self, items: list[Sequence[dict[str, Any]]], synced: bool = True) -> list[str | None] | None:
        """Write every item in one transaction: None when all committed; otherwise one error message (or None) per
        item, each item then written alone so one caller's bad record fails only that caller's commit.

        synced=False (records no reply waits for): the commit skips its WAL sync even with fsync on
        (synchronous=NORMAL survives a crash of the server; the next synced commit makes these durable too)."""
        n = sum(len(records) for records in items)
        if not n:
            return None
        level = "FULL" if self.fsync and synced else "NORMAL"
        if level != self._synchronous:
            self._conn.execute(f"PRAGMA synchronous = {level}")
            self._synchronous = level
        t = time.perf_counter()
        try:
            self._transaction(items)
            return None
        except Exception as exc:
            if len(items) == 1:
                self.failed_batches += 1
                return [_describe(exc)]
            errors: list[str | None] = []
            for records in items:
                try:
                    self._transaction([records])
                    errors.append(None)
                except Exception as one:
                    errors.append(_describe(one))
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
                    self._apply(cur, _unwrap(record), rows)
            rows.flush(cur)     # the bulk tables, one executemany each, in arrival order
            self._conn.execute("COMMIT")
        except BaseException:
            # SQLite may have rolled back already (a full disk, an I/O error): a second ROLLBACK would fail and
            # hide the real error ("cannot rollback - no transaction is active") from the operator's log
            if self._conn.in_transaction:
                self._conn.execute("ROLLBACK")
            raise

    def _apply(self, cur: sqlite3.Cursor, rec: dict[str, Any], rows: "_Rows") -> None:
        if not isinstance(rec, dict):
            raise TypeError(f"a record is a map, not {type(rec).__name__}")
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
            elif wire == "out" and kind == "sketch.result":   # what the user saw while drawing
                body = rec.get("body") if isinstance(rec.get("body"), dict) else {}
                items = [it.get("id") for it in body.get("items") or () if isinstance(it, dict)]
                rows.sketches.append((sid, trial, at, body.get("strokes"), body.get("revision"), _json(items)))
            return
        kind = str(rec.get("event", "event"))
        rows.events.append((sid, at, "log", kind, None, None, trial, _json(rec)))
        handler = _HANDLERS.get(kind)
        if handler is not None:
            if not handler(cur, rec, sid, at, trial, rows):
                self.ignored += 1


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


JSON_WRAPPED = "$json"   # a record msgpack could not carry (a lone surrogate in a string), sent as JSON text


def _unwrap(record: Any) -> Any:
    if isinstance(record, dict) and len(record) == 1 and JSON_WRAPPED in record:
        return json.loads(record[JSON_WRAPPED])
    return record


class _Rows:
    """Rows of the high-volume tables gathered over one group commit, inserted with one executemany each."""

    def __init__(self):
        self.events: list[tuple] = []
        self.candidates: list[tuple] = []
        self.fixations: list[tuple] = []
        self.sketches: list[tuple] = []

    def flush(self, cur: sqlite3.Cursor) -> None:
        if self.events:
            cur.executemany("INSERT INTO events (session_id, at, direction, kind, rid, client_time, trial_id, body) "
                            "VALUES (?, ?, ?, ?, ?, ?, ?, ?)", self.events)
        if self.candidates:
            cur.executemany("INSERT INTO candidates (session_id, trial_id, step, position, item, algorithm, policy, "
                            "at, event) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", self.candidates)
        if self.fixations:
            cur.executemany("INSERT INTO fixations (session_id, trial_id, start_time, end_time, grid_x, grid_y, item, "
                            "step) VALUES (?, ?, ?, ?, ?, ?, ?, ?)", self.fixations)
        if self.sketches:   # (`strokes` stays empty: the strokes themselves are the `sketch.*` rows of `events`)
            cur.executemany("INSERT INTO sketch_updates (session_id, trial_id, server_time, stroke_count, revision, "
                            "items) VALUES (?, ?, ?, ?, ?, ?)", self.sketches)


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


def _resume(cur, rec, sid, at, trial, rows) -> bool:
    """v1.7: a selection goes on on this connection: the grid it shows again, under this session's id."""
    _grid(rows, rec, sid, at, trial, "resume")
    return True


def _back(cur, rec, sid, at, trial, rows) -> bool:
    """v1.7: the last pick taken back: the grid that returns (the undone pick's row stays: it happened)."""
    _grid(rows, rec, sid, at, trial, "back")
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


GRID_COLUMNS = 3   # panels are numbered row by row on the 3 x 3 grid (docs/protocol.md, `layout`)


def _gaze(cur, rec, sid, at, trial, rows) -> bool:
    """One grid's gaze (omokage.gaze.tracker.StepGaze.to_log): a row per fixation, timed on the server's clock, at
    the centre of the panel it fell on (grid_x, grid_y in 0 ... 1 from the top left; none off the grid)."""
    shown_at, items, step = rec.get("shown_at"), rec.get("items") or [], rec.get("step")
    if not isinstance(shown_at, (int, float)):
        return True           # a record from before grids were timed: its fixations stay in `events` only
    rows_per = -(-max(len(items), 1) // GRID_COLUMNS)
    for fixation in rec.get("fixations") or ():
        panel, onset, duration = fixation
        on = isinstance(panel, int) and 0 <= panel < len(items)
        rows.fixations.append((sid, trial, shown_at + onset, shown_at + onset + duration,
                               (panel % GRID_COLUMNS + 0.5) / GRID_COLUMNS if on else None,
                               (panel // GRID_COLUMNS + 0.5) / rows_per if on else None,
                               items[panel] if on else None, step))
    return True


def _ideal(cur, rec, sid, at, trial, rows) -> bool:
    cur.execute("INSERT INTO ideals (session_id, trial_id, at, near, items, score, seconds) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (sid, trial, at, rec.get("near"), _json(rec.get("nearest")), rec.get("score"), rec.get("seconds")))
    return True


def _trial_begin(cur, rec, sid, at, trial, rows) -> bool:
    query = rec.get("query")
    blob = array("f", (float(v) for v in query)).tobytes() if isinstance(query, list) else None   # float32, as read
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
             "resume": _resume, "back": _back,
             "disconnect": _disconnect, "gaze": _gaze, "trial_begin": _trial_begin, "trial_resume": _trial_resume,
             "answers": _answers, "ideal": _ideal}


# --- the child process ---------------------------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> int:
    from omokage.store.db import connect
    args = list(sys.argv[1:] if argv is None else argv)
    fsync = "--no-fsync" not in args
    paths = [a for a in args if not a.startswith("--")]
    if len(paths) != 1:
        print("usage: omokage.store.writer.main DB_PATH [--no-fsync] (started by omokage's EventStore)",
              file=sys.stderr)
        return 2
    # it lives exactly as long as its input: the server closes it (or dies) and the child finishes and exits; a
    # signal meant for the server (Ctrl+C, a service manager's SIGTERM to the group) must not end it before that
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    inp, out = sys.stdin.buffer, sys.stdout.buffer
    sys.stdout = sys.stderr   # nothing but frames goes to the parent's pipe
    conn = connect(paths[0])
    try:   # SQLite opens a file it may not write read-only, silently: find out now, not at the first step's commit
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("UPDATE meta SET value = value WHERE key = 'migrated_at'")
        conn.execute("ROLLBACK")
    except sqlite3.Error as exc:
        print(f"omokage: the event store {paths[0]} cannot be written ({exc}): make the file, its folder and its "
              "-wal and -shm files writable by the user the server runs as", file=sys.stderr, flush=True)
        return 3
    writer = BatchWriter(conn, fsync)
    write_frame(out, ["ready", os.getpid()])
    try:
        while True:
            frame = read_frame(inp)
            if frame is None:
                break
            batch_no, items, synced = frame
            errors = writer.write_batch(items, bool(synced))
            write_frame(out, [batch_no, errors, writer.stats()])
    except BrokenPipeError:   # the server is gone: what it was owed cannot be delivered; what is committed stays
        pass
    finally:
        try:
            conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
        except sqlite3.Error:
            pass
        conn.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
