"""Models fitted in the background while the server serves the others (protocol v1.2 `training` / `models`),
the demo's start-up (port check, parallel catalog drawing) and training thread counts."""

from __future__ import annotations

import asyncio
import shutil
import socket
import time

import msgpack
import pytest

from omokage.catalog.generate import generate_faces
from omokage.client import OmokageClient, OmokageError
from omokage.engine import Engine
from omokage.errors import UserError
from omokage.protocol.connection import Send, ServerConnection
from omokage.protocol.messages import SERVER_MESSAGES, encode
from omokage.service.background import BackgroundFitter
from omokage.service.server import EngineBackend
from tests.conftest import RunningServer


def run(coro):
    return asyncio.run(coro)


@pytest.fixture
def fast_models_only(tiny_catalog, tiny_models, tmp_path):
    """A model repository holding only raw and PCA (copied from the session's fitted models)."""
    out = tmp_path / "models"
    out.mkdir()
    for name in ("raw", "pca"):
        shutil.copytree(tiny_models / name, out / name)
    return out


def hello(conn: ServerConnection, minor: int | None) -> dict:
    msg = {"type": "hello", "rid": 1, "protocol": 1, "client": "test"}
    if minor is not None:
        msg["protocol_minor"] = minor
    (welcome,) = [a.message for a in conn.receive(encode(msg), 0.0) if isinstance(a, Send)]
    return welcome


def test_welcome_lists_training_models_only_while_they_train(engine):
    backend = EngineBackend(engine)
    assert "training" not in hello(ServerConnection(backend, "a"), 1)  # nothing trains: v1.1 bytes unchanged
    backend.training = [{"algorithm": "contrastive", "progress": 0.25, "eta_s": 30.0}]
    welcome = hello(ServerConnection(backend, "b"), 2)
    assert welcome["training"] == [{"algorithm": "contrastive", "progress": 0.25, "eta_s": 30.0}]
    fields = [f for f in welcome if f not in ("type", "rid")]
    assert fields == [f for f in SERVER_MESSAGES["welcome"] if f in welcome]   # canonical order
    assert "contrastive" not in welcome["algorithms"]


def test_starting_a_model_that_is_still_being_fitted_says_so(engine):
    backend = EngineBackend(engine)
    backend.training = [{"algorithm": "contrastive", "progress": 0.25, "eta_s": 30.0}]
    conn = ServerConnection(backend, "c")
    hello(conn, 2)
    [err] = [a.message for a in conn.receive(encode({"type": "start", "rid": 2, "algorithm": "contrastive", "init": "random"}), 0.0)
             if isinstance(a, Send)]
    assert err["code"] == "bad_field" and "still being fitted, 25% done, about 30 s to go" in err["message"], err
    [err] = [a.message for a in conn.receive(encode({"type": "start", "rid": 3, "algorithm": "vae", "init": "random"}), 0.0)
             if isinstance(a, Send)]
    assert "'vae' is not served" in err["message"]


def test_models_notes_go_only_to_clients_that_read_them(engine):
    backend = EngineBackend(engine)
    backend.training = [{"algorithm": "contrastive", "progress": 0.5}]
    old, new, silent = ServerConnection(backend, "v11"), ServerConnection(backend, "v12"), ServerConnection(backend, "x")
    hello(old, 1)
    hello(new, 2)
    assert old.models_changed() == [] and silent.models_changed() == []  # v1.1, and not greeted yet
    (note,) = new.models_changed()
    decoded = msgpack.unpackb(note.frame)
    assert decoded == {"type": "models", "algorithms": list(engine.algorithms),
                       "training": [{"algorithm": "contrastive", "progress": 0.5}]}
    assert "rid" not in decoded and list(decoded)[1:] == list(SERVER_MESSAGES["models"])


