"""The real server over real sockets: whole sessions, bad input, limits, health, origins, shutdown."""

import asyncio
import io
import json
import signal
import struct
import subprocess
import sys
import time
import urllib.request
import zlib
from pathlib import Path

import msgpack
import numpy as np
import pytest
from PIL import Image
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from omokage.client import OmokageClient, OmokageError
from omokage.protocol.messages import PROTOCOL_MINOR
from tests.conftest import RunningServer, free_port


def run(coro):
    return asyncio.run(coro)


def png_bytes(size=(120, 90), color=(200, 40, 90), noise=False):
    arr = np.full((size[1], size[0], 3), color, np.uint8)
    if noise:
        arr = np.random.default_rng(0).integers(0, 256, arr.shape, dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, "PNG")
    return buf.getvalue()


def test_whole_session_with_textures(live_server):
    async def main():
        async with await OmokageClient.connect(live_server.url) as c:
            assert c.welcome["protocol"] == 1 and set(c.welcome["algorithms"]) == {"raw", "pca", "nmf", "ae"}
            grid = await c.start("pca", seed=9)
            assert len(grid.items) == 9
            textures = await c.fetch_textures([i.texture for i in grid.items])
            for item in grid.items:
                img = Image.open(io.BytesIO(textures[item.texture]["data"]))
                assert img.size == (64, 64)
            grid2 = await c.choose(grid.ids[5])
            assert grid2.ids[0] == grid.ids[5] and not set(grid2.ids[1:]) & set(grid.ids)
            decided = await c.decide(grid2.ids[2])
            assert decided["item"]["id"] == grid2.ids[2] and decided["item"]["url"].startswith("https://")
            rtt, offset = await c.ping()
            assert 0 <= rtt < 1 and abs(offset) < 1
    run(main())


def test_image_start_returns_a_reconstruction(live_server):
    async def main():
        async with await OmokageClient.connect(live_server.url) as c:
            grid = await c.start("nmf", image=png_bytes())
            rec = grid.reconstruction
            assert rec["format"] in ("jpeg", "png") and Image.open(io.BytesIO(rec["data"])).size == (64, 64)
            assert all(i.distance is not None for i in grid.items)
            assert [i.distance for i in grid.items] == sorted(i.distance for i in grid.items)
    run(main())


def test_the_server_builds_ae_torch_module_once_listening_and_an_ae_image_start_works(tiny_catalog, tiny_models):
    """torch (~2.7 s) is not imported to load ae: the server builds ae's torch module on its pool once it listens, so
    a start does not wait for it, yet before the first upload in ae's space needs it. A fresh process, a real server
    on a real port, and a client's image start in ae's space."""
    code = f"""
import asyncio, io, json, sys, time
from PIL import Image
from omokage.client import OmokageClient
from omokage.engine import Engine
from omokage.service.server import OmokageServer, configure_logging
configure_logging("warning")
server = OmokageServer(Engine.open({str(tiny_catalog)!r}, {str(tiny_models)!r}))
ae = server.engine.models["ae"].model
seen = {{"constructed": ["torch" in sys.modules, ae.net_ is not None]}}
async def main():
    loop = asyncio.get_running_loop()
    ready, stop = loop.create_future(), loop.create_future()
    task = asyncio.create_task(server.run("127.0.0.1", 0, ready=ready, stop=stop))
    port = (await ready)[1]
    deadline = time.monotonic() + 60
    while ae.net_ is None and time.monotonic() < deadline:   # nobody has asked for ae yet
        await asyncio.sleep(0.02)
    seen["listening"] = ["torch" in sys.modules, ae.net_ is not None]
    async with await OmokageClient.connect(f"ws://127.0.0.1:{{port}}/ws") as c:
        grid = await c.start("ae", image={png_bytes()!r})
        seen["image start"] = [len(grid.items), list(Image.open(io.BytesIO(grid.reconstruction["data"])).size),
                               all(i.distance is not None for i in grid.items)]
    stop.set_result(None)
    await task
asyncio.run(main())
print(json.dumps(seen))
"""
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True, timeout=120).stdout
    assert json.loads(out.strip().splitlines()[-1]) == {"constructed": [False, False], "listening": [True, True],
                                                        "image start": [9, [64, 64], True]}


