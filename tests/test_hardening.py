"""Issue 10: the attacks that used to stall, pin memory or crash the server, as bounded real-socket tests on loopback.

Each attack is the one `omokage bench attack` measures (omokage.bench.attack); here it runs for a second or
two and the healthy client's latency is asserted loosely (the benchmark measures it precisely).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import io
import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

import msgpack
import numpy as np
import pytest
from PIL import Image

from omokage.bench import attack
from omokage.client import OmokageClient, OmokageError
from omokage.protocol.messages import (MAX_FRAME_DEPTH, MAX_FRAME_OBJECTS, MAX_FRAME_STR_BYTES, ProtocolError,
                                       decode_frame, scan_frame)
from omokage.service.server import (CONTROL_FRAMES_BURST, FEED_SLICE_BYTES, PRE_HELLO_MAX_FRAME_BYTES, EventFile,
                                    HelloLimiter, InflightBudget, OmokageServer, check_exposure, is_loopback_host)
from tests.conftest import RunningServer, free_port

TOKEN = "sesame-0123"
# before the fixes: p50 2,659 ms (nested frames), p99 595 ms (texture flood); bench attack has the real figures
LOOSE_P99_MS = 250


def run(coro):
    return asyncio.run(coro)


@pytest.fixture
def server(engine):
    srv = RunningServer(engine, token=TOKEN, send_timeout=1.0)
    yield srv
    srv.stop()


def watched(srv, make_attack, token=TOKEN) -> dict:
    """Run an attack while a healthy client pings every 20 ms; the attack's result plus the ping figures."""
    return run(attack.observe(srv.port, None, token, make_attack, settle=0.0))


# --- the frame decoder's budgets --------------------------------------------------------------------------

def nested_list(depth: int) -> list:
    out: list = []
    for _ in range(depth - 1):
        out = [out]
    return out


def test_scan_budgets_objects_depth_strings_and_extension_types():
    ok = msgpack.packb({"type": "texture.get", "rid": 1, "hashes": ["a" * 64] * 64})
    assert scan_frame(ok) == 1 + 2 * 3 + 64
    cases = {
        "objects": msgpack.packb({"type": "ping", "t": 0, "x": [0] * MAX_FRAME_OBJECTS}),
        "depth": msgpack.packb({"type": "ping", "t": 0, "x": nested_list(MAX_FRAME_DEPTH + 1)}),
        "strings": msgpack.packb({"type": "ping", "t": 0, "x": "s" * (MAX_FRAME_STR_BYTES + 1)}),
        "announced": b"\x83\xa4type\xa4ping\xa1t\x00\xa1x\xdd\xff\xff\xff\xff",  # 4 G children announced, none sent
    }
    for name, frame in cases.items():
        with pytest.raises(ProtocolError) as err:
            scan_frame(frame)
        assert err.value.code in ("too_large", "bad_frame"), name
        assert err.value.code == "too_large" or name == "announced"
    bad = {
        "timestamp": msgpack.packb({"type": "ping", "t": 0, "at": msgpack.Timestamp(1, 0)}, datetime=False),
        "ext": msgpack.packb({"type": "ping", "t": 0, "x": msgpack.ExtType(3, b"abc")}),
        "0xc1": b"\x82\xa4type\xa4ping\xa1t\xc1",
        "trailing": msgpack.packb({"type": "ping", "t": 0}) + b"\x00",
        "truncated": msgpack.packb({"type": "ping", "t": 0, "x": "abcdef"})[:-2],
    }
    for name, frame in bad.items():
        with pytest.raises(ProtocolError) as err:
            decode_frame(frame, 1 << 20)
        assert err.value.code == "bad_frame", name
    with pytest.raises(ProtocolError, match="extension types"):
        decode_frame(bad["timestamp"], 1 << 20)
    # each named for what it is (an attack client found a cut-off bin32 called "more than one object", and an integer
    # map key reported by its Python exception's name)
    with pytest.raises(ProtocolError, match=r"\(truncated\)"):
        decode_frame(msgpack.packb("type").join([b"\x81", b"\xc6\xff\xff\xff\xff"]), 1 << 20)
    with pytest.raises(ProtocolError, match="more than one MessagePack object"):
        decode_frame(bad["trailing"], 1 << 20)
    with pytest.raises(ProtocolError, match="^map keys must be strings"):
        decode_frame(b"\x82" + msgpack.packb("type") + msgpack.packb("ping") + b"\x01\x01", 1 << 20)


