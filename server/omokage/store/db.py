"""The event store: one SQLite file in WAL mode, written in group commits by a writer process of its own.

`EventStore` has the interface of the JSON-lines `EventFile` (`write`, `commit`, `stats`, `close`): the server
awaits `commit(records)` before sending the reply those records produced, and the future completes only once the
transaction holding them is committed — with `synchronous=FULL` (the default, `fsync=True`) that commit has synced
the WAL to disk, so an acknowledged event survives a power loss; `fsync=False` is `synchronous=NORMAL`, which
survives a crash of the process (kill -9) but maybe not of the machine.

Each record is kept whole in `events` (as JSON) and, by its kind, also in the typed tables the analyses read
(sessions, candidates, choices, skips, ratings, decisions, pings, trials, answers). docs/studies.md has the schema.

Callers queue records on the server's thread; one writer thread takes each group of them to the writer process
(`omokage.store.writer`, which says why it is a process) and settles the callers' futures with its answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import sqlite3
import stat
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Iterator, Sequence

import msgpack

from omokage.errors import UserError
from omokage.store.group_commit import Flush, GroupCommitWriter
from omokage.store.schema import MIGRATIONS, SCHEMA_VERSION
from omokage.store.writer import JSON_WRAPPED, read_frame, write_frame
from omokage.store.writer import _json as json_text

log = logging.getLogger("omokage.store")

SQLITE_MAGIC = b"SQLite format 3\x00"


class StoreError(UserError):
    """The store cannot be used (damaged, or made by a newer omokage); the message says what to do."""


def create_private(path: str | Path) -> None:
    """Create an empty file only its owner may read and write (0600), unless it exists already: data files of users
    and participants are not for every account on the machine (SQLite gives the -wal and -shm files the same mode)."""
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except FileExistsError:
        pass


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
            raise StoreError(f"no event store at {path}; `omokage serve --db {path}` keeps one (every study does). "
                             "Without --db, `omokage serve` and `omokage demo` log session events as JSON lines in "
                             "var/events/, which need no export (`omokage fit user-model` reads them as they are)")
        path.parent.mkdir(parents=True, exist_ok=True)
        create_private(path)   # participants' codes, answers and gaze: readable by this user only (-wal, -shm follow)
    elif path.stat().st_size and not is_store_file(path):
        raise _advice(path, "not a SQLite database")
    elif not path.stat().st_size and create:
        # SQLite takes an empty file for a new database: say so, in case it was a store whose content was lost
        log.warning("the event store file is empty: a new store begins in it (if it held data, restore it from a "
                    "backup)", extra={"fields": {"store": str(path)}})
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
        raise open_error(path, exc) from None
    return conn


def open_error(path: Path, exc: sqlite3.DatabaseError) -> StoreError:
    """What to tell the user when the store could not be opened: a full disk or a permission is not a damaged file
    (whose advice, to recover it or move it aside, would have them abandon a sound store)."""
    if getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL or "database or disk is full" in str(exc):
        return StoreError(f"the disk holding the event store {path} is full ({exc}); the store is not damaged: free "
                          "some space there and start again")
    if "readonly" in str(exc) or isinstance(exc, sqlite3.OperationalError) and "unable to open" in str(exc):
        return StoreError(f"the event store {path} cannot be written ({exc}): make the file, its folder and its "
                          "-wal and -shm files writable by the user this runs as")
    return _advice(path, str(exc))


def stored_json(text: str, path: str | Path, where: str) -> Any:
    """A JSON column's value; StoreError with advice when the stored text is damaged (a changed byte inside a row
    passes SQLite's quick check: the page is sound, its content is not)."""
    try:
        return json.loads(text)
    except (TypeError, ValueError, RecursionError) as exc:
        raise StoreError(f"the event store {path} has a damaged row ({where}: {exc}); nothing was served or exported "
                         f"from it. Keep a copy of the file; look at the row with `sqlite3 {path}` (the table and id "
                         "above), and repair or delete it to go on with the rest") from None


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


class StoreWriteError(RuntimeError):
    """A batch the writer process could not commit (the message is its error, or why the process ended)."""


class StoreInUse(UserError):
    """A server holds the store (it is serving from it); the operation needs it alone."""


SERVE_LOCK_WAIT_S = 10.0   # how long a starting server waits for a short command (a deletion) to finish with the store
SERVER_LOCK_GRACE_S = 0.2  # ... and for a server lock held a moment by a starting `serve` looking at it (`refuse_if_served`)


