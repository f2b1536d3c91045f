"""Shared fixtures: a small generated catalog with fitted models, a live server, and ../shared/data."""

from __future__ import annotations

import asyncio
import socket
import threading
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


def shared_dataset(name: str) -> Path:
    """Path of a ../shared/data set, or skip the test with the reason."""
    path = SHARED_DATA / name
    if not path.is_dir():
        pytest.skip(f"../shared/data/{name} is not present next to the repository ({path}); "
                    "this test needs the real data set")
    return path


@pytest.fixture(scope="session")
def tiny_catalog(tmp_path_factory) -> Path:
    from omokage.catalog.generate import generate_catalog
    return generate_catalog(tmp_path_factory.mktemp("catalog") / "catalog", count=160, seed=7, image_size=64,
                            progress=False)


@pytest.fixture(scope="session")
def tiny_models(tiny_catalog, tmp_path_factory) -> Path:
    from omokage.features.fitting import fit_models
    out = tmp_path_factory.mktemp("models")
    fit_models(tiny_catalog, out, ["raw", "pca", "nmf", "ae"], n_components=12, ae_epochs=2, progress=False)
    return out


@pytest.fixture(scope="session")
def engine(tiny_catalog, tiny_models):
    from omokage.engine import Engine
    return Engine.open(tiny_catalog, tiny_models)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def frame(mtype, rid=None, **fields) -> bytes:
    """A client message as the bytes a sans-I/O ServerConnection receives."""
    import msgpack
    msg = {"type": mtype, **fields}
    if rid is not None:
        msg["rid"] = rid
    return msgpack.packb(msg, use_bin_type=True)


def sent(actions) -> list[dict]:
    """The messages among a ServerConnection's actions, decoded from the bytes it would send."""
    import msgpack
    from omokage.protocol.connection import Send
    return [msgpack.unpackb(a.frame, raw=False) for a in actions if isinstance(a, Send)]


def serve_study(engine, db, study_toml: str) -> "RunningServer":
    """A real server walking the participants of a study made from `study_toml` in the store `db` (as `omokage study
    create` and `serve --study NAME` do)."""
    from omokage.service.server import configure_logging
    from omokage.study.definition import create_study, parse_study
    from omokage.study.runner import StudyRunner
    configure_logging("warning")
    definition = parse_study(study_toml)
    create_study(db, definition, study_toml)
    srv = RunningServer(engine, store_path=db)
    srv.server.study = StudyRunner.load(db, definition.name)
    return srv


class RunningServer:
    """A real OmokageServer on a loopback port, on its own event loop thread."""

    def __init__(self, engine, tls=None, host="127.0.0.1", **kwargs):
        from omokage.service.server import OmokageServer
        self.server = OmokageServer(engine, **kwargs)
        self.tls = tls
        self.host = host
        self.loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("server did not start")

    def _run(self):
        asyncio.set_event_loop(self.loop)
        self.stop_future = self.loop.create_future()
        ready = self.loop.create_future()
        ready.add_done_callback(lambda f: (setattr(self, "port", f.result()[1]), self._ready.set()))
        self.loop.run_until_complete(self.server.run(self.host, 0, ready=ready, stop=self.stop_future,
                                                    tls=self.tls))

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    def stop(self):
        self.loop.call_soon_threadsafe(lambda: self.stop_future.done() or self.stop_future.set_result(None))
        self.thread.join(15)


@pytest.fixture(scope="module")
def live_server(engine):
    from omokage.service.server import configure_logging
    configure_logging("warning")
    srv = RunningServer(engine)
    yield srv
    srv.stop()


def gaze_kit(samples: int = 54, switch: int = 27):
    """A 3 x 3 grid's layout and `look(client, panel_a, panel_b)`: eye gaze rays at 90 Hz from a seated eye, the first
    `switch` samples on panel_a and the rest on panel_b, sent once the last sample's time has come (the server drops
    samples from the future)."""
    import time

    import numpy as np

    from omokage.gaze import Layout
    from omokage.gaze.samples import panel_directions
    layout = Layout.grid()
    eye = np.array([0.0, 1.5, 0.0])
    dirs = panel_directions(layout, eye)

    async def look(client, panel_a: int, panel_b: int) -> None:
        t0 = time.time()
        rows = [[t0 + k / 90, "eye", *map(float, eye), *map(float, dirs[panel_a if k < switch else panel_b]), 1.0]
                for k in range(samples)]
        await asyncio.sleep(rows[-1][0] - time.time() + 0.05)
        await client.gaze(rows)
    return layout, look


def serve_process(catalog, models, *extra, cwd=None):
    """`omokage serve` in a process of its own (to be killed), on a free port, once it answers: (process, ws URL)."""
    import subprocess
    import sys
    import time
    import urllib.request
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "omokage", "serve", "--catalog", str(catalog), "--models",
                             str(models), "--port", str(port), *extra], cwd=cwd, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.time() + 60
    while True:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1)
            return proc, f"ws://127.0.0.1:{port}/ws"
        except OSError:
            if time.time() > deadline or proc.poll() is not None:
                proc.kill()
                raise AssertionError("omokage serve did not start")
            time.sleep(0.2)