def test_corrupt_images_and_bombs_get_errors_and_the_connection_survives(live_server):
    bomb = io.BytesIO()
    Image.new("1", (20000, 20000)).save(bomb, "PNG")  # 50 kB file, 400 M pixels decoded
    truncated = png_bytes(noise=True)[:500]
    # a PNG whose header says 64x64 and whose (complete) zlib stream holds one row: Pillow pads it with black without
    # a word (found by an attack client written from the protocol doc)
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xffffffff)
    short = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 64, 64, 8, 2, 0, 0, 0))
             + chunk(b"IDAT", zlib.compress(b"\0" + b"\x80" * 192)) + chunk(b"IEND", b""))

    async def main():
        async with await OmokageClient.connect(live_server.url) as c:
            for image, code in ((b"not an image", "bad_field"), (truncated, "bad_field"), (short, "bad_field"),
                                (bomb.getvalue(), "too_large")):
                with pytest.raises(OmokageError) as err:
                    await c.start("pca", image=image)
                assert err.value.code == code, err.value
                if image is short:
                    assert "pixel data ends after 193 of 12,352 bytes" in err.value.message, err.value
            assert len((await c.start("pca")).items) == 9
    run(main())


def test_oversized_frames(live_server):
    async def main():
        async with await OmokageClient.connect(live_server.url) as c, \
                await OmokageClient.connect(live_server.url) as bystander:
            limit = c.welcome["limits"]["max_frame_bytes"]
            await c.send_raw(msgpack.packb({"type": "ping", "t": 1, "pad": b"x" * (limit + 10)}))
            err = await asyncio.wait_for(c.unsolicited.get(), 10)
            assert err["code"] == "too_large"
            await c.ping()  # still served
            # more than twice the limit is not even read: that connection is closed with 1009 ...
            await c.send_raw(b"x" * (2 * limit + 10))
            with pytest.raises((ConnectionError, ConnectionClosed, asyncio.TimeoutError)):
                await c.request("ping", t=2, timeout=5)
            assert c.ws.close_code == 1009
            # ... and every other connection keeps working
            await bystander.ping()
    run(main())


def test_an_upload_does_not_stall_other_clients(live_server):
    # 3000 x 3000 pixels in a small PNG: a gradient compresses well but takes a while to decode and resize
    ramp = np.linspace(0, 255, 3000, dtype=np.float32)
    arr = np.stack(np.broadcast_arrays(ramp[None, :], ramp[:, None], ramp[None, ::-1]), -1).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, "PNG")
    heavy = buf.getvalue()
    assert len(heavy) < 3 * 1024 * 1024

    async def main():
        async with await OmokageClient.connect(live_server.url) as a, \
                await OmokageClient.connect(live_server.url) as b:
            upload = asyncio.create_task(a.start("ae", image=heavy))
            await asyncio.sleep(0.02)
            order = []
            upload.add_done_callback(lambda _: order.append("upload"))
            await b.ping()
            order.append("ping")
            await upload
            assert order == ["ping", "upload"]
    run(main())


def test_many_concurrent_sessions(live_server):
    async def one(k):
        async with await OmokageClient.connect(live_server.url) as c:
            grid = await c.start(["raw", "pca", "nmf", "ae"][k % 4], seed=k)
            for _ in range(3):
                grid = await c.choose(grid.ids[(k + 1) % 9])
            return (await c.decide(grid.ids[0]))["item"]["id"]

    async def main():
        return await asyncio.gather(*(one(k) for k in range(30)))
    assert len(run(main())) == 30


def test_health_endpoint_and_origin_check(live_server):
    health = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{live_server.port}/healthz", timeout=5).read())
    assert health["status"] == "ok" and health["items"] == 160

    async def main():
        with pytest.raises(InvalidStatus) as refused:
            await connect(live_server.url, origin="https://evil.example")
        assert refused.value.response.status_code == 403
        same = f"http://127.0.0.1:{live_server.port}"
        async with connect(live_server.url, origin=same) as ws:  # the page omokage serves itself
            await ws.send(msgpack.packb({"type": "ping", "t": 0}))
            assert msgpack.unpackb(await ws.recv())["code"] == "wrong_state"
    run(main())


def test_allow_listed_origin_and_token(engine):
    srv = RunningServer(engine, token="sesame", allow_origins=["https://quest.example"])
    try:
        async def main():
            async with connect(srv.url, origin="https://quest.example") as ws:
                await ws.send(msgpack.packb({"type": "start", "rid": 1, "algorithm": "pca", "init": "random"}))
                assert msgpack.unpackb(await ws.recv())["code"] == "unauthorized"
            with pytest.raises(OmokageError) as err:
                await OmokageClient.connect(srv.url, token="wrong")
            assert err.value.code == "unauthorized"
            async with await OmokageClient.connect(srv.url, token="sesame") as c:
                assert len((await c.start("pca")).items) == 9
        run(main())
    finally:
        srv.stop()


