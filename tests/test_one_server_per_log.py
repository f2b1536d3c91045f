"""One server per JSON-lines event log, as per store, and a `serve` that cannot start leaves nothing behind (from a
newcomer run: two demos in one ./var appended to one log; a refused `serve` created ./var/events/)."""

import socket
import subprocess
import sys
import time

import pytest

from tests.conftest import free_port, serve_process


def _serve(catalog, models, port, *extra, cwd=None):
    return subprocess.run([sys.executable, "-m", "omokage", "serve", "--catalog", str(catalog), "--models",
                           str(models), "--port", str(port), *extra], cwd=cwd, capture_output=True, text=True,
                          timeout=120)


@pytest.mark.parametrize("sink", ["events", "store"])
def test_a_second_server_on_the_same_log_is_refused_at_once_naming_the_first(tiny_catalog, tiny_models, tmp_path,
                                                                             sink):
    """The second server could not tell the first's lock from a short command's (`study delete-participant`), so it
    waited 10 s for it (after loading its models) before refusing. A server's lock now says it is one, and which
    process: the second refuses before loading anything, naming the first's pid."""
    log = tmp_path / ("events.jsonl" if sink == "events" else "s.db")
    where = ["--events" if sink == "events" else "--db", str(log)]
    first, _ = serve_process(tiny_catalog, tiny_models, *where)
    try:
        t0 = time.monotonic()
        second = _serve(tiny_catalog, tiny_models, free_port(), *where)
        took = time.monotonic() - t0
        assert second.returncode != 0
        said = (f"another omokage server (pid {first.pid}) is writing its event log to {log}" if sink == "events"
                else f"another omokage server (pid {first.pid}) is serving from {log}")
        assert said in second.stderr, second.stderr
        assert "Traceback" not in second.stderr
        assert took < 2.0, f"refused after {took:.1f} s"
        assert first.poll() is None, "the first server goes on"
    finally:
        first.terminate()
        first.wait(30)
    # once the first has stopped (or crashed: the lock goes with the process), the log is free again
    again, _ = serve_process(tiny_catalog, tiny_models, *where)
    again.kill()
    again.wait(30)


def test_a_server_waits_for_a_short_command_holding_the_log(tiny_catalog, tiny_models, tmp_path):
    """`study delete-participant` holds the log while it rewrites it (a second or so): a server starting meanwhile
    waits for it, says so, and starts once it is done."""
    import threading
    import urllib.request

    from omokage.store.db import held_alone
    log, said = tmp_path / "events.jsonl", tmp_path / "said.log"
    log.write_bytes(b"")
    holding, release = threading.Event(), threading.Event()

    def short_command():
        with held_alone(log, "rewrite it"):
            holding.set()
            release.wait(60)
    holder = threading.Thread(target=short_command)
    holder.start()
    holding.wait(10)
    port = free_port()
    with open(said, "wb") as err:
        proc = subprocess.Popen([sys.executable, "-m", "omokage", "serve", "--catalog", str(tiny_catalog), "--models",
                                 str(tiny_models), "--port", str(port), "--events", str(log)],
                                stdout=subprocess.DEVNULL, stderr=err)
    try:
        deadline = time.monotonic() + 60
        while b"waiting for another omokage process" not in said.read_bytes():
            assert proc.poll() is None and time.monotonic() < deadline, said.read_text()
            time.sleep(0.1)
        release.set()
        holder.join(10)
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1)
                break
            except OSError:
                assert proc.poll() is None and time.monotonic() < deadline, said.read_text()
                time.sleep(0.1)
    finally:
        release.set()
        proc.kill()
        proc.wait(30)


def test_serve_on_a_taken_port_says_so_and_writes_nothing(tiny_catalog, tiny_models, tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        r = _serve(tiny_catalog, tiny_models, port, cwd=tmp_path)
    assert r.returncode != 0
    assert f"cannot listen on 127.0.0.1:{port}" in r.stderr and "choose another --port" in r.stderr, r.stderr
    assert list(tmp_path.iterdir()) == [], "no ./var/events/ for a server that never ran"


def test_dev_null_is_no_log_to_hold(tmp_path):
    """`--events /dev/null` (no log wanted) on two servers at once: one inode, nothing a restart reads back."""
    from pathlib import Path
    from omokage.service.server import EventFile
    a = EventFile(Path("/dev/null"), fsync=False, exclusive=True)
    try:
        EventFile(Path("/dev/null"), fsync=False, exclusive=True).close()
    finally:
        a.close()


def test_a_server_that_could_not_start_lets_go_of_its_log(engine, tmp_path):
    """In one process (tests, `omokage demo --no-serve`, a library user): a store that would not open, or a port that
    was taken, left the log locked, and the next server on it was refused."""
    import asyncio

    import pytest

    from omokage.errors import UserError
    from omokage.service.server import OmokageServer
    log, bad = tmp_path / "e.jsonl", tmp_path / "bad.db"
    bad.write_bytes(b"not a database at all" * 100)
    with pytest.raises(UserError):
        OmokageServer(engine, events_path=log, store_path=bad)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        srv = OmokageServer(engine, events_path=log)

        async def run():
            loop = asyncio.get_running_loop()
            with pytest.raises(OSError):
                await srv.run("127.0.0.1", taken.getsockname()[1], ready=loop.create_future(),
                              stop=loop.create_future())
        asyncio.run(run())
    OmokageServer(engine, events_path=log)._close_sinks()


def test_a_refused_hello_is_stored_as_a_hello(engine, tmp_path):
    """Its token is checked before its fields now; the store still records it as a hello (without the token)."""
    import asyncio
    import sqlite3

    from omokage.bench.attack import RawWebSocket, hello
    from tests.conftest import RunningServer
    db = tmp_path / "s.db"
    srv = RunningServer(engine, token="sesame-0123", store_path=db)
    try:
        async def go():
            ws = await RawWebSocket.connect(srv.port)
            await ws.send(hello("wrong"))
            reply = await ws.recv()
            ws.abort()
            return reply
        assert asyncio.run(go())["code"] == "unauthorized"
    finally:
        srv.stop()
    rows = sqlite3.connect(db).execute("SELECT direction, kind, body FROM events WHERE direction = 'in'").fetchall()
    assert [(d, k) for d, k, _ in rows] == [("in", "hello")], rows
    assert "wrong" not in rows[0][2]


def test_a_host_this_machine_does_not_have_is_named_as_such():
    import pytest

    from omokage.errors import UserError
    from omokage.service.server import check_port_free
    with pytest.raises(UserError) as err:
        check_port_free("10.255.255.254", free_port())
    assert "no such address" in str(err.value) and "choose another --port" not in str(err.value), str(err.value)


def test_a_benchmark_server_that_would_not_start_is_reported_by_its_logged_error(tmp_path):
    from omokage.bench.serve import _server_said
    log = tmp_path / "said.log"
    log.write_text('{"level": "error", "msg": "the event store x.db is damaged"}\n{"level": "info", "msg": "bye"}\n')
    assert _server_said(log) == ": the event store x.db is damaged"