def test_a_hostile_frame_costs_the_budget_not_its_size():
    hostile = attack.nested_frame()
    assert len(hostile) > 4_000_000
    t = time.perf_counter()
    for _ in range(10):
        with pytest.raises(ProtocolError) as err:
            decode_frame(hostile, 4 * 1024 * 1024)
    assert err.value.code == "too_large" and "objects" in err.value.message
    worst_valid = msgpack.packb({"type": "ping", "t": 0, "x": [0] * (MAX_FRAME_OBJECTS - 8)})
    for _ in range(10):
        decode_frame(worst_valid, 4 * 1024 * 1024)
    # 20 frames; ~7 ms here when idle. Bounded loosely: before the budgets one hostile frame took 2.7 s.
    assert time.perf_counter() - t < 1.0


# --- attacks over real sockets ----------------------------------------------------------------------------

def test_nested_frames_do_not_stall_a_healthy_client(server):
    result = watched(server, lambda: attack.attack_nested_frame(server.port, TOKEN, seconds=1.5, clients=2))
    assert result["held"], result
    assert set(result["replies"]) == {"too_large"}
    assert result["ping"]["n"] >= 20 and result["ping"]["p99_ms"] < LOOSE_P99_MS, result["ping"]


def test_a_flood_of_websocket_ping_frames_is_closed_and_stalls_nobody(server):
    """The WebSocket library answers ping frames itself, below every message budget: a flood of empty pings from one
    connection (no hello) held a healthy client's ping for seconds, and from a client that reads nothing buffered
    pongs without bound (found by an attack client written from the protocol doc). Now rationed: closed with 1008."""
    def flood():  # the flooders in their own process, like real clients: in this one they held the server
        # thread's share of the interpreter lock (the server runs on a thread here) and stalled it for 0.3-0.8 s
        worker = attack.spawn_worker("control_flood", server.port, None, 3.0)
        return asyncio.get_running_loop().run_in_executor(None, attack.worker_result, worker, 60)
    result = watched(server, flood)
    assert result["held"] and max(result["closed_1008_after_s"]) < 3.0, result
    # the flood is short now (closed within its first reads): the healthy client pinged throughout it
    assert result["ping"]["n"] >= 5 and result["ping"]["p99_ms"] < LOOSE_P99_MS, result["ping"]

    async def keepalive():   # a client's keep-alive (a ping frame every 20-30 s, here 4 a second) is not a flood
        async with await OmokageClient.connect(server.url, token=TOKEN) as c:
            for _ in range(12):
                await asyncio.wait_for(await c.ws.ping(), 5)
                await asyncio.sleep(0.25)
            return len((await c.start("pca", seed=3)).items)
    assert run(keepalive()) == 9


def test_a_ping_flood_after_the_servers_own_close_is_cut_short_too(server):
    """Once the server has sent its close (here after three wrong hellos) the library still answered pings, until the
    client's close came or its close timeout ran out: a review measured a million pongs and a healthy client's ping
    held 5.5 s. The ration applies while closing too."""
    async def flood():
        ws = await attack.RawWebSocket.connect(server.port)
        for k in range(3):
            await ws.send(attack.hello("wrong", rid=k + 1))
        await asyncio.sleep(0.3)         # the errors and the close frame are out: the server waits for our close
        blob = b"\x89\x80\x00\x00\x00\x00" * 1000
        t0 = time.monotonic()
        while time.monotonic() - t0 < 3:
            try:
                ws.writer.write(blob)
                await asyncio.wait_for(ws.writer.drain(), 1)
            except (ConnectionError, asyncio.TimeoutError):
                break
            await asyncio.sleep(0)
        pongs = 0
        try:                             # what came back: frames until the server ends the connection
            while True:
                head = await asyncio.wait_for(ws.reader.readexactly(2), 15)
                n = head[1] & 0x7F
                n = int.from_bytes(await ws.reader.readexactly({126: 2, 127: 8}[n]), "big") if n >= 126 else n
                await ws.reader.readexactly(n)
                pongs += head[0] & 0x0F == 0xA
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            ws.abort()
        return pongs
    pongs = run(flood())
    assert pongs < 50_000, pongs   # before: every ping of the 3 s answered (hundreds of thousands)