STORE_SERVERS = "`omokage serve --db` or `--study`"
# what a server refused on a file another server serves from is told ({server}: that one, with its pid if known)
STORE_IN_USE = ("{server} is serving from {path} (" + STORE_SERVERS + "): one store serves one server. Stop the other "
                "one, or give this server a store of its own (--db PATH)")
LOG_IN_USE = ("{server} is writing its event log to {path}: one log serves one server (a restarted server reads it "
              "back). Stop the other one, or give this one a log of its own (--events PATH; `omokage demo`: another "
              "--home)")


def server_lock_path(path: str | Path) -> Path:
    """The file a server serving from `path` holds locked (and writes its pid into) for as long as it serves: PATH.lock.
    The file's own lock is also taken by short commands (`study delete-participant`), which a starting server waits
    for; this one only by servers, so a starting server tells a running server from a short command at once."""
    path = Path(path)
    return path.with_name(path.name + ".lock")


def _refusal(template: str, path: str | Path, pid: int | None) -> str:
    server = f"another omokage server (pid {pid})" if pid is not None else "another omokage server"
    return template.replace("{path}", str(path)).replace("{server}", server)


def _holder_pid(fd: int) -> int | None:
    """The pid a server wrote into its server lock file; it writes it just after taking the lock: a moment's wait."""
    deadline = time.monotonic() + 0.5
    while True:
        try:
            pid = json.loads(os.pread(fd, 4096, 0) or b"null")["pid"]
            if isinstance(pid, int) and not isinstance(pid, bool):
                return pid
        except (OSError, ValueError, TypeError, KeyError):
            pass
        if time.monotonic() >= deadline:
            return None
        time.sleep(0.02)


def refuse_if_served(path: str | Path, refusal: str = STORE_IN_USE) -> None:
    """StoreInUse now (`refusal`, naming the server's pid) when an omokage server serves from `path`: for `serve`,
    before it loads its models. Takes nothing, writes nothing; a server starting at the same moment is refused by
    `hold_for_serving` instead."""
    try:
        import fcntl
    except ImportError:
        return
    try:
        fd = os.open(server_lock_path(path), os.O_RDONLY)
    except OSError:
        return                # no server ever served from it
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)   # shared: two of these never stop each other
        except OSError:
            raise StoreInUse(_refusal(refusal, path, _holder_pid(fd))) from None
        fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


class ServingHold:
    """A server's hold on the file it serves from: the file's own lock and its server lock (`server_lock_path`),
    both let go by `close` (or by the process's end, a crash included)."""

    def __init__(self, data, server_fd: int):
        self._data, self._server_fd = data, server_fd

    def close(self) -> None:
        if self._data is None:
            return
        if self._server_fd >= 0:
            with contextlib.suppress(OSError):
                os.ftruncate(self._server_fd, 0)    # no pid of a server that is gone
            os.close(self._server_fd)
            self._server_fd = -1
        self._data.close()
        self._data = None


