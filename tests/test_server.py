"""The real server over real sockets: whole sessions, bad input, limits, health, origins, shutdown."""

import asyncio
import io
import json
import signal
import subprocess
import sys
import time
import urllib.request

import msgpack
import numpy as np
import pytest
from PIL import Image
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from omokage.client import OmokageClient, OmokageError
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


def test_corrupt_images_and_bombs_get_errors_and_the_connection_survives(live_server):
    bomb = io.BytesIO()
    Image.new("1", (20000, 20000)).save(bomb, "PNG")  # 50 kB file, 400 M pixels decoded
    truncated = png_bytes(noise=True)[:500]

    async def main():
        async with await OmokageClient.connect(live_server.url) as c:
            for image, code in ((b"not an image", "bad_field"), (truncated, "bad_field"),
                                (bomb.getvalue(), "too_large")):
                with pytest.raises(OmokageError) as err:
                    await c.start("pca", image=image)
                assert err.value.code == code, err.value
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


def start_serve(catalog, models, events):
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "omokage", "serve", "--catalog", str(catalog), "--models",
                             str(models), "--port", str(port), "--events", str(events)],
                            stderr=subprocess.PIPE, text=True)
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