def test_a_read_full_of_pings_is_cut_off_within_its_first_slice(server):
    """The library parses a whole read (up to 256 KiB: 43,000 empty pings, ~0.5 s of the loop here) and answers every
    ping in it before the ration sees one. The server feeds a read to it in FEED_SLICE_BYTES slices and drops the
    rest of the read once the ration is spent: the pongs that come back are at most one slice's worth."""
    async def one_big_write():
        ws = await attack.RawWebSocket.connect(server.port)
        ws.writer.write(b"\x89\x80\x00\x00\x00\x00" * (256 * 1024 // 6))   # one write: the server's reads are large
        await ws.writer.drain()
        pongs, code = 0, None
        try:
            while code is None:
                head = await asyncio.wait_for(ws.reader.readexactly(2), 15)
                n = head[1] & 0x7F
                n = int.from_bytes(await ws.reader.readexactly({126: 2, 127: 8}[n]), "big") if n >= 126 else n
                payload = await ws.reader.readexactly(n)
                pongs += head[0] & 0x0F == 0xA
                if head[0] & 0x0F == 0x8:
                    code = int.from_bytes(payload[:2], "big")
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            ws.abort()
        return pongs, code
    pongs, code = run(one_big_write())
    assert code == 1008
    assert pongs <= FEED_SLICE_BYTES // 6 + CONTROL_FRAMES_BURST, pongs   # before: ~11,000-43,000 (a whole read)


def test_a_ping_flood_begun_before_the_handshake_is_answered_is_cut_off_too(server):
    """Pings sent with the upgrade request are parsed and answered while the handshake is being answered, when no close
    frame can be sent yet. Spending the ration there marked the connection a flood without ending it: after the 101 its
    pings went unrationed (every one answered, none counted, 11,860 pongs here in 3 s), and a read over
    FEED_SLICE_BYTES was dropped unparsed. Now such a connection is dropped at once, the handshake unanswered."""
    ping = b"\x89\x80\x00\x00\x00\x00"

    async def flood():
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        key = base64.b64encode(os.urandom(16)).decode()
        writer.write((f"GET /ws HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\nUpgrade: websocket\r\n"
                      f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
                      ).encode() + ping * (CONTROL_FRAMES_BURST + 10))    # one write: the server reads them together
        await writer.drain()

        async def pump():   # once the 101 is in, pings in small writes (each read under a slice), 20,000 in all
            while b"\r\n\r\n" not in data:
                await asyncio.sleep(0.001)
            for _ in range(200):
                writer.write(ping * 100)
                await writer.drain()
                await asyncio.sleep(0.003)
        data, ended = b"", False
        sender = asyncio.create_task(pump())
        t0 = time.monotonic()
        try:
            while time.monotonic() - t0 < 4:
                chunk = await asyncio.wait_for(reader.read(65536), 4)
                if not chunk:
                    ended = True
                    break
                data += chunk
        except ConnectionError:
            ended = True
        except asyncio.TimeoutError:
            pass
        finally:
            sender.cancel()
            with contextlib.suppress(asyncio.CancelledError, ConnectionError):
                await sender
            writer.transport.abort()
        if b"HTTP/1.1 101" in data:   # the pongs the library wrote around the 101 (before it, and after)
            at = data.index(b"HTTP/1.1 101")
            data = data[:at] + data[data.index(b"\r\n\r\n", at) + 4:]
        pongs, k = 0, 0
        while k + 2 <= len(data):
            pongs += data[k] & 0x0F == 0xA
            k += 2 + (data[k + 1] & 0x7F)
        return ended, pongs
    ended, pongs = run(flood())
    assert ended and pongs <= FEED_SLICE_BYTES // 6 + CONTROL_FRAMES_BURST, (ended, pongs)   # before: open, 11,860

    async def healthy():   # the server still serves
        async with await OmokageClient.connect(server.url, token=TOKEN) as c:
            return len((await c.start("pca", seed=3)).items)
    assert run(healthy()) == 9


def test_a_client_that_stops_reading_is_dropped_and_its_memory_released(server):
    result = watched(server, lambda: attack.attack_slow_reader(server.port, TOKEN, seconds=2.5, clients=2,
                                                               requests=64))
    assert result["held"], result
    assert all(d is not None and d < 6 for d in result["dropped_after_s"]), result
    assert server.server.dropped_slow >= 2
    assert result["ping"]["p99_ms"] < LOOSE_P99_MS, result["ping"]

    async def after():  # the server still serves, and holds no connection but this one
        async with await OmokageClient.connect(server.url, token=TOKEN) as c:
            assert len((await c.start("pca", seed=2)).items) == 9
            return server.server.connections
    assert run(after()) == 1


def test_a_large_frame_before_hello_is_refused_at_its_header(server):
    """Hello is small: before the welcome a frame over 64 KiB closes the connection (1009) at its header, before any of
    its payload is kept. Before, any connection could announce 8 MiB and hold what it sent of it (an attack client:
    60 connections held ~260 MB until the hello deadline). After the welcome, larger frames are read."""
    async def before_hello():
        ws = await attack.RawWebSocket.connect(server.port)
        try:
            # 64 KiB is still read before the welcome (and answered: the token comes first)
            pad = b"\0" * (PRE_HELLO_MAX_FRAME_BYTES - 64)
            await ws.send(msgpack.packb({"type": "ping", "rid": 1, "t": 0, "pad": pad}))
            first = await ws.recv()
            t0 = time.monotonic()
            ws.writer.write(attack.ws_frame_head(1 << 20))   # announces 1 MiB; none of it follows
            await ws.writer.drain()
            code, reason = await attack.read_until_close(ws, 5)
            return first, code, reason, time.monotonic() - t0
        finally:
            ws.abort()
    first, code, reason, after = run(before_hello())
    assert first["code"] == "unauthorized", first
    assert code == 1009 and "exceeds limit of 65536 bytes before the welcome" in reason and after < 2, (code, reason)
    assert server.server.inflight.too_big_before_hello == 1

    async def after_hello():
        ws = await attack.RawWebSocket.connect(server.port)
        try:
            await ws.send(attack.hello(TOKEN))
            assert (await ws.recv())["type"] == "welcome"
            await ws.send(msgpack.packb({"type": "ping", "rid": 2, "t": 0, "pad": b"\0" * (1 << 20)}))
            return await ws.recv()
        finally:
            ws.abort()
    assert run(after_hello())["type"] == "pong"


def noise_png(side: int = 900) -> bytes:
    """An upload of a few MB (noise does not compress): 900 x 900 is ~2.4 MB, under max_image_bytes."""
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(5).integers(0, 256, (side, side, 3), dtype=np.uint8)).save(buf, "PNG")
    return buf.getvalue()


async def slow_upload(port: int, image: bytes, bytes_per_s: float = 1_000_000, rid: int = 2) -> tuple[dict, float]:
    """A `start` from an image sent as a client on a slow link would (~1 MB/s): its reply, and the seconds it took."""
    ws = await attack.RawWebSocket.connect(port)
    try:
        await ws.send(attack.hello(TOKEN))
        assert (await ws.recv())["type"] == "welcome"
        frame = attack.ws_frame(msgpack.packb({"type": "start", "rid": rid, "algorithm": "pca", "init": "image",
                                               "image": image}))
        t0 = time.monotonic()
        step = int(bytes_per_s / 20)
        for i in range(0, len(frame), step):
            ws.writer.write(frame[i:i + step])
            await ws.writer.drain()
            await asyncio.sleep(max(0.0, t0 + (i + step) / bytes_per_s - time.monotonic()))
        reply = await ws.recv(timeout=30)
        return reply or {"closed": True}, time.monotonic() - t0
    finally:
        ws.abort()


@pytest.fixture
def guarded(engine):
    """The in-transit guards at the pace of a test: a large message is one of 16 KiB, its rate is taken over 0.25 s,
    and it is dropped after 0.5 s under the floor (32 KiB/s)."""
    srv = RunningServer(engine, token=TOKEN, send_timeout=1.0,
                        inflight=InflightBudget(slow_for=0.5, window=0.25, large=16 * 1024))
    yield srv
    srv.stop()


def test_slow_large_frames_are_dropped_within_seconds_while_a_slow_upload_goes_through(guarded):
    """Found by an attack client: connections that start an 8 MiB frame and send it very slowly, or stall in it, held
    their bytes until the keep-alive gave up (40 s). Now a large message that comes under the floor rate is dropped
    (1008 "too slow") within seconds, while a client uploading a few MB at 1 MB/s is served, and so is a ping."""
    image = noise_png()
    assert 2_000_000 < len(image) < 3 * 1024 * 1024

    async def attack_and_upload():
        attackers = asyncio.create_task(attack.attack_slow_large_frames(guarded.port, TOKEN, seconds=6, clients=8))
        await asyncio.sleep(0.5)
        upload = await slow_upload(guarded.port, image)
        return {**await attackers, "upload": upload}
    result = watched(guarded, attack_and_upload)
    assert result["held"] and result["close_codes"] == {"1008": 8}, result
    assert result["closed_after_s_max"] < 5, result
    assert all(r.startswith("too slow: ") for r in result["reasons"]), result["reasons"]
    reply, took = result["upload"]
    assert reply.get("type") == "candidates" and len(reply["items"]) == 9 and took > 2, (reply, took)
    assert result["ping"]["n"] >= 50 and result["ping"]["p99_ms"] < LOOSE_P99_MS, result["ping"]
    budget = guarded.server.inflight
    assert budget.too_slow == 8 and budget.over_budget == 0, budget.stats()
    deadline = time.monotonic() + 5
    while (budget.held or budget.in_progress) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert budget.held == 0 and not budget.in_progress, budget.stats()   # nothing left counted once they are gone


def test_over_the_budget_the_slowest_large_message_makes_room(engine):
    """Bytes of messages in transit count against one server-wide budget. Two stalled frames fill most of it; an upload
    that goes over it makes the slowest of them go (1013, "server busy"), and is served."""
    srv = RunningServer(engine, token=TOKEN, inflight=InflightBudget(limit=16 * 1024 * 1024, slow_for=60, window=0.25))
    image = noise_png()

    async def main():
        stalled = []
        for _ in range(2):   # 7 MiB of a frame each, then nothing
            ws = await attack.RawWebSocket.connect(srv.port)
            await ws.send(attack.hello(TOKEN))
            assert (await ws.recv())["type"] == "welcome"
            ws.writer.write(attack.ws_frame_head(8 << 20) + bytes(7 << 20))
            await ws.writer.drain()
            stalled.append(ws)
            await asyncio.sleep(1.0)
        try:
            upload = await slow_upload(srv.port, image)
            closes = [await attack.read_until_close(ws, 1) for ws in stalled]
        finally:
            for ws in stalled:
                ws.abort()
        return upload, closes
    try:
        (reply, _), closes = run(main())
        budget = srv.server.inflight
        assert reply.get("type") == "candidates", reply
        # the first frame had stalled longest: it went; the second still held its place
        assert closes[0][0] == 1013 and closes[0][1].startswith("server busy: "), closes
        assert closes[1][0] is None, closes
        assert budget.over_budget == 1 and budget.peak <= budget.limit + (1 << 20), budget.stats()
    finally:
        srv.stop()


def test_texture_flood_within_the_rate_limit_does_not_starve_a_ping(server):
    def flood():  # the attackers in their own process, like real clients
        worker = attack.spawn_worker("texture_flood", server.port, TOKEN, 2.0)
        return asyncio.get_running_loop().run_in_executor(None, attack.worker_result, worker, 60)
    result = watched(server, flood)
    assert result["held"] and result["received"]["texture"] > 1000, result
    assert result["ping"]["p99_ms"] < LOOSE_P99_MS, result["ping"]


def test_wrong_tokens_are_limited_per_address_across_connections(engine):
    srv = RunningServer(engine, token=TOKEN, hello_limiter=HelloLimiter(limit=5, window=60))
    try:
        result = run(attack.attack_token_guessing(srv.port, None, 0, connections=20, guesses=3))
        assert result["checked"] <= 5 and result["refused_unchecked"] >= 1, result

        async def right_token_now():  # the address is locked out: even the right token is not checked
            with pytest.raises(OmokageError) as err:
                await OmokageClient.connect(srv.url, token=TOKEN)
            return err.value
        err = run(right_token_now())
        assert err.code == "unauthorized" and "retry in" in err.message
    finally:
        srv.stop()


def test_hello_limiter_window():
    lim = HelloLimiter(limit=3, window=10)
    for t in (0, 1, 2):
        assert lim.retry_after("a", t) == 0
        lim.failed("a", t)
    assert lim.retry_after("a", 3) == pytest.approx(7) and lim.retry_after("b", 3) == 0
    assert lim.retry_after("a", 10.5) == 0  # the oldest failure left the window
    small = HelloLimiter(limit=1, window=10, max_addresses=100)
    for k in range(1000):
        small.failed(f"10.0.{k // 256}.{k % 256}", 0)
    assert len(small._failures) == 100  # bounded memory under many addresses


def test_auth_comes_before_any_other_answer(server):
    async def main():
        ws = await attack.RawWebSocket.connect(server.port)
        try:
            await ws.send(msgpack.packb({"type": "hello", "rid": 1, "protocol": 2, "client": "x"}))
            no_token = await ws.recv()
            await ws.send(msgpack.packb({"type": "hello", "rid": 2, "protocol": 2, "client": "x", "token": TOKEN}))
            mismatch = await ws.recv()
            return no_token, mismatch
        finally:
            ws.abort()
    no_token, mismatch = run(main())
    assert no_token["code"] == "unauthorized" and "speaks" not in no_token["message"]
    assert mismatch["code"] == "bad_field" and "client speaks 2, server speaks 1" in mismatch["message"]


def test_before_the_token_every_message_gets_unauthorized_and_learns_nothing(server):
    """Found by an attack client written from the protocol doc: before `hello`, a malformed message got `bad_field`
    and an unknown type `unknown_type` with every message type the server knows, and a hello with a bad field but no
    token `bad_field`. The token comes first; after it, a hello's own mistakes are named, and a second hello is
    wrong_state whatever its fields."""
    async def main():
        ws = await attack.RawWebSocket.connect(server.port)
        replies = []
        try:
            for msg in ({"type": "choose", "rid": 1, "id": "x"}, {"type": "nope", "rid": 2},
                        {"type": "texture.get", "rid": 3, "hashes": []}, {"rid": 4},
                        {"type": "hello", "rid": 5, "protocol": 1, "client": "x" * 500},
                        {"type": "hello", "rid": 6, "protocol": 1, "client": "x" * 500, "token": TOKEN},
                        {"type": "nope", "rid": 7},
                        {"type": "hello", "rid": 8, "protocol": 1, "client": "ok", "token": TOKEN},
                        {"type": "hello", "rid": 9}):
                await ws.send(msgpack.packb(msg))
                replies.append(await ws.recv())
        finally:
            ws.abort()
        return replies
    r = run(main())
    assert [x.get("code", x["type"]) for x in r[:5]] == ["unauthorized"] * 5, r[:5]
    assert all("knows" not in x["message"] and "hello.client" not in x["message"] for x in r[:5]), r[:5]
    assert r[5]["code"] == "bad_field" and "hello.client" in r[5]["message"], r[5]     # the token was right
    assert r[6]["code"] == "wrong_state", r[6]                                       # past the token: no welcome yet
    assert r[7]["type"] == "welcome"
    assert r[8]["code"] == "wrong_state" and "already accepted" in r[8]["message"], r[8]


def test_uploads_outside_the_allow_list_and_bombs_are_refused_clearly(server):
    result = run(attack.attack_uploads(server.port, TOKEN, 0))
    assert result["held"], result

    async def accepted():
        async with await OmokageClient.connect(server.url, token=TOKEN) as c:
            arr = np.random.default_rng(1).integers(0, 256, (80, 80, 3), dtype=np.uint8)
            for fmt in ("JPEG", "PNG", "WEBP", "BMP", "GIF"):
                buf = io.BytesIO()
                Image.fromarray(arr).save(buf, fmt)
                grid = await c.start("pca", image=buf.getvalue())
                assert len(grid.items) == 9, fmt
    run(accepted())


# --- HTTP ------------------------------------------------------------------------------------------------

def test_http_paths_methods_and_hosts(server):
    result = run(attack.attack_http(server.port, TOKEN, 0))
    assert result["held"], result
    base = f"http://127.0.0.1:{server.port}"
    with urllib.request.urlopen(f"{base}/", timeout=5) as get:
        get.read()
    head = run(attack.http_probe(server.port, "HEAD", "/", {}))
    assert head["status"] == 200 and head["body_bytes"] == 0 and head["server_headers"] == 1
    assert get.headers.get_all("Server") == [get.headers["Server"]] and get.headers["Server"].startswith("omokage/")
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(urllib.request.Request(f"{base}/healthz", data=b"", method="POST"), timeout=5)
    refused.value.close()
    assert refused.value.code == 405 and refused.value.headers["Allow"] == "GET, HEAD"
    for host in (f"127.0.0.1:{server.port}", f"localhost:{server.port}", f"[::1]:{server.port}",
                 f"192.168.1.20:{server.port}"):  # IP literals cannot be re-pointed by DNS
        assert run(attack.http_probe(server.port, "GET", "/healthz", {"Host": host}))["status"] == 200, host


def test_healthz_details_only_for_an_authorised_caller(server, live_server):
    base = f"http://127.0.0.1:{server.port}/healthz"
    assert json.loads(urllib.request.urlopen(base, timeout=5).read()) == {"status": "ok"}
    req = urllib.request.Request(base, headers={"Authorization": f"Bearer {TOKEN}"})
    detail = json.loads(urllib.request.urlopen(req, timeout=5).read())
    assert detail["status"] == "ok" and "connections" in detail and "algorithms" in detail
    wrong = urllib.request.Request(base, headers={"Authorization": "Bearer nope"})
    assert json.loads(urllib.request.urlopen(wrong, timeout=5).read()) == {"status": "ok"}
    # no token configured: a loopback caller is the operator
    open_health = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{live_server.port}/healthz", timeout=5).read())
    assert "items" in open_health


def test_wrong_healthz_tokens_count_like_failed_hellos(engine):
    """/healthz compares the token too: wrong ones are failed hellos of that address, and a locked-out address gets no
    details even with the right token (else it was a way to guess the token at thousands of tries a second)."""
    srv = RunningServer(engine, token=TOKEN, hello_limiter=HelloLimiter(limit=3, window=60))
    try:
        base = f"http://127.0.0.1:{srv.port}/healthz"

        def health(token):
            req = urllib.request.Request(base, headers={"Authorization": f"Bearer {token}"})
            return json.loads(urllib.request.urlopen(req, timeout=5).read())
        assert "connections" in health(TOKEN)
        for guess in ("1", "2", "3"):
            assert health(guess) == {"status": "ok"}
        assert health(TOKEN) == {"status": "ok"}, "locked out: the right token is not even checked"

        async def hello():      # the same address's hellos are locked out too: one budget for both
            with pytest.raises(OmokageError) as err:
                await OmokageClient.connect(srv.url, token=TOKEN)
            return err.value.code
        assert run(hello()) == "unauthorized"
    finally:
        srv.stop()


def test_a_connection_that_never_says_hello_is_closed(engine):
    """Connections that never authenticate cannot pile up (the WebSocket layer answers their keep-alive pings, so
    they looked alive forever and held a file descriptor each): no hello within the deadline, closed with 1008."""
    import websockets
    srv = RunningServer(engine, token=TOKEN, hello_deadline_s=0.5)
    try:
        async def go():
            idle = await websockets.connect(srv.url)
            greeted = await OmokageClient.connect(srv.url, token=TOKEN)
            t = time.perf_counter()
            with pytest.raises(websockets.ConnectionClosed) as closed:
                await asyncio.wait_for(idle.recv(), 5)
            waited = time.perf_counter() - t
            await asyncio.sleep(0.5)
            rtt, _ = await greeted.ping()          # a connection that said hello is not affected
            await greeted.close()
            return closed.value.rcvd.code, closed.value.rcvd.reason, waited
        code, reason, waited = run(go())
        assert code == 1008 and "hello" in reason and waited < 2
    finally:
        srv.stop()


def _lan_address() -> str | None:
    """This machine's address on a non-loopback interface (where a headset on the LAN would connect), if it has one."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("192.0.2.1", 9))     # no packet is sent: this only picks the outgoing interface
            address = s.getsockname()[0]
        except OSError:
            return None
    return None if address.startswith("127.") else address


def test_connections_from_one_address_are_capped_but_not_from_loopback(engine):
    import websockets
    lan = _lan_address()
    if lan is None:
        pytest.skip("this machine has no non-loopback IPv4 address to connect from")
    srv = RunningServer(engine, token=TOKEN, host=lan, max_connections_per_address=3)
    try:
        async def go():
            url = f"ws://{lan}:{srv.port}/ws"
            held = [await websockets.connect(url) for _ in range(3)]
            with pytest.raises(websockets.InvalidStatus) as refused:
                await websockets.connect(url)
            for ws in held:
                await ws.close()
            await asyncio.sleep(0.2)
            again = await OmokageClient.connect(url, token=TOKEN)   # room again once they are gone
            await again.close()
            return refused.value.response.status_code, refused.value.response.body
        status, body = run(go())
        assert status == 429 and b"too many connections from this address" in body
    finally:
        srv.stop()
    many = RunningServer(engine, token=TOKEN, max_connections_per_address=3)   # loopback: a benchmark runs hundreds
    try:
        async def loopback():
            clients = [await OmokageClient.connect(many.url, token=TOKEN) for _ in range(6)]
            for c in clients:
                await c.close()
            return len(clients)
        assert run(loopback()) == 6
    finally:
        many.stop()


def test_every_response_forbids_framing_and_sets_a_content_security_policy(server):
    with urllib.request.urlopen(f"http://127.0.0.1:{server.port}/", timeout=5) as r:
        csp = r.headers["Content-Security-Policy"]
        assert r.headers["X-Frame-Options"] == "DENY"
    assert "frame-ancestors 'none'" in csp and "script-src 'self'" in csp and "object-src 'none'" in csp


def test_the_files_of_what_users_did_are_private(tmp_path):
    """The JSON-lines log and the event store (participants' codes, answers, gaze) are readable by the server's user
    only, the store's -wal and -shm files too."""
    import stat
    from omokage.store import EventStore
    events = EventFile(tmp_path / "events" / "e.jsonl")
    events.write({"event": "hello"})
    events.close()
    store = EventStore(tmp_path / "db" / "s.db")
    store.write({"event": "hello", "session_id": "s1"})
    store.flush()
    made = [tmp_path / "events" / "e.jsonl", *(tmp_path / "db").iterdir()]
    assert any(p.name.endswith("-wal") for p in made)
    for path in made:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, (path, oct(path.stat().st_mode))
    store.close()


def test_the_token_may_come_from_a_file_or_the_environment(tmp_path, monkeypatch):
    """A command line is visible to every user of the machine (/proc/PID/cmdline): --token-file and OMOKAGE_TOKEN keep
    the token out of it."""
    import argparse
    from omokage.cli import _serve_token
    from omokage.errors import UserError
    secret = tmp_path / "token"
    secret.write_text("S3cret-from-file\n")
    monkeypatch.delenv("OMOKAGE_TOKEN", raising=False)
    ns = lambda **kw: argparse.Namespace(**{"token": None, "token_file": None, **kw})   # noqa: E731
    assert _serve_token(ns()) is None
    assert _serve_token(ns(token_file=secret)) == "S3cret-from-file"
    assert _serve_token(ns(token="on-the-line")) == "on-the-line"
    monkeypatch.setenv("OMOKAGE_TOKEN", "from-env")
    assert _serve_token(ns()) == "from-env"
    assert _serve_token(ns(token_file=secret)) == "S3cret-from-file"
    (tmp_path / "empty").write_text("\n")
    for bad, why in ((ns(token="a", token_file=secret), "not both"), (ns(token_file=tmp_path / "empty"), "empty"),
                     (ns(token_file=tmp_path / "missing"), "cannot read")):
        with pytest.raises(UserError, match=why):
            _serve_token(bad)


def test_a_query_string_never_reaches_the_log():
    from omokage.service.server import _loggable
    assert _loggable("/?token=S3cret") == "/?…"
    assert _loggable("/app.js") == "/app.js"
    assert "S3cret" not in _loggable("/ws?participant=S3cret&x=1")


def test_public_names_are_answered(engine):
    srv = RunningServer(engine, public_names=["mypc.local"])
    try:
        ok = run(attack.http_probe(srv.port, "GET", "/healthz", {"Host": f"MyPC.local:{srv.port}"}))
        other = run(attack.http_probe(srv.port, "GET", "/healthz", {"Host": f"evil.example:{srv.port}"}))
        assert ok["status"] == 200 and other["status"] == 403
    finally:
        srv.stop()


# --- defaults a LAN can trust ------------------------------------------------------------------------------

def test_exposure_checks():
    from omokage.errors import UserError
    assert is_loopback_host("127.0.0.1") and is_loopback_host("localhost") and is_loopback_host("::1")
    assert not is_loopback_host("0.0.0.0") and not is_loopback_host("") and not is_loopback_host("mypc.local")
    check_exposure("127.0.0.1", None)
    check_exposure("0.0.0.0", "secret")
    check_exposure("0.0.0.0", None, insecure=True)
    with pytest.raises(UserError, match="--token"):
        check_exposure("0.0.0.0", None)
    with pytest.raises(UserError, match="empty"):
        check_exposure("127.0.0.1", "")
    with pytest.raises(ValueError):
        OmokageServer(None, token="")  # refused before the engine is looked at


def test_serve_refuses_a_lan_bind_without_a_token_before_binding(tmp_path):
    # The catalog does not exist: should the check ever regress, serve fails on it before any socket is bound.
    for extra, says in (([], "--token"), (["--token", ""], "empty")):
        proc = subprocess.run([sys.executable, "-m", "omokage", "serve", "--catalog", str(tmp_path / "none"),
                               "--models", str(tmp_path / "none"), "--host", "0.0.0.0", "--port", str(free_port()),
                               *extra], capture_output=True, text=True, timeout=120)
        assert proc.returncode == 2 and says in proc.stderr and "Traceback" not in proc.stderr, proc.stderr


def test_serve_logs_only_json_and_answers_no_500(tiny_catalog, tiny_models, tmp_path):
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "omokage", "serve", "--catalog", str(tiny_catalog), "--models",
                             str(tiny_models), "--port", str(port), "--token", TOKEN, "--events",
                             str(tmp_path / "e.jsonl"), "--log-level", "info"], stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 60
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1)
                break
            except OSError:
                assert time.time() < deadline and proc.poll() is None, "server did not start"
                time.sleep(0.2)
        http_result = run(attack.attack_http(port, TOKEN, 0))
        frames = run(attack.attack_nested_frame(port, TOKEN, 0.5, clients=1))
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:  # not HTTP at all
            s.sendall(b"\x16\x03\x01\x02\x00garbage\r\n\r\n")
            try:
                s.recv(100)
            except OSError:
                pass
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=30)
    assert http_result["held"] and "500" not in http_result["statuses"], http_result
    assert frames["held"], frames
    lines = [line for line in err.splitlines() if line.strip()]
    assert lines and all(json.loads(line) for line in lines)  # every line one JSON object, tracebacks included
    refused = [json.loads(line) for line in lines if '"http request refused"' in line]
    assert {r["status"] for r in refused} >= {400, 403, 404, 405, 414}