def hold_for_serving(path: str | Path, refusal: str | None = None) -> ServingHold | None:
    """Advisory exclusive locks on the file and on its server lock file for as long as the returned hold is not
    closed (a serving server holds them on its store and on its JSON-lines event log), or None where file locks are
    not available or the file is not a regular one (/dev/null). Independent of SQLite's own locks (flock, not fcntl).

    Exclusive: two servers on one store would each walk participants through the trials they read at start, so a
    trial could run twice and a decision one of them acknowledged be dropped; on one event log, a restart would take
    the other's live selections for its own lost ones. StoreInUse (`refusal`, a template of STORE_IN_USE's kind, by
    default that one) at once when another server holds it, naming its pid; a short command holding the file
    (`study delete-participant`) is waited for, up to SERVE_LOCK_WAIT_S."""
    try:
        import fcntl
    except ImportError:
        return None
    template = refusal or STORE_IN_USE
    f = open(path, "rb")
    if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
        f.close()
        return None
    try:
        server_fd = os.open(server_lock_path(path), os.O_RDWR | os.O_CREAT, 0o600)
    except OSError:   # a folder this process may not write (then nor may it serve: the store or the log says so)
        server_fd = -1
    locked = False
    if server_fd < 0:
        log.warning("the server lock file cannot be made; another server on this file is told after a wait",
                    extra={"fields": {"path": str(server_lock_path(path))}})
    try:
        grace = time.monotonic() + SERVER_LOCK_GRACE_S
        while server_fd >= 0:
            try:
                fcntl.flock(server_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                locked = True
                break
            except OSError:
                if time.monotonic() >= grace:     # another server: it serves until it is stopped, no use waiting
                    raise StoreInUse(_refusal(template, path, _holder_pid(server_fd))) from None
                time.sleep(0.01)
        if server_fd >= 0:
            os.ftruncate(server_fd, 0)
            os.pwrite(server_fd, json.dumps({"holder": "omokage serve", "pid": os.getpid(),
                                             "since": time.time()}).encode(), 0)
        deadline = time.monotonic() + SERVE_LOCK_WAIT_S
        warned = False
        while True:
            try:
                fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                return ServingHold(f, server_fd)
            except OSError:
                if time.monotonic() >= deadline:
                    raise StoreInUse(f"{path} is held by another omokage process, which did not let it go within "
                                     f"{SERVE_LOCK_WAIT_S:g} s (a `study delete-participant` or `study drop` rewriting "
                                     "it, or a server of an older version serving from it): try again once it is "
                                     "done") from None
                if not warned:
                    log.warning("waiting for another omokage process to finish with the file", extra={"fields": {
                        "path": str(path)}})
                    warned = True
                time.sleep(0.1)
    except BaseException:
        if server_fd >= 0:
            if locked:   # this process's pid, written for a server that did not start
                with contextlib.suppress(OSError):
                    os.ftruncate(server_fd, 0)
            os.close(server_fd)
        f.close()
        raise


@contextlib.contextmanager
def held_alone(path: str | Path, doing: str, refusal: str | None = None):
    """The file (a store, or a JSON-lines event log) locked exclusively while the block runs; StoreInUse (`refusal`,
    or the store's words) when a server holds it."""
    try:
        import fcntl
    except ImportError:
        yield
        return
    with open(path, "rb") as f:
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise StoreInUse(refusal or f"a server is running on {path} ({STORE_SERVERS}): stop it first, then "
                                        f"{doing}") from None
        try:
            yield
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)


class EventStore(GroupCommitWriter):
    """Group-committed writes to the store; see the module docstring. The SQLite work happens in a child process
    (`omokage.store.writer`), which this object starts, feeds and, should it die, starts again for the next batch."""

    def __init__(self, path: str | Path, fsync: bool = True, check: bool = True):
        self.path = Path(path)
        self.fsync = fsync
        conn = open_database(self.path, check=check)   # the checks and migrations, here: a damaged file fails now
        conn.close()
        self._serving = hold_for_serving(self.path)    # one server per store; `delete-participant` refuses then
        self._process: subprocess.Popen | None = None
        self._batch_no = 0
        self._done: dict[str, float] = {}              # counters of writer processes that ended
        self._now: dict[str, float] = {}               # ... and of the running one
        self.restarts = 0
        self._start_process()
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
        """Block (not on an event loop) until everything queued so far is committed (what nothing waited for is
        synced to disk with the next acknowledged commit)."""
        flag = Flush()
        self._enqueue((), flag)
        flag.event.wait(timeout)

    def stats(self) -> dict[str, Any]:
        total = {k: self._done.get(k, 0) + self._now.get(k, 0)
                 for k in ("events", "batches", "failed_batches", "ignored_rows", "commit_seconds")}
        batches = total["batches"]
        return {"store": str(self.path), "events": int(total["events"]), "batches": int(batches),
                "fsync": self.fsync, "failed_batches": int(total["failed_batches"]),
                "ignored_rows": int(total["ignored_rows"]), "writer_restarts": self.restarts,
                "writer_pid": self._process.pid if self._process is not None else None,
                "commit_ms_per_batch": round(1000 * total["commit_seconds"] / batches, 3) if batches else None,
                "events_per_batch": round(total["events"] / batches, 2) if batches else None}

    def close(self) -> None:
        self._stop_writer(60)
        if self._thread is not None and self._thread.is_alive():   # a commit stuck on the disk: never close under it
            log.error("the event store's writer did not finish within 60 s; its process is left running",
                      extra={"fields": {"store": str(self.path)}})
            return
        self._end_process(timeout=60)
        if self._serving is not None:
            self._serving.close()
            self._serving = None

    # -- the writer process -----------------------------------------------------------------------
    def _start_process(self) -> None:
        from omokage.childproc import child_env
        env = child_env()
        cmd = [sys.executable, "-c", "from omokage.store.writer import main; raise SystemExit(main())",
               str(self.path)] + ([] if self.fsync else ["--no-fsync"])
        # its own session: a Ctrl+C in the terminal reaches the server, which drains the queue, not the writer
        proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env, start_new_session=True)
        try:
            hello = read_frame(proc.stdout)
        except ValueError:
            hello = None
        if not (isinstance(hello, list) and hello[:1] == ["ready"]):
            proc.kill()
            proc.wait()
            raise StoreError(f"the event store's writer process for {self.path} did not start (exit code "
                             f"{proc.returncode}; its error is above); check that the file and its folder are "
                             "writable")
        self._process = proc

    def _end_process(self, timeout: float) -> None:
        proc, self._process = self._process, None
        if proc is None:
            return
        try:
            proc.stdin.close()        # the end of its input: it checkpoints the WAL and exits
        except OSError:
            pass
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            log.error("the event store's writer process did not exit; killed",
                      extra={"fields": {"store": str(self.path), "pid": proc.pid}})
            proc.kill()
            proc.wait()
        proc.stdout.close()

    acknowledged_first = True   # a reply's records are committed before, and apart from, what nothing waits for

    def _write_batch(self, items: list[Sequence[dict[str, Any]]],
                     acknowledged: bool = True) -> list[BaseException | None] | None:
        """On the writer thread: hand the batch to the process and wait for its answer (the GIL is free meanwhile).
        Records nothing waits for (acknowledged=False) are committed without a sync of their own: the next
        acknowledged commit syncs them with it."""
        if not any(items):
            return None
        if self._process is None or self._process.poll() is not None:
            self._restart()
        self._batch_no += 1
        proc = self._process
        try:
            write_frame(proc.stdin, None, _pack([self._batch_no, list(items), acknowledged]))
            reply = read_frame(proc.stdout)
        except (OSError, ValueError) as exc:
            reply = None
            why = str(exc)
        else:
            why = "it closed its pipe"
        if reply is None:
            code = proc.poll()
            self._end_process(timeout=5)
            raise StoreWriteError(f"the event store's writer process ended ({why}; exit code {code}) before it "
                                  "confirmed this batch, which may not have been committed; the next one starts a "
                                  "new writer")
        batch_no, errors, stats = reply
        self._now = stats
        if batch_no != self._batch_no:
            self._end_process(timeout=5)
            raise StoreWriteError(f"the event store's writer answered batch {batch_no} for {self._batch_no}; "
                                  "restarting it")
        if errors is None:
            return None
        return [StoreWriteError(e) if e is not None else None for e in errors]

    def _restart(self) -> None:
        if self._process is not None:
            self._end_process(timeout=5)
        for key, value in self._now.items():
            self._done[key] = self._done.get(key, 0) + value
        self._now = {}
        self.restarts += 1
        log.error("the event store's writer process had ended; starting a new one",
                  extra={"fields": {"store": str(self.path), "restarts": self.restarts}})
        self._start_process()