def start_serve(catalog, models, events, stdout=None):
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "omokage", "serve", "--catalog", str(catalog), "--models",
                             str(models), "--port", str(port), "--events", str(events)],
                            stderr=subprocess.PIPE, stdout=stdout, text=True)
    deadline = time.time() + 60
    while True:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1)
            return proc, port
        except OSError:
            if time.time() > deadline or proc.poll() is not None:
                proc.kill()
                raise AssertionError(proc.stderr.read() if proc.poll() is not None else "server did not start")
            time.sleep(0.2)


def test_logged_events_survive_a_crash(tiny_catalog, tiny_models, tmp_path):
    events = tmp_path / "events.jsonl"
    proc, port = start_serve(tiny_catalog, tiny_models, events)
    try:
        async def main():
            async with await OmokageClient.connect(f"ws://127.0.0.1:{port}/ws") as c:
                grid = await c.start("nmf", seed=2)
                await c.choose(grid.ids[1])
                proc.kill()  # SIGKILL: no shutdown code runs
        run(main())
    finally:
        proc.kill()
        proc.wait(10)
    recorded = [json.loads(line) for line in events.read_text().splitlines()]
    assert [r["event"] for r in recorded] == ["hello", "start", "choose"]
    assert recorded[2]["algorithm"] == "nmf" and len(recorded[2]["candidates"]) == 9


def test_omokage_serve_shuts_down_gracefully_on_sigterm(tiny_catalog, tiny_models, tmp_path):
    events = tmp_path / "events.jsonl"
    proc, port = start_serve(tiny_catalog, tiny_models, events)
    try:

        async def main():
            c = await OmokageClient.connect(f"ws://127.0.0.1:{port}/ws")
            grid = await c.start("pca", seed=1)
            await c.choose(grid.ids[0])
            proc.send_signal(signal.SIGTERM)
            await asyncio.wait_for(c._reader, 15)  # the server closes our connection
            return c.ws.close_code
        assert run(main()) == 1001  # going away
        assert proc.wait(15) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    logs = [json.loads(line) for line in proc.stderr.read().splitlines() if line.startswith("{")]
    assert any(r["msg"] == "shutting down" for r in logs)
    recorded = [json.loads(line)["event"] for line in events.read_text().splitlines()]
    assert recorded[:3] == ["hello", "start", "choose"] and recorded[-1] == "disconnect"


def test_web_client_is_served_and_gzipped(live_server):
    import gzip
    base = f"http://127.0.0.1:{live_server.port}"
    page = urllib.request.urlopen(f"{base}/", timeout=5)
    assert page.headers["Content-Type"].startswith("text/html") and b"omokage" in page.read()
    req = urllib.request.Request(f"{base}/app.js", headers={"Accept-Encoding": "gzip"})
    resp = urllib.request.urlopen(req, timeout=5)
    assert resp.headers["Content-Encoding"] == "gzip" and resp.headers["Content-Type"] == "text/javascript"
    body = gzip.decompress(resp.read())
    plain = urllib.request.urlopen(f"{base}/app.js", timeout=5).read()
    assert body == plain and len(plain) > 1000
    with pytest.raises(urllib.error.HTTPError) as missing:
        urllib.request.urlopen(f"{base}/../../etc/passwd", timeout=5)
    assert missing.value.code == 404


def test_tls(engine, tmp_path):
    import shutil
    import ssl
    if shutil.which("openssl") is None:
        pytest.skip("openssl command not installed: cannot make a test certificate")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out",
                    str(cert), "-days", "1", "-subj", "/CN=localhost"], check=True, capture_output=True)
    from omokage.service.server import tls_context
    srv = RunningServer(engine, tls=tls_context(cert, key))
    try:
        client_ctx = ssl.create_default_context(cafile=str(cert))
        client_ctx.check_hostname = False

        async def main():
            from websockets.asyncio.client import connect as ws_connect
            async with ws_connect(f"wss://127.0.0.1:{srv.port}/ws", ssl=client_ctx) as ws:
                await ws.send(msgpack.packb({"type": "hello", "protocol": 1, "client": "tls-test"}))
                return msgpack.unpackb(await ws.recv())["type"]
        assert run(main()) == "welcome"
    finally:
        srv.stop()