# --- event durability ---------------------------------------------------------------------------------------

def test_event_file_group_commit(tmp_path):
    path = tmp_path / "events.jsonl"
    events = EventFile(path, fsync=True)

    async def main():
        await asyncio.gather(*(events.commit([{"event": "choose", "k": k}, {"event": "x", "k": k}]) for k in range(50)))
        return path.read_text().splitlines()  # acknowledged: written (and fsync'd) before the futures resolved
    lines = run(main())
    events.write({"event": "disconnect", "name": os.fsdecode(b"caf\xe9")})  # a surrogate must not kill the writer
    events.close()
    assert len(lines) == 100 and sorted(json.loads(x)["k"] for x in lines) == sorted(list(range(50)) * 2)
    stats = events.stats()
    assert stats["events"] == 101 and stats["batches"] < 50 + 1  # 50 concurrent commits shared fsyncs
    assert json.loads(path.read_text().splitlines()[-1])["event"] == "disconnect"


def test_bench_attack_runs_token_guessing_last_whatever_order_it_is_given():
    """token_guessing locks this machine's address out for a minute: an attack run after it would measure the lock-out,
    and /healthz's details (read just before it) would miss it. So it always runs last, and each attack runs once."""
    assert attack.attack_order(["token_guessing", "slow_reader", "texture_flood"]) == \
        ["slow_reader", "texture_flood", "token_guessing"]
    assert attack.attack_order(["slow_reader", "token_guessing", "slow_reader"]) == ["slow_reader", "token_guessing"]
    assert attack.attack_order(["texture_flood"]) == ["texture_flood"]
    assert attack.attack_order(list(attack.ATTACKS))[-1] == "token_guessing"