def _pack(value: Any) -> bytes:
    """msgpack of a batch. A record msgpack cannot carry as it is (a lone surrogate in a string, a set) goes as
    JSON text instead, as the thread-based store turned every record into JSON (unknown types as their str)."""
    try:
        return msgpack.packb(value, use_bin_type=True, default=_plain)
    except (TypeError, ValueError, UnicodeError, OverflowError):
        batch_no, items, *rest = value
        return msgpack.packb([batch_no, [[_packable(r) for r in records] for records in items], *rest],
                             use_bin_type=True, default=_plain)


def _packable(record: Any) -> Any:
    try:
        msgpack.packb(record, use_bin_type=True, default=_plain)
        return record
    except (TypeError, ValueError, UnicodeError, OverflowError):
        return {JSON_WRAPPED: json_text(record)}


def _plain(value: Any) -> Any:
    """What msgpack cannot pack itself: numpy values as numbers and lists, anything else as its str."""
    tolist = getattr(value, "tolist", None)
    if callable(tolist):
        return tolist()
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    return str(value)


# --- reading -----------------------------------------------------------------------------------------------------------

def log_records(path: str | Path, *, wire: bool = False) -> Iterator[dict[str, Any]]:
    """The logged records in commit order (with `wire`, the messages in and out too, each {"wire": "in"|"out",
    "session_id", "at", "kind", "rid", "client_time", "body"}). Within one group commit, the records a reply waited for
    come before the others (the wire log, a disconnect): each kind keeps its own order; `at` has the arrival times."""
    conn = open_database(path, create=False)
    try:
        sql = "SELECT seq, direction, session_id, at, kind, rid, client_time, body FROM events"
        if not wire:
            sql += " WHERE direction = 'log'"
        for seq, direction, sid, at, kind, rid, client_time, body in conn.execute(sql + " ORDER BY seq"):
            value = stored_json(body, path, f"events seq {seq}")
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