def test_serve_on_a_busy_port_fails_fast_with_advice(tiny_catalog, tiny_models, tmp_path):
    import socket
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        proc = subprocess.run([sys.executable, "-m", "omokage", "serve", "--catalog", str(tiny_catalog), "--models",
                               str(tiny_models), "--port", str(port), "--events", str(tmp_path / "e.jsonl")],
                              capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "--port" in proc.stderr and "Traceback" not in proc.stderr


# --- protocol v1.1 over real sockets: policies, skip, rate; v1.0 clients unchanged ---------------------

def test_a_v1_0_client_that_ignores_the_new_fields_completes_a_session(live_server):
    """A client written against v1.0: no protocol_minor, reads only v1.0 fields, relies on v1.0 grids."""
    async def main():
        async with connect(live_server.url, compression=None) as ws:
            async def ask(**msg):
                await ws.send(msgpack.packb(msg, use_bin_type=True))
                return msgpack.unpackb(await asyncio.wait_for(ws.recv(), 10), raw=False)

            welcome = await ask(type="hello", rid=1, protocol=1, client="v1.0-era/0.1")
            assert welcome["type"] == "welcome" and welcome["protocol"] == 1 and "pca" in welcome["algorithms"]
            grid = await ask(type="start", rid=2, algorithm="pca", init="random", seed=8)
            ids = [i["id"] for i in grid["items"]]
            assert grid["step"] == 1 and len(ids) == 9 and all(i["distance"] is None for i in grid["items"])
            nxt = await ask(type="choose", rid=3, id=ids[6])
            distances = [i["distance"] for i in nxt["items"]]
            # v1.0: the chosen face first at distance 0, then its nearest unseen neighbours, nearest first
            assert nxt["items"][0]["id"] == ids[6] and distances[0] == 0.0 and distances == sorted(distances)
            assert not {i["id"] for i in nxt["items"][1:]} & set(ids)
            tex = await ask(type="texture.get", rid=4, hashes=[nxt["items"][1]["texture"]])
            assert tex["type"] == "texture" and tex["rid"] == 4
            decided = await ask(type="decide", rid=5, id=nxt["items"][1]["id"])
            assert decided["type"] == "decided" and decided["steps"] == 2
            assert decided["item"]["url"].startswith("https://")
    run(main())


def test_policies_skip_and_rate_with_the_python_client(live_server):
    from omokage.selection import DEFAULT_POLICY, SERVED_POLICIES

    async def main():
        async with await OmokageClient.connect(live_server.url) as c:
            assert c.protocol_minor == PROTOCOL_MINOR and c.policies == list(SERVED_POLICIES) and c.default_policy == DEFAULT_POLICY
            with pytest.raises(OmokageError) as err:
                await c.skip()
            assert err.value.code == "wrong_state"
            with pytest.raises(OmokageError) as err:
                await c.rate(0, 3)
            assert err.value.code == "wrong_state"
            with pytest.raises(OmokageError) as err:
                await c.start("pca", policy="oracle")
            assert err.value.code == "bad_field" and all(p in err.value.message for p in SERVED_POLICIES)
            grid = await c.start("pca", seed=4)
            assert grid.policy == DEFAULT_POLICY
            for policy in SERVED_POLICIES:
                grid = await c.start("nmf", seed=4, policy=policy)
                assert grid.policy == policy and len(grid.items) == 9
                belief = policy not in ("study", "random")
                assert all((i.probability is not None) == belief for i in grid.items), policy
                assert all(0 <= i.probability <= 1 for i in grid.items if i.probability is not None)
                rated = await c.rate(grid.items[2].id, 4)
                assert rated == {"type": "rated", "rid": rated["rid"], "id": grid.items[2].id, "rating": 4}
                skipped = await c.skip()
                assert skipped.step == 2 and skipped.policy == policy and len(skipped.items) == 9
                assert not set(skipped.ids) & set(grid.ids)
                chosen = await c.choose(skipped.ids[3])
                assert chosen.step == 3 and chosen.ids[0] == skipped.ids[3]
                assert not set(chosen.ids[1:]) & (set(grid.ids) | set(skipped.ids))
                decided = await c.decide(chosen.ids[0])
                assert decided["steps"] == 3
                with pytest.raises(OmokageError) as err:
                    await c.skip()
                assert err.value.code == "wrong_state"
            with pytest.raises(OmokageError) as err:
                await c.rate(grid.items[0].id, 9)
            assert err.value.code == "bad_field"
    run(main())


def test_policy_skip_and_rate_reach_the_event_log(engine, tmp_path):
    events = tmp_path / "events.jsonl"
    srv = RunningServer(engine, events_path=events)
    try:
        async def main():
            async with await OmokageClient.connect(srv.url) as c:
                grid = await c.start("pca", seed=3, policy="infogain")
                await c.rate(grid.ids[1], 2)
                skipped = await c.skip()
                await c.choose(skipped.ids[0])
                return grid, skipped
        grid, skipped = run(main())
    finally:
        srv.stop()
    recorded = [json.loads(line) for line in events.read_text().splitlines()]
    assert [r["event"] for r in recorded] == ["hello", "start", "rate", "skip", "choose", "disconnect"]
    assert recorded[0]["protocol_minor"] == PROTOCOL_MINOR
    assert all(r["policy"] == "infogain" for r in recorded[1:5])
    assert recorded[2]["item"] == grid.ids[1] and recorded[2]["rating"] == 2
    assert recorded[3]["candidates"] == skipped.ids and recorded[3]["skipped"] == grid.ids


def test_the_client_command_takes_a_policy(live_server):
    ok = subprocess.run([sys.executable, "-m", "omokage", "client", live_server.url, "--policy", "study",
                         "--choices", "1"], capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0, ok.stderr
    assert '"policy": "study"' in ok.stdout.splitlines()[2] and "with policy study" in ok.stdout.splitlines()[-1]
    bad = subprocess.run([sys.executable, "-m", "omokage", "client", live_server.url, "--policy", "oracle"],
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 1 and "bad_field" in bad.stderr and "study" in bad.stderr
    assert "--policy" in subprocess.run([sys.executable, "-m", "omokage", "client", "--help"], capture_output=True,
                                        text=True, timeout=60).stdout


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full (Linux) to play a full disk")
@pytest.mark.filterwarnings("error::pytest.PytestUnhandledThreadExceptionWarning")   # shutting down must not crash
def test_an_event_log_that_cannot_write_acknowledges_nothing(engine):
    # /dev/full answers every write with ENOSPC: a real full disk for the event log
    srv = RunningServer(engine, events_path=Path("/dev/full"))

    async def main():
        ws = await connect(srv.url)
        await ws.send(msgpack.packb({"type": "hello", "rid": 1, "protocol": 1, "client": "t"}))
        reply = msgpack.unpackb(await ws.recv())
        with pytest.raises(ConnectionClosed) as closed:
            await ws.recv()
        return reply, closed.value.rcvd.code
    try:
        reply, code = run(main())
    finally:
        srv.stop()
    assert reply["type"] == "error" and reply["code"] == "internal" and reply["rid"] == 1
    assert "it was not kept; reconnect and start again" in reply["message"] and code == 1011


def test_serve_tells_people_where_the_page_is(tiny_catalog, tiny_models, tmp_path):
    """`omokage serve` printed only JSON log lines; a newcomer looked for the demo's "Open http://…" line."""
    proc, port = start_serve(tiny_catalog, tiny_models, tmp_path / "events.jsonl", stdout=subprocess.PIPE)
    try:
        proc.terminate()
        out, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert f"open http://127.0.0.1:{port}/ in a browser; clients connect to ws://127.0.0.1:{port}/ws" in out
    assert "open http" not in err       # stderr: JSON log lines only


def test_a_file_url_is_no_product_page_and_never_reaches_a_client(tiny_catalog, tmp_path):
    """`catalog ingest` without a manifest gives each face a file:// URL of its source: no page a client could open,
    and it told every client (over a LAN too) this machine's folders (found by a newcomer run). Clients get ""."""
    import numpy as np
    from PIL import Image

    from omokage.catalog.ingest import ingest_images
    from omokage.catalog.store import Catalog
    from omokage.engine import Engine
    from omokage.features.fitting import fit_models
    src = tmp_path / "private-folder"
    src.mkdir()
    cat = Catalog(tiny_catalog)
    for i in range(12):
        Image.fromarray(np.asarray(cat.pixels[i])).save(src / f"face{i}.png")
    ingest_images(src, tmp_path / "cat", image_size=32, progress=False)
    assert Catalog(tmp_path / "cat").items[0].url.startswith("file:")     # the catalog keeps where it came from
    fit_models(tmp_path / "cat", tmp_path / "models", ["pca"], n_components=4, progress=False)
    srv = RunningServer(Engine.open(tmp_path / "cat", tmp_path / "models"))
    try:
        async def main():
            async with await OmokageClient.connect(srv.url) as c:
                grid = await c.start("pca", seed=1)
                decided = await c.decide(grid.ids[0])
                return grid, decided
        grid, decided = run(main())
        # `omokage client` (the transcript) says there is no page, rather than "open " and nothing
        from omokage.demo import transcript_session
        lines: list[str] = []
        run(transcript_session(srv.url, choices=1, out=lines.append))
    finally:
        srv.stop()
    assert all(i.url == "" for i in grid.items) and decided["item"]["url"] == ""
    assert lines[-1].endswith("it has no product page (give each face a url in the catalog's manifest)"), lines[-1]
