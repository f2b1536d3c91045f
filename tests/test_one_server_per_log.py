"""One server per JSON-lines event log, as per store, and a `serve` that cannot start leaves nothing behind (from a
newcomer run: two demos in one ./var appended to one log; a refused `serve` created ./var/events/)."""

import socket
import subprocess
import sys

from tests.conftest import free_port, serve_process


def _serve(catalog, models, port, *extra, cwd=None):
    return subprocess.run([sys.executable, "-m", "omokage", "serve", "--catalog", str(catalog), "--models",
                           str(models), "--port", str(port), *extra], cwd=cwd, capture_output=True, text=True,
                          timeout=120)


def test_a_second_server_on_the_same_event_log_is_refused(tiny_catalog, tiny_models, tmp_path):
    log = tmp_path / "events.jsonl"
    first, _ = serve_process(tiny_catalog, tiny_models, "--events", str(log))
    try:
        second = _serve(tiny_catalog, tiny_models, free_port(), "--events", str(log))
        assert second.returncode != 0
        assert f"another omokage server is writing its event log to {log}" in second.stderr, second.stderr
        assert "Traceback" not in second.stderr
        assert first.poll() is None, "the first server goes on"
    finally:
        first.terminate()
        first.wait(30)
    # once the first has stopped (or crashed: the lock goes with the process), the log is free again
    again, _ = serve_process(tiny_catalog, tiny_models, "--events", str(log))
    again.kill()
    again.wait(30)


def test_serve_on_a_taken_port_says_so_and_writes_nothing(tiny_catalog, tiny_models, tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        r = _serve(tiny_catalog, tiny_models, port, cwd=tmp_path)
    assert r.returncode != 0
    assert f"cannot listen on 127.0.0.1:{port}" in r.stderr and "choose another --port" in r.stderr, r.stderr
    assert list(tmp_path.iterdir()) == [], "no ./var/events/ for a server that never ran"