def test_a_model_fitted_in_the_background_is_served_live(tiny_catalog, fast_models_only):
    engine = Engine.open(tiny_catalog, fast_models_only)
    assert engine.algorithms == ["raw", "pca"]
    said: list[str] = []
    fitter = BackgroundFitter(tiny_catalog, fast_models_only, ["nmf"], report=said.append)
    srv = RunningServer(engine, fitter=fitter)

    async def main():
        async with await OmokageClient.connect(srv.url) as v12, \
                await OmokageClient.connect(srv.url, protocol_minor=1) as v11:
            assert v12.welcome["algorithms"] == ["raw", "pca"]
            assert [t["algorithm"] for t in v12.welcome["training"]] == ["nmf"]
            with pytest.raises(OmokageError) as refused:
                await v12.start("nmf")   # still training: not served yet
            assert refused.value.code == "bad_field"
            grid = await v12.start("pca", seed=1)   # the others serve meanwhile
            deadline = time.monotonic() + 120
            notes = []
            while "nmf" not in v12.algorithms:
                assert time.monotonic() < deadline, "nmf was never served"
                notes.append(await asyncio.wait_for(v12.unsolicited.get(), 120))
            assert notes[-1] == {"type": "models", "algorithms": ["raw", "pca", "nmf"], "training": []}
            assert all(n["type"] == "models" for n in notes)
            progress = [t["progress"] for n in notes for t in n["training"]]
            assert progress == sorted(progress) and all(0 <= p <= 1 for p in progress)
            assert v12.training == []
            chosen = await v12.choose(grid.ids[0])   # the session in progress went on undisturbed
            assert chosen.step == 2
            nmf = await v12.start("nmf", seed=2)
            assert nmf.algorithm == "nmf" and len(nmf.items) == 9
            assert v11.unsolicited.empty()   # a v1.1 client is never sent a message it did not ask for
            assert len((await v11.start("nmf", seed=2)).items) == 9   # ...but may use the new model
        async with await OmokageClient.connect(srv.url, protocol_minor=1) as late:
            assert late.welcome["algorithms"] == ["raw", "pca", "nmf"] and "training" not in late.welcome
    try:
        run(main())
    finally:
        srv.stop()
    assert fitter.fitted == ["nmf"] and not fitter.failed
    assert any("nmf: fitted in" in s and "now served" in s for s in said)
    assert (fast_models_only / "logs" / "fit-nmf.log").is_file()


def test_background_fit_progress_goes_to_its_log_too(tiny_catalog, fast_models_only):
    said: list[str] = []
    fitter = BackgroundFitter(tiny_catalog, fast_models_only, ["ae"], ae_epochs=4, report=said.append)

    async def fitted(name):
        pass
    run(fitter.run(lambda: None, fitted))
    assert fitter.fitted == ["ae"] and not fitter.failed
    progress = [s for s in said if "% fitted" in s]
    assert [s.split(",")[0] for s in progress] == ["ae: 25% fitted", "ae: 50% fitted", "ae: 75% fitted"]
    log = (fast_models_only / "logs" / "fit-ae.log").read_text()
    # the same lines the demo prints, after the child's own "fitting ..." and before its result line
    at = [log.index(f"  {s}\n") for s in progress]
    assert log.index("ae: fitting ...") < at[0] < at[1] < at[2] < log.index("reconstruction RMSE"), log


def test_a_failed_background_fit_is_reported_and_the_rest_still_serves(tiny_catalog, fast_models_only):
    engine = Engine.open(tiny_catalog, fast_models_only)
    said: list[str] = []
    fitter = BackgroundFitter(tiny_catalog, fast_models_only, ["vgg"], report=said.append)  # no such model
    srv = RunningServer(engine, fitter=fitter)

    async def main():
        async with await OmokageClient.connect(srv.url) as c:
            deadline = time.monotonic() + 60
            while c.training or c.models_note is None:
                assert time.monotonic() < deadline
                await asyncio.wait_for(c.unsolicited.get(), 60)
            assert c.algorithms == ["raw", "pca"]
            assert len((await c.start("pca", seed=1)).items) == 9
    try:
        run(main())
    finally:
        srv.stop()
    assert "vgg" in fitter.failed and fitter.fitted == []
    assert any("vgg: fitting failed" in s and "fit-vgg.log" in s for s in said)


def test_demo_refuses_a_taken_port_before_preparing_anything():
    from omokage.demo import check_port_free
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(UserError, match=f"127.0.0.1:{port}.*--port {port + 1}"):
            check_port_free("127.0.0.1", port)
    check_port_free("127.0.0.1", port)  # free again


def test_parallel_drawing_gives_the_same_faces():
    one = list(generate_faces(70, seed=3, size=48, workers=1))
    two = list(generate_faces(70, seed=3, size=48, workers=2))
    assert len(one) == len(two) == 70
    assert all((a[0] == b[0]).all() and a[1:] == b[1:] for a, b in zip(one, two))


def test_training_threads_leave_busy_cores_alone(monkeypatch):
    from omokage.features import training
    monkeypatch.delenv("OMOKAGE_TRAIN_THREADS", raising=False)
    monkeypatch.setattr(training, "usable_cores", lambda: 4)
    monkeypatch.setattr(training.os, "getloadavg", lambda: (0.1, 0, 0))
    assert training.training_threads() == 4 and training.training_threads(limit=2) == 2
    monkeypatch.setattr(training.os, "getloadavg", lambda: (3.2, 0, 0))
    assert training.training_threads() == 1
    monkeypatch.setattr(training.os, "getloadavg", lambda: (9.0, 0, 0))
    assert training.training_threads() == 1   # never zero
    monkeypatch.setenv("OMOKAGE_TRAIN_THREADS", "3")
    assert training.training_threads() == 3
