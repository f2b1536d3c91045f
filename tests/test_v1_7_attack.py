"""Protocol v1.7 ("Resuming a selection") attacked from docs/protocol.md alone: spent, raced, hijacked, hostile,
expired and leaked resume tokens, takeovers of a connection in the middle of a request, floods of dropped selections,
study and token servers, and old clients, against real servers on loopback with a raw MessagePack client (and, for a
half-open old link, a WebSocket client on a bare TCP socket that never answers the server's close).

What the document promises, and these tests hold the server to:
- a token is spent when its selection goes on, so two connections never share one; a refused hello (unauthorized,
  bad_field, a second hello, a locked-out address) spends nothing; a token whose selection cannot go on is not taken
  from a connection that is still open;
- `resumed: true` is followed at once by the grid on screen (`candidates` without rid); `resumed: false` by nothing;
- the old connection, if still open, is closed (1000) and anything more it sends is ignored;
- belief, faces seen, ratings, the gaze calibration, an image start's reconstruction and `back`'s history carry over;
  a drawing does not;
- at most 512 lost selections are kept, only ones that can go on, for `ttl_s` after their connection was lost;
- tokens never reach the logs or the event store; old clients see none of it.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import json
import os
import re
import struct
import urllib.request
from io import BytesIO
from pathlib import Path

import msgpack
import numpy as np
import pytest
import websockets
from omokage.gaze.calibration import load_patterns
from omokage.service.server import HelloLimiter, configure_logging

from .conftest import REPO, RunningServer, serve_study

GRID = 9
VECTORS = REPO / "tests" / "vectors"
HEX32 = re.compile(r"[0-9a-f]{32}")


# --- clients ------------------------------------------------------------------------------------------------------

class Raw:
    """A client written from the document: one binary MessagePack map per frame, rids, replies matched by rid."""

    def __init__(self, ws):
        self.ws = ws
        self.rid = 0
        self.welcome = None
        self.grid = None

    @classmethod
    async def open(cls, url, *, greet=True, minor=7, **hello):
        c = cls(await websockets.connect(url, max_size=None, compression=None))
        if greet:
            msg = {"type": "hello", "protocol": 1, "client": "attack/1.7", **hello}
            if minor is not None:
                msg["protocol_minor"] = minor
            c.welcome = await c.req(msg)
            if c.welcome.get("resumed") is True:
                # "then at once `candidates` without rid: the grid that was on screen"
                c.grid = await c.next()
                assert c.grid["type"] == "candidates" and "rid" not in c.grid, c.grid
        return c

    @property
    def token(self):
        return self.welcome["resume"]["token"]

    async def send(self, msg) -> int:
        self.rid += 1
        await self.ws.send(msgpack.packb({"rid": self.rid, **msg}))
        return self.rid

    async def next(self, timeout=10.0):
        return msgpack.unpackb(await asyncio.wait_for(self.ws.recv(), timeout))

    async def reply(self, rid, timeout=10.0):
        while True:
            m = await self.next(timeout)
            if m.get("rid") == rid or (m["type"] == "error" and "rid" not in m):
                return m
            assert m["type"] in ("models", "texture"), f"unexpected message while waiting for rid {rid}: {m}"

    async def req(self, msg, timeout=10.0):
        return await self.reply(await self.send(msg), timeout)

    async def ok(self, msg, mtype):
        m = await self.req(msg)
        assert m["type"] == mtype, (msg, m)
        return m

    async def nothing_follows(self):
        """The next message is the reply to a ping: nothing unasked-for came before it."""
        rid = await self.send({"type": "ping", "t": 1})
        m = await self.next()
        assert m["type"] == "pong" and m["rid"] == rid, f"an unasked-for message: {m}"

    async def close(self):
        await self.ws.close()


class Silent:
    """A WebSocket client on a bare TCP socket: it never answers the server's close frame or pings, so the server
    cannot tell it is gone (a half-open link) and whatever it sends after a takeover really reaches the server."""

    def __init__(self, reader, writer):
        self.reader, self.writer = reader, writer
        self.rid = 0
        self.closed = None            # (code, reason) once the server's close frame came

    @classmethod
    async def open(cls, port, **hello):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        key = base64.b64encode(os.urandom(16)).decode()
        writer.write((f"GET /ws HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                      f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        assert head.startswith(b"HTTP/1.1 101"), head
        c = cls(reader, writer)
        c.welcome = await c.req({"type": "hello", "protocol": 1, "client": "silent/1.7", "protocol_minor": 7,
                                 **hello})
        return c

    async def send(self, msg) -> int:
        self.rid += 1
        payload = msgpack.packb({"rid": self.rid, **msg})
        mask = os.urandom(4)
        n = len(payload)
        head = bytes([0x82]) + (bytes([0x80 | n]) if n < 126 else
                                bytes([0x80 | 126]) + struct.pack("!H", n) if n < 65536 else
                                bytes([0x80 | 127]) + struct.pack("!Q", n))
        body = bytes(b ^ mask[i % 4] for i, b in enumerate(payload)) if n < 4096 else \
            (np.frombuffer(payload, np.uint8) ^ np.resize(np.frombuffer(mask, np.uint8), n)).tobytes()
        self.writer.write(head + mask + body)
        await self.writer.drain()
        return self.rid

    async def frame(self, timeout):
        b0, b1 = await asyncio.wait_for(self.reader.readexactly(2), timeout)
        n = b1 & 0x7F
        if n == 126:
            n = struct.unpack("!H", await self.reader.readexactly(2))[0]
        elif n == 127:
            n = struct.unpack("!Q", await self.reader.readexactly(8))[0]
        return b0 & 0x0F, await self.reader.readexactly(n)

    async def next(self, timeout=10.0):
        """The next message, or None once the server closed (its close frame, or the TCP connection)."""
        while True:
            try:
                op, data = await self.frame(timeout)
            except (asyncio.IncompleteReadError, ConnectionError):
                self.closed = self.closed or (None, "tcp")
                return None
            if op == 2:
                return msgpack.unpackb(data)
            if op == 8:
                code = struct.unpack("!H", data[:2])[0] if len(data) >= 2 else None
                self.closed = (code, data[2:].decode("utf-8", "replace"))
                return None

    async def drain(self, timeout=0.5):
        """Every message until the server closes (or `timeout` passes quietly)."""
        out = []
        try:
            while (m := await self.next(timeout)) is not None:
                out.append(m)
        except TimeoutError:
            pass
        return out

    async def req(self, msg, timeout=10.0):
        rid = await self.send(msg)
        while True:
            m = await self.next(timeout)
            assert m is not None, f"closed {self.closed} while waiting for rid {rid}"
            if m.get("rid") == rid:
                return m

    def abort(self):
        self.writer.transport.abort()


def health(srv, token=None) -> dict:
    req = urllib.request.Request(f"http://127.0.0.1:{srv.port}/healthz")
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.loads(r.read())


def kept(srv, token=None) -> int:
    """How many lost selections the server keeps (`/healthz` `resumable`)."""
    r = health(srv, token)["resumable"]
    return r["detached"] if isinstance(r, dict) else r


async def lost_selection(url, *, policy="infogain", choose=1, skip=0, rate=True, **hello):
    """A v1.7 client that starts a selection, walks it a few steps, and loses its connection. Returns its token,
    session id, the last grid it showed and every face it was shown."""
    c = await Raw.open(url, **hello)
    grid = await c.ok({"type": "start", "algorithm": "pca", "init": "random", "seed": 11, "policy": policy},
                      "candidates")
    shown = [i["id"] for i in grid["items"]]
    for k in range(choose):
        grid = await c.ok({"type": "choose", "id": grid["items"][1 + k % 8]["id"]}, "candidates")
        shown += [i["id"] for i in grid["items"][1:]]
    for _ in range(skip):
        grid = await c.ok({"type": "skip"}, "candidates")
        shown += [i["id"] for i in grid["items"]]
    if rate:
        await c.ok({"type": "rate", "id": shown[0], "rating": 5}, "rated")
    await c.close()
    return c.welcome.get("resume", {}).get("token"), c.welcome["session_id"], grid, shown


def ids(grid):
    return [i["id"] for i in grid["items"]]


@functools.lru_cache(maxsize=1)
def big_png(side=3600) -> bytes:
    """A large, smooth image: small to send, slow to decode and resize, so a request stays in flight a while."""
    from PIL import Image
    ramp = np.linspace(0, 255, side, dtype=np.float32)
    img = np.stack([np.add.outer(ramp, ramp) / 2, np.tile(ramp, (side, 1)), np.tile(ramp[:, None], (1, side))], -1)
    out = BytesIO()
    Image.fromarray(img.astype(np.uint8)).save(out, "PNG", compress_level=1)
    return out.getvalue()


def small_png(colour=(200, 150, 120)) -> bytes:
    from PIL import Image
    out = BytesIO()
    Image.new("RGB", (64, 64), colour).save(out, "PNG")
    return out.getvalue()


# --- servers --------------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def models(tiny_catalog, tmp_path_factory):
    """raw, PCA (image starts, ideal faces) and a sketch model: one engine for every attack."""
    from omokage.features.fitting import fit_models
    out = tmp_path_factory.mktemp("v17_models")
    fit_models(tiny_catalog, out, ["raw", "pca", "sketch"], n_components=12, progress=False)
    return out


@pytest.fixture(scope="module")
def engine17(tiny_catalog, models):
    from omokage.engine import Engine
    engine = Engine.open(tiny_catalog, models)
    assert engine.sketch is not None and engine.can_generate_ideal
    return engine


@pytest.fixture(scope="module")
def server(engine17):
    configure_logging("warning")
    srv = RunningServer(engine17, calibration=load_patterns(REPO / "calibration"))
    yield srv
    srv.stop()


@pytest.fixture()
def short_server(engine17):
    """Lost selections kept 0.6 s."""
    configure_logging("warning")
    srv = RunningServer(engine17, resume_ttl_s=0.6)
    yield srv
    srv.stop()


# --- the happy path, held exactly to the document ------------------------------------------------------------------

def test_resumed_selection_carries_grid_belief_seen_faces_and_ratings(server):
    """welcome.resume {token: 32 hex, ttl_s}; a new token in every welcome; resumed: true then the grid on screen (same
    step, algorithm, policy, items, probabilities); the next choose works on it, no face is ever shown twice across
    both connections, a face rated or shown on the old connection can be rated on the new one."""
    async def go():
        a = await Raw.open(server.url)
        assert HEX32.fullmatch(a.token) and a.welcome["resume"]["ttl_s"] > 0, a.welcome["resume"]
        assert "resumed" not in a.welcome
        g1 = await a.ok({"type": "start", "algorithm": "pca", "init": "random", "seed": 5, "policy": "infogain"},
                        "candidates")
        g2 = await a.ok({"type": "choose", "id": g1["items"][3]["id"]}, "candidates")
        g3 = await a.ok({"type": "skip"}, "candidates")
        await a.ok({"type": "rate", "id": g1["items"][0]["id"], "rating": 2}, "rated")
        shown = set(ids(g1)) | set(ids(g2)) | set(ids(g3))
        token, old_sid = a.token, a.welcome["session_id"]
        await a.close()

        b = await Raw.open(server.url, resume=token)
        assert b.welcome["resumed"] is True
        assert b.welcome["session_id"] != old_sid
        assert HEX32.fullmatch(b.token) and b.token != token
        g = b.grid
        assert (g["step"], g["algorithm"], g["policy"]) == (3, "pca", "infogain"), g
        assert g["items"] == g3["items"], "the resumed grid is not the one on screen"
        # ratings of faces shown at any step of the selection (on the old connection)
        await b.ok({"type": "rate", "id": g1["items"][5]["id"], "rating": 1}, "rated")
        # walk to the end of the catalog: no face twice over both connections
        grid = await b.ok({"type": "choose", "id": g["items"][2]["id"]}, "candidates")
        assert grid["step"] == 4 and grid["items"][0]["id"] == g["items"][2]["id"]
        new = ids(grid)[1:]
        while True:
            assert not set(new) & shown, f"faces shown again after resuming: {set(new) & shown}"
            shown |= set(new)
            m = await b.req({"type": "skip"})
            if m["type"] == "error":
                assert m["code"] == "wrong_state"
                break
            grid, new = m, ids(m)
        assert len(shown) == b.welcome["catalog"]["count"], "the catalog was not walked to its end"
        d = await b.ok({"type": "decide", "id": grid["items"][0]["id"]}, "decided")
        assert d["steps"] == grid["step"]
        await b.close()
    asyncio.run(go())


def test_every_welcome_carries_a_new_token(server):
    async def go():
        tokens = set()
        for _ in range(20):
            c = await Raw.open(server.url)
            tokens.add(c.token)
            await c.close()
        assert len(tokens) == 20
    asyncio.run(go())


def test_pipelined_requests_after_a_resuming_hello_come_after_the_grid(server):
    """A client that sends `choose` right behind its `hello` (the grid it last showed is known to it) gets welcome,
    the grid without rid, then the choose's reply: "at once" means before any reply to a later request."""
    async def go():
        token, _, grid, _ = await lost_selection(server.url)
        ws = await websockets.connect(server.url, max_size=None, compression=None)
        await ws.send(msgpack.packb({"type": "hello", "rid": 1, "protocol": 1, "client": "p", "protocol_minor": 7,
                                     "resume": token}))
        await ws.send(msgpack.packb({"type": "choose", "rid": 2, "id": grid["items"][4]["id"]}))
        await ws.send(msgpack.packb({"type": "ping", "rid": 3, "t": 0}))
        got = [msgpack.unpackb(await asyncio.wait_for(ws.recv(), 10)) for _ in range(4)]
        assert [(m["type"], m.get("rid")) for m in got] == \
            [("welcome", 1), ("candidates", None), ("candidates", 2), ("pong", 3)], got
        assert got[0]["resumed"] is True and got[1]["items"] == grid["items"]
        assert got[2]["items"][0]["id"] == grid["items"][4]["id"]
        await ws.close()
    asyncio.run(go())


def test_decide_on_the_resumed_grid_then_the_token_is_dead(server):
    async def go():
        token, _, grid, _ = await lost_selection(server.url, choose=2)
        b = await Raw.open(server.url, resume=token)
        assert b.grid["items"] == grid["items"]
        d = await b.ok({"type": "decide", "id": b.grid["items"][6]["id"]}, "decided")
        assert d["item"]["id"] == b.grid["items"][6]["id"] and d["steps"] == grid["step"]
        await b.close()
        c = await Raw.open(server.url, resume=b.token)          # a decided selection is not resumable
        assert c.welcome["resumed"] is False
        await c.nothing_follows()
        m = await c.req({"type": "choose", "id": grid["items"][0]["id"]})
        assert (m["type"], m.get("code")) == ("error", "wrong_state"), m
        await c.close()
    asyncio.run(go())


def test_image_start_grid_resumes_with_its_reconstruction_which_no_stranger_can_fetch(server):
    """The first grid of an image start resumes with its `reconstruction`; the reconstruction (the user's own photo,
    more or less) stays fetchable only by its uploader: a third connection gets `not_found`."""
    async def go():
        a = await Raw.open(server.url)
        g = await a.ok({"type": "start", "algorithm": "pca", "init": "image", "image": small_png()}, "candidates")
        assert "reconstruction" in g
        token, rhash = a.token, g["reconstruction"]["hash"]
        await a.close()
        b = await Raw.open(server.url, resume=token)
        assert b.grid["step"] == 1 and b.grid["items"] == g["items"]
        assert b.grid.get("reconstruction", {}).get("hash") == rhash, "the image start's reconstruction was lost"
        stranger = await Raw.open(server.url)
        m = await stranger.req({"type": "texture.get", "hashes": [rhash]})
        assert (m["type"], m.get("code")) == ("error", "not_found"), "a stranger fetched someone's reconstruction"
        # the catalog textures of the resumed grid can be fetched as always
        hashes = [i["texture"] for i in b.grid["items"]]
        rid = await b.send({"type": "texture.get", "hashes": hashes})
        got = [await b.next() for _ in hashes]
        assert [(m["type"], m["rid"], m["hash"]) for m in got] == [("texture", rid, h) for h in hashes]
        await b.ok({"type": "choose", "id": b.grid["items"][0]["id"]}, "candidates")
        await b.close()
        await stranger.close()
    asyncio.run(go())


# --- spending: reuse, races, takeovers ---------------------------------------------------------------------------------

def test_a_spent_token_resumes_nothing_and_a_chain_of_resumes_works(server):
    async def go():
        token, _, grid, _ = await lost_selection(server.url)
        b = await Raw.open(server.url, resume=token)
        assert b.welcome["resumed"] is True
        await b.nothing_follows()          # b's client is heard from: it has its new token, the old one is spent
        await b.close()
        again = await Raw.open(server.url, resume=token)       # spent
        assert again.welcome["resumed"] is False and "resume" in again.welcome
        await again.nothing_follows()
        await again.close()
        c = await Raw.open(server.url, resume=b.token)          # the fresh token goes on
        assert c.welcome["resumed"] is True and c.grid["items"] == grid["items"]
        await c.nothing_follows()
        await c.close()
        for t in (token, b.token):                              # both spent now
            d = await Raw.open(server.url, resume=t)
            assert d.welcome["resumed"] is False
            await d.close()
        e = await Raw.open(server.url, resume=c.token)
        assert e.welcome["resumed"] is True
        await e.close()
    asyncio.run(go())


async def _served(conns, item):
    """The connections a `choose` still works on; the others answer wrong_state or were closed (superseded)."""
    served = []
    for c in conns:
        try:
            m = await c.req({"type": "choose", "id": item}, timeout=3)
        except (websockets.ConnectionClosed, asyncio.TimeoutError):
            continue
        if m["type"] == "candidates":
            served.append(c)
        else:
            assert (m["type"], m.get("code")) == ("error", "wrong_state"), m
    return served


async def _race(url, token, n):
    """n connections, handshakes done, present the same token in the same instant."""
    conns = [Raw(await websockets.connect(url, max_size=None, compression=None)) for _ in range(n)]
    hello = msgpack.packb({"type": "hello", "rid": 1, "protocol": 1, "client": "race", "protocol_minor": 7,
                           "resume": token})
    await asyncio.gather(*(c.ws.send(hello) for c in conns))
    for c in conns:
        c.welcome = await c.next()
        assert c.welcome["type"] == "welcome", c.welcome
        if c.welcome["resumed"]:
            c.grid = await c.next()
    return conns


def test_simultaneous_hellos_with_one_token_leave_one_connection_with_the_selection(server):
    """The doc: until the client is heard from on the connection that resumed, the presented token still reaches the
    selection (its welcome may have been lost), and a later presenter takes it over, closing the earlier one. So racers
    may each be told `resumed: true` in turn, but in the end one connection, and only one, is served."""
    async def go():
        for n in (2, 2, 2, 5, 8):
            token, _, grid, _ = await lost_selection(server.url, rate=False, choose=0)
            conns = await _race(server.url, token, n)
            winners = [c for c in conns if c.welcome["resumed"]]
            assert winners and all(c.grid["items"] == grid["items"] for c in winners)
            served = await _served(conns, grid["items"][1]["id"])
            assert len(served) == 1, f"{len(served)} of {n} connections are served one selection"
            for c in conns:
                await c.close()
    asyncio.run(go())


def test_a_live_connections_token_takes_it_over_and_what_it_sends_after_is_ignored(server):
    """The old link is still open (half-open: the client sends but never answers a close): the new connection gets
    the selection, the old one a close 1000 "... resumed on another connection"; a `decide` and a `start` it sends
    after the takeover change nothing; /healthz then keeps no lost selection for it."""
    async def go():
        before = kept(server)
        a = await Silent.open(server.port)
        g = await a.req({"type": "start", "algorithm": "pca", "init": "random", "seed": 2, "policy": "thompson"})
        assert g["type"] == "candidates"
        b = await Raw.open(server.url, resume=a.welcome["resume"]["token"])
        assert b.welcome["resumed"] is True and b.grid["items"] == g["items"]
        await a.send({"type": "decide", "id": g["items"][0]["id"]})
        await a.send({"type": "start", "algorithm": "raw", "init": "random", "seed": 9})
        after = await a.drain()
        assert not [m for m in after if m["type"] in ("decided", "candidates")], \
            f"the old connection was still served after the takeover: {[m['type'] for m in after]}"
        assert a.closed and a.closed[0] == 1000 and "resumed on another connection" in a.closed[1], a.closed
        m = await b.ok({"type": "choose", "id": g["items"][0]["id"]}, "candidates")
        assert m["step"] == 2 and m["algorithm"] == "pca"
        a.abort()
        await asyncio.sleep(0.2)
        assert kept(server) == before, "the taken-over connection left a lost selection behind"
        await b.close()
    asyncio.run(go())


def test_two_strangers_race_for_a_live_connections_token(server):
    async def go():
        a = await Silent.open(server.port)
        g = await a.req({"type": "start", "algorithm": "pca", "init": "random", "seed": 3})
        conns = await _race(server.url, a.welcome["resume"]["token"], 3)
        winners = [c for c in conns if c.welcome["resumed"]]
        assert winners and all(c.grid["items"] == g["items"] for c in winners)
        await a.drain()
        assert a.closed and a.closed[0] == 1000, a.closed
        assert len(await _served(conns, g["items"][8]["id"])) == 1
        for c in conns:
            await c.close()
        a.abort()
    asyncio.run(go())


def _consistent(b_grid, before, a_replies, kind):
    """What the taken-over connection was told and what the new one resumed agree: a grid the old connection received
    is the grid that resumed (else two screens showed one selection differently); otherwise the resumed grid is the
    one before the in-flight request, or that request's grid (done, its answer withheld from the closed link)."""
    answered = [m for m in a_replies if m["type"] == "candidates"]
    if answered:
        assert b_grid["items"] == answered[-1]["items"], \
            f"{kind}: the old connection was shown a grid (step {answered[-1]['step']}) that is not the one resumed " \
            f"(step {b_grid['step']})"
    elif kind in ("ideal", "rate"):
        assert b_grid["items"] == before["items"], f"{kind} changed the grid"
    else:
        assert b_grid["items"] == before["items"] or b_grid["step"] in (before["step"] + 1, 1), \
            f"{kind}: the resumed grid is neither the grid before nor the {kind}'s answer"


@pytest.mark.parametrize("delay", [0.0, 0.02, 0.08])
def test_takeover_while_an_image_start_is_projected(server, delay):
    """An image `start` in flight on the old connection when its token is presented: whichever grid resumes, it stays
    the selection (the upload finishing later does not replace it under the new connection), and its `choose` works."""
    image = big_png()

    async def go():
        a = await Silent.open(server.port)
        before = await a.req({"type": "start", "algorithm": "pca", "init": "random", "seed": 4})
        await a.send({"type": "start", "algorithm": "pca", "init": "image", "image": image})
        await asyncio.sleep(delay)
        b = await Raw.open(server.url, resume=a.welcome["resume"]["token"])
        assert b.welcome["resumed"] is True
        a_replies = await a.drain()
        assert a.closed, "the old connection was not closed"
        _consistent(b.grid, before, a_replies, "image start")
        await asyncio.sleep(0.3)
        await b.nothing_follows()                                # the upload's late answer never reaches b
        m = await b.req({"type": "choose", "id": b.grid["items"][1]["id"]})
        assert m["type"] == "candidates" and m["step"] == b.grid["step"] + 1, \
            f"the resumed grid is no longer the selection's: {m}"
        a.abort()
        await b.close()
    asyncio.run(go())


@pytest.mark.parametrize("request_kind", ["choose", "skip", "ideal", "rate"])
def test_takeover_while_a_request_is_in_flight(server, request_kind):
    async def go():
        for delay in (0.0, 0.001, 0.005):
            a = await Silent.open(server.port)
            before = await a.req({"type": "start", "algorithm": "pca", "init": "random", "seed": 6,
                                  "policy": "infogain"})
            msg = {"choose": {"type": "choose", "id": before["items"][2]["id"]}, "skip": {"type": "skip"},
                   "ideal": {"type": "ideal"}, "rate": {"type": "rate", "id": before["items"][2]["id"], "rating": 4}}
            await a.send(msg[request_kind])
            await asyncio.sleep(delay)
            b = await Raw.open(server.url, resume=a.welcome["resume"]["token"])
            assert b.welcome["resumed"] is True
            a_replies = await a.drain()
            _consistent(b.grid, before, a_replies, request_kind)
            await b.nothing_follows()
            await b.ok({"type": "ideal"}, "ideal.result")
            m = await b.req({"type": "choose", "id": b.grid["items"][3]["id"]})
            assert m["type"] == "candidates", f"choose on the resumed grid: {m}"
            shown_before = set(ids(before)) | set(ids(b.grid))
            assert not set(ids(m)[1:]) & shown_before
            a.abort()
            await b.close()
    asyncio.run(go())


@pytest.fixture(scope="module")
def durable_server(engine17, tmp_path_factory):
    """Events fsynced to a JSON-lines log and a store before each reply: a pick's reply waits on disk, a window in
    which the selection has moved on and its old connection has not been told yet."""
    configure_logging("warning")
    d = tmp_path_factory.mktemp("durable")
    srv = RunningServer(engine17, events_path=d / "events.jsonl", store_path=d / "store.db",
                        calibration=load_patterns(REPO / "calibration"))
    srv.events_path = d / "events.jsonl"
    yield srv
    srv.stop()


@pytest.mark.parametrize("request_kind", ["choose", "skip", "decide"])
def test_takeover_while_a_pick_is_being_committed(durable_server, request_kind):
    """The new connection's handshake is done; its resuming hello goes out right behind the old connection's pick.
    Whatever interleaving: what the old connection was told agrees with what resumed (a decided selection never
    resumes; a grid the old one was shown is the one resumed), and the resumed grid takes the next pick."""
    async def go():
        outcomes = set()
        for k in range(4):
            a = await Silent.open(durable_server.port)
            before = await a.req({"type": "start", "algorithm": "pca", "init": "random", "seed": k,
                                  "policy": "infogain"})
            b = Raw(await websockets.connect(durable_server.url, max_size=None, compression=None))
            pick = {"choose": {"type": "choose", "id": before["items"][2]["id"]}, "skip": {"type": "skip"},
                    "decide": {"type": "decide", "id": before["items"][2]["id"]}}[request_kind]
            await a.send(pick)
            if k % 2:
                await asyncio.sleep(0.0005 * k)
            await b.send({"type": "hello", "protocol": 1, "client": "race", "protocol_minor": 7,
                          "resume": a.welcome["resume"]["token"]})
            b.welcome = await b.next()
            a_replies = await a.drain()
            a_types = [m["type"] for m in a_replies]
            outcomes.add((tuple(a_types), b.welcome["resumed"]))
            if request_kind == "decide":
                assert not ("decided" in a_types and b.welcome["resumed"]), \
                    "the old connection was told `decided` and the selection resumed on the new one"
                if b.welcome["resumed"]:
                    b.grid = await b.next()
                    assert b.grid["items"] == before["items"]
            else:
                assert b.welcome["resumed"] is True
                b.grid = await b.next()
                _consistent(b.grid, before, a_replies, request_kind)
                m = await b.req({"type": "choose", "id": b.grid["items"][1]["id"]})
                assert m["type"] == "candidates", m
            a.abort()
            await b.close()
    asyncio.run(go())


def test_presenting_ones_own_token_in_a_second_hello_is_refused_and_spends_nothing(server):
    async def go():
        a = await Raw.open(server.url)
        g = await a.ok({"type": "start", "algorithm": "pca", "init": "random", "seed": 1}, "candidates")
        m = await a.req({"type": "hello", "protocol": 1, "client": "x", "protocol_minor": 7, "resume": a.token})
        assert (m["type"], m.get("code")) == ("error", "wrong_state"), m
        await a.ok({"type": "choose", "id": g["items"][1]["id"]}, "candidates")  # still the same selection here
        token = a.token
        await a.close()
        b = await Raw.open(server.url, resume=token)
        assert b.welcome["resumed"] is True and b.grid["step"] == 2
        await b.close()
    asyncio.run(go())


def test_a_live_connections_token_with_nothing_to_resume_is_not_taken_from_it(server):
    """"A token whose selection cannot go on is not taken from a connection that is still open (a duplicated browser
    tab does not close the tab it copied)": presented while its connection is open and has not started (or has
    decided), it is `resumed: false`, nothing follows, the open connection keeps its link and its token, which
    resumes its selection later."""
    async def go():
        a = await Raw.open(server.url)
        b = await Raw.open(server.url, resume=a.token)
        assert b.welcome["resumed"] is False
        await b.nothing_follows()
        await b.close()
        await a.ok({"type": "ping", "t": 0}, "pong")            # still open
        g = await a.ok({"type": "start", "algorithm": "pca", "init": "random"}, "candidates")
        await a.close()
        c = await Raw.open(server.url, resume=a.token)
        assert c.welcome["resumed"] is True and c.grid["items"] == g["items"]
        # a decided one, still open: not closed, and the token stays with it
        d = await Raw.open(server.url, resume=c.token)           # c is open: this takes c's selection over
        assert d.welcome["resumed"] is True
        with pytest.raises(websockets.ConnectionClosed):
            await c.req({"type": "ping", "t": 0})
        assert c.ws.close_code == 1000
        await d.ok({"type": "decide", "id": d.grid["items"][0]["id"]}, "decided")
        e = await Raw.open(server.url, resume=d.token)
        assert e.welcome["resumed"] is False
        await e.nothing_follows()
        await d.ok({"type": "ping", "t": 0}, "pong")            # the decided connection keeps its link
        await d.ok({"type": "start", "algorithm": "pca", "init": "random"}, "candidates")
        await d.close()
        f = await Raw.open(server.url, resume=d.token)           # and its token, for its next selection
        assert f.welcome["resumed"] is True
        for x in (e, f):
            await x.close()
    asyncio.run(go())


def test_back_after_resuming_walks_the_old_connections_steps(server):
    """v1.7's `back` on a resumed selection: the grids before the resume come back exactly (same faces, order,
    step), down to the first, where `back` is wrong_state; a selection resumed after a `back` resumes the grid the
    `back` returned."""
    async def go():
        a = await Raw.open(server.url)
        g1 = await a.ok({"type": "start", "algorithm": "pca", "init": "random", "seed": 21, "policy": "thompson"},
                        "candidates")
        g2 = await a.ok({"type": "choose", "id": g1["items"][4]["id"]}, "candidates")
        g3 = await a.ok({"type": "skip"}, "candidates")
        await a.ok({"type": "choose", "id": g3["items"][2]["id"]}, "candidates")
        back = await a.ok({"type": "back"}, "candidates")
        assert (back["step"], ids(back)) == (3, ids(g3))
        await a.close()
        b = await Raw.open(server.url, resume=a.token)
        assert (b.grid["step"], ids(b.grid)) == (3, ids(g3)), "the resumed grid is not the one `back` returned"
        for want in (g2, g1):
            m = await b.ok({"type": "back"}, "candidates")
            assert (m["step"], ids(m)) == (want["step"], ids(want))
        m = await b.req({"type": "back"})
        assert (m["type"], m.get("code")) == ("error", "wrong_state"), m
        again = await b.ok({"type": "choose", "id": g1["items"][4]["id"]}, "candidates")
        assert again["step"] == 2 and again["items"][0]["id"] == g1["items"][4]["id"]
        await b.close()
    asyncio.run(go())


# --- hostile values -------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("bad, code", [
    (1, "bad_field"), (-1, "bad_field"), (2 ** 64 - 1, "bad_field"), (1.5, "bad_field"), (True, "bad_field"),
    (b"0" * 32, "bad_field"), (["x"], "bad_field"), ({"token": "x"}, "bad_field"), ("a" * 65, "bad_field"),
    (list(range(5000)), "too_large"),
])
def test_a_resume_of_the_wrong_type_or_size_is_refused_and_spends_nothing(server, bad, code):
    async def go():
        token, _, grid, _ = await lost_selection(server.url, rate=False)
        c = await Raw.open(server.url, greet=False)
        hello = {"type": "hello", "protocol": 1, "client": "attack/1.7", "protocol_minor": 7}
        m = await c.req({**hello, "resume": bad})
        assert m["type"] == "error" and m["code"] == code, (bad, m)
        if code == "bad_field":
            assert "hello.resume" in m["message"], m["message"]
        assert token not in m.get("message", "")
        w = await c.req({**hello, "resume": token})            # the same connection may greet again
        assert w["type"] == "welcome" and w["resumed"] is True, w
        assert (await c.next())["items"] == grid["items"]
        await c.close()
    asyncio.run(go())


def test_a_hello_over_64_KiB_is_not_read_and_spends_nothing(server):
    """Before the welcome frames are held to 64 KiB (a hello is a few hundred bytes): a resume of 70,000 chars closes
    the connection with 1009 at the frame's header (it was `too_large`, answered on an open connection, before the
    limit). The token it did not carry is not spent: the selection resumes on the next connection."""
    async def go():
        token, _, grid, _ = await lost_selection(server.url, rate=False)
        c = await Raw.open(server.url, greet=False)
        await c.send({"type": "hello", "protocol": 1, "client": "attack/1.7", "protocol_minor": 7,
                      "resume": "x" * 70_000})
        with pytest.raises(websockets.ConnectionClosedError) as closed:
            await c.next()
        assert closed.value.rcvd.code == 1009 and "before the welcome" in closed.value.rcvd.reason, closed.value
        b = await Raw.open(server.url, resume=token)
        assert b.welcome["resumed"] is True and b.grid["items"] == grid["items"]
        await b.close()
    asyncio.run(go())


def test_look_alike_tokens_resume_nothing_and_do_not_spend_the_real_one(server):
    """Prefixes, suffixes, padding, NULs, other strings of the right shape: welcome with `resumed: false` and nothing
    after it (never `bad_field`: each is a str of at most 64 chars); the real token still resumes afterwards."""
    async def go():
        token, _, grid, _ = await lost_selection(server.url, rate=False)
        fakes = ["", token[:31], token[:-1] + ("0" if token[-1] != "0" else "1"), token + "0", token + " ",
                 " " + token, token + "\x00", "\x00" + token, token * 2, "0" * 32, "g" * 32, "*", "%", ".*",
                 "../" + token, "é" * 32, "\U0001F600" * 16, token[:16]]
        for fake in fakes:
            assert len(fake) <= 64
            c = await Raw.open(server.url, resume=fake)
            assert c.welcome["type"] == "welcome" and c.welcome["resumed"] is False, (fake, c.welcome)
            await c.nothing_follows()
            await c.close()
        c = await Raw.open(server.url, resume=None)             # nil: absent, so no `resumed` at all
        assert c.welcome["type"] == "welcome" and "resumed" not in c.welcome
        await c.close()
        c = await Raw.open(server.url, resume=token)
        assert c.welcome["resumed"] is True and c.grid["items"] == grid["items"]
        await c.close()
    asyncio.run(go())


def test_a_refused_hello_spends_nothing_version_participant_device(server):
    """A hello refused for another field (wrong protocol, a participant code on a server without a study, a bad
    device) is not accepted, so the token it presents is not spent."""
    async def go():
        token, _, grid, _ = await lost_selection(server.url, rate=False)
        c = await Raw.open(server.url, greet=False)
        hello = {"type": "hello", "protocol": 1, "client": "attack/1.7", "protocol_minor": 7, "resume": token}
        for bad in ({"protocol": 2}, {"participant": "alpha-7"}, {"device": 7}, {"client": 5}):
            m = await c.req({**hello, **bad})
            assert m["type"] == "error" and m["code"] == "bad_field", (bad, m)
        w = await c.req(hello)
        assert w["type"] == "welcome" and w["resumed"] is True, w
        assert (await c.next())["items"] == grid["items"]
        await c.close()
    asyncio.run(go())


# --- what does and does not carry over -----------------------------------------------------------------------------

def test_the_drawing_does_not_resume_but_the_selection_and_calibration_requests_work(server):
    """A drawing stays behind: after resuming, `sketch.stroke` before `sketch.begin` and a sketch start are
    wrong_state; `sketch.begin` opens a fresh one (revision 0); a calibration begun on the old connection is not
    finished on the new one (`calibrate.end` is wrong_state or calibration_failed, never internal)."""
    stroke = {"type": "sketch.stroke", "points": [0.2, 0.3, 0.5, 0.6, 0.8, 0.3], "colour": [10, 10, 10],
              "width": 0.02}

    async def go():
        a = await Raw.open(server.url)
        await a.ok({"type": "sketch.begin"}, "sketch.result")
        r = await a.ok(stroke, "sketch.result")
        assert r["items"]
        g = await a.ok({"type": "start", "algorithm": "pca", "init": "sketch"}, "candidates")
        await a.ok({"type": "calibrate.begin"}, "calibration")
        now = (await a.ok({"type": "ping", "t": 0}, "pong"))["server_time"]
        await a.send({"type": "gaze.batch",
                      "samples": [[now - 0.5 + k * 0.01, "eye", 0.0, 1.6, 0.0, 0.0, 0.0, -1.0, 1.0]
                                  for k in range(20)]})
        await a.ok({"type": "ping", "t": 0}, "pong")
        token = a.token
        await a.close()

        b = await Raw.open(server.url, resume=token)
        assert b.welcome["resumed"] is True and b.grid["items"] == g["items"]
        m = await b.req(stroke)
        assert (m["type"], m.get("code")) == ("error", "wrong_state"), f"the drawing came back: {m['type']}"
        m = await b.req({"type": "start", "algorithm": "pca", "init": "sketch"})
        assert (m["type"], m.get("code")) == ("error", "wrong_state"), m
        m = await b.req({"type": "calibrate.end", "shown": [[0, now - 0.5, now - 0.3]]})
        assert m["type"] == "error" and m["code"] in ("wrong_state", "calibration_failed"), m
        m = await b.req({"type": "calibrate.cancel"})
        assert m["type"] in ("calibration.cancelled", "error") and m.get("code") != "internal", m
        r = await b.ok({"type": "sketch.begin"}, "sketch.result")
        assert r["revision"] == 0 and r["items"] == []
        await b.ok({"type": "choose", "id": b.grid["items"][0]["id"]}, "candidates")   # the selection goes on
        await b.ok({"type": "calibrate.begin"}, "calibration")
        await b.ok({"type": "calibrate.cancel"}, "calibration.cancelled")
        await b.close()
    asyncio.run(go())


def test_takeover_while_a_sketch_start_waits_for_its_projection(server):
    """The old connection streams strokes and sends a sketch `start` that waits for the projection; the token is
    presented meanwhile. The new connection gets one consistent grid and no `sketch.result` of the old drawing."""
    async def go():
        a = await Silent.open(server.port)
        before = await a.req({"type": "start", "algorithm": "pca", "init": "random", "seed": 8})
        await a.req({"type": "sketch.begin"})
        rng = np.random.default_rng(0)
        for k in range(30):
            await a.send({"type": "sketch.stroke", "points": rng.random(200).tolist(), "colour": [0, 0, 0],
                          "width": 0.01, "append": k % 5 != 0})
        await a.send({"type": "start", "algorithm": "pca", "init": "sketch"})
        b = await Raw.open(server.url, resume=a.welcome["resume"]["token"])
        assert b.welcome["resumed"] is True
        a_replies = await a.drain()
        _consistent(b.grid, before, [m for m in a_replies if m["type"] == "candidates"], "sketch start")
        await asyncio.sleep(0.3)
        await b.nothing_follows()                                 # no sketch.result / preview of a's drawing
        m = await b.req({"type": "choose", "id": b.grid["items"][1]["id"]})
        assert m["type"] == "candidates", m
        a.abort()
        await b.close()
    asyncio.run(go())


# --- the token server -------------------------------------------------------------------------------------------------

@pytest.fixture()
def token_server(engine17):
    configure_logging("warning")
    srv = RunningServer(engine17, token="s3cret-access", hello_limiter=HelloLimiter(limit=10, window=1.5))
    yield srv
    srv.stop()


def test_resuming_never_skips_the_access_token_and_an_unauthorized_hello_spends_nothing(token_server):
    async def go():
        token, _, grid, _ = await lost_selection(token_server.url, rate=False, token="s3cret-access")
        c = await Raw.open(token_server.url, greet=False)
        hello = {"type": "hello", "protocol": 1, "client": "attack/1.7", "protocol_minor": 7, "resume": token}
        for extra in ({}, {"token": "wrong"}):
            m = await c.req({**hello, **extra})
            assert (m["type"], m.get("code")) == ("error", "unauthorized"), m
            assert "resumed" not in m
        w = await c.req({**hello, "token": "s3cret-access"})
        assert w["type"] == "welcome" and w["resumed"] is True, "an unauthorized hello spent the token"
        assert (await c.next())["items"] == grid["items"]
        assert w["resume"]["token"] != "s3cret-access" and "s3cret-access" not in json.dumps(w)
        await c.close()
        # bogus resume tokens are answered (welcome, resumed: false): not failed hellos, so no lockout follows
        for _ in range(12):
            c = await Raw.open(token_server.url, resume="0" * 32, token="s3cret-access")
            assert c.welcome["resumed"] is False
            await c.close()
        c = await Raw.open(token_server.url, token="s3cret-access")
        assert c.welcome["type"] == "welcome"
        await c.close()
    asyncio.run(go())


def test_a_locked_out_address_spends_no_token(token_server):
    """After 10 failed hellos the address is refused unchecked ("retry in N s", close 1008): such a hello, even with
    the right access token and a live resume token, spends nothing; after the window the token resumes."""
    async def go():
        token, _, grid, _ = await lost_selection(token_server.url, rate=False, token="s3cret-access")
        failures = 0
        while failures < 10:
            c = await Raw.open(token_server.url, greet=False)
            for _ in range(min(3, 10 - failures)):
                m = await c.req({"type": "hello", "protocol": 1, "client": "x", "token": "nope"})
                assert m["code"] == "unauthorized"
                failures += 1
            await c.ws.close()
        c = await Raw.open(token_server.url, greet=False)
        m = await c.req({"type": "hello", "protocol": 1, "client": "x", "protocol_minor": 7, "resume": token,
                         "token": "s3cret-access"})
        assert (m["type"], m.get("code")) == ("error", "unauthorized") and "retry in" in m["message"], m
        await c.ws.wait_closed()
        assert c.ws.close_code == 1008
        await asyncio.sleep(1.7)
        c = await Raw.open(token_server.url, resume=token, token="s3cret-access")
        assert c.welcome["resumed"] is True, "a hello refused by the lockout spent the token"
        assert c.grid["items"] == grid["items"]
        await c.close()
    asyncio.run(go())


# --- study server -----------------------------------------------------------------------------------------------------

STUDY = """\
name = "v17"
title = "v1.7 attack"
order = "latin"
practice_trials = 0
participants = ["alpha-7", "bravo-3"]

[[conditions]]
model = "raw"
policy = "study"

[[conditions]]
model = "pca"
policy = "thompson"
"""


@pytest.fixture()
def study_server(engine17, tmp_path):
    srv = serve_study(engine17, tmp_path / "s.db", STUDY)
    yield srv
    srv.stop()


def test_a_study_server_gives_no_token_and_resumes_no_token(study_server, server):
    """Participants resume by their code: a v1.7 participant gets no `welcome.resume`; a hello presenting a token
    (another server's live one, or any string) is `resumed: false` with nothing after it, and the trial goes on by
    `study.next` as before; without a code the hello is still unauthorized."""
    async def go():
        foreign, _, _, _ = await lost_selection(server.url, rate=False)
        c = await Raw.open(study_server.url, participant="alpha-7")
        assert "resume" not in c.welcome and "study" in c.welcome
        trial = await c.ok({"type": "study.next"}, "candidates")
        await c.ok({"type": "choose", "id": trial["items"][0]["id"]}, "candidates")
        await c.close()
        c = await Raw.open(study_server.url, greet=False)
        m = await c.req({"type": "hello", "protocol": 1, "client": "x", "protocol_minor": 7, "resume": foreign})
        assert (m["type"], m.get("code")) == ("error", "unauthorized"), m
        await c.close()
        for tok in (foreign, "0" * 32):
            c = await Raw.open(study_server.url, participant="alpha-7", resume=tok)
            assert c.welcome["type"] == "welcome" and c.welcome["resumed"] is False, c.welcome
            assert "resume" not in c.welcome
            await c.nothing_follows()
            again = await c.ok({"type": "study.next"}, "candidates")
            assert again["step"] == 2 and "trial" in again
            await c.close()
        # the foreign token was not spent on the study server: it still resumes on its own
        c = await Raw.open(server.url, resume=foreign)
        assert c.welcome["resumed"] is True
        await c.close()
    asyncio.run(go())


# --- time to live, restarts -------------------------------------------------------------------------------------------

def test_ttl_counts_from_the_loss(short_server):
    async def go():
        a = await Raw.open(short_server.url)
        assert a.welcome["resume"]["ttl_s"] == pytest.approx(0.6)
        g = await a.ok({"type": "start", "algorithm": "pca", "init": "random"}, "candidates")
        await asyncio.sleep(1.0)              # connected longer than the ttl: it counts from the loss
        await a.close()
        b = await Raw.open(short_server.url, resume=a.token)
        assert b.welcome["resumed"] is True and b.grid["items"] == g["items"], \
            "the ttl ran from the welcome, not from the lost connection"
        await b.close()
        await asyncio.sleep(1.0)              # now past the ttl
        c = await Raw.open(short_server.url, resume=b.token)
        assert c.welcome["resumed"] is False
        await c.nothing_follows()
        await c.close()
    asyncio.run(go())


def test_expired_selections_are_let_go(short_server):
    """Kept "for `--resume-minutes`": once past the ttl a lost selection is no longer kept, and /healthz (which
    "shows how many") no longer counts it, even when no other client comes or goes meanwhile."""
    async def go():
        for seed in (1, 2):
            d = await Raw.open(short_server.url)
            await d.ok({"type": "start", "algorithm": "pca", "init": "random", "seed": seed}, "candidates")
            await d.close()
        await asyncio.sleep(0.2)
        assert kept(short_server) == 2
        await asyncio.sleep(1.2)              # past the ttl, the server idle
        assert kept(short_server) == 0, \
            f"/healthz still counts (and the server still holds) expired selections: {health(short_server)['resumable']}"
    asyncio.run(go())


def test_resume_ttl_zero_keeps_nothing_and_tokens_do_not_cross_servers(engine17, server):
    configure_logging("warning")
    zero = RunningServer(engine17, resume_ttl_s=0)
    try:
        async def go():
            token, _, _, _ = await lost_selection(zero.url, rate=False)
            await asyncio.sleep(0.1)
            c = await Raw.open(zero.url, resume=token or "0" * 32)   # ttl 0 may issue no token at all
            assert c.welcome["resumed"] is False
            await c.nothing_follows()
            await c.close()
            r = health(zero)["resumable"]          # null: the server keeps none
            assert r is None or r["detached"] == 0, r
            # another server (or this one restarted) knows none of the other's tokens
            token, _, _, _ = await lost_selection(server.url, rate=False)
            c = await Raw.open(zero.url, resume=token)
            assert c.welcome["resumed"] is False
            await c.close()
            c = await Raw.open(server.url, resume=token)
            assert c.welcome["resumed"] is True
            await c.close()
        asyncio.run(go())
    finally:
        zero.stop()


# --- memory: floods of dropped selections ------------------------------------------------------------------------------

async def _drop_one(srv, kind):
    """One connection that says hello and drops its link (a lost link, not a goodbye) after: nothing more (`hello`),
    a started selection (`start`), a decided one (`decide`), or a started one as an old client without a token
    (`old`). Returns its resume token, if it got one."""
    ws = await websockets.connect(srv.url, max_size=None, compression=None)
    hello = {"type": "hello", "rid": 1, "protocol": 1, "client": "flood", "protocol_minor": 7}
    if kind == "old":
        del hello["protocol_minor"]
    await ws.send(msgpack.packb(hello))
    w = msgpack.unpackb(await ws.recv())
    if kind in ("start", "old", "decide"):
        await ws.send(msgpack.packb({"type": "start", "rid": 2, "algorithm": "raw", "init": "random",
                                     "policy": "random"}))
        g = msgpack.unpackb(await ws.recv())
        if kind == "decide":
            await ws.send(msgpack.packb({"type": "decide", "rid": 3, "id": g["items"][0]["id"]}))
            assert msgpack.unpackb(await ws.recv())["type"] == "decided"
    ws.transport.abort()
    return w.get("resume", {}).get("token")


async def _flood(srv, kind, n, batch=40):
    tokens = []
    for k in range(0, n, batch):
        tokens += await asyncio.gather(*(_drop_one(srv, kind) for _ in range(min(batch, n - k))))
    await asyncio.sleep(0.2)
    return tokens


@pytest.fixture()
def fresh_server(engine17):
    configure_logging("warning")
    srv = RunningServer(engine17)
    yield srv
    srv.stop()


def test_a_flood_of_dropped_selections_keeps_at_most_512_oldest_first(fresh_server):
    """600 connections each start a selection and drop: /healthz keeps at most 512, the oldest went first (its token
    resumes nothing), the newest still resumes."""
    async def go():
        tokens = await _flood(fresh_server, "start", 600)
        n = kept(fresh_server)
        assert 0 < n <= 512, f"{n} lost selections kept"
        first = await Raw.open(fresh_server.url, resume=tokens[0])
        assert first.welcome["resumed"] is False, "the oldest lost selection was not the one let go"
        await first.close()
        last = await Raw.open(fresh_server.url, resume=tokens[-1])
        assert last.welcome["resumed"] is True
        await last.close()
    asyncio.run(go())


def test_connections_with_nothing_to_resume_take_no_place_among_the_512(fresh_server):
    """A connection that only said hello, or whose selection was decided, has nothing a token could resume ("the
    selection was already decided or never started": resumed false), so keeping it as a lost selection only evicts
    real ones: 520 hello-and-drop connections must not push out a user's lost selection; 60 decided ones add nothing
    to /healthz `resumable`. (Old clients, who get no token, already add nothing.)"""
    async def go():
        problems = []
        for kind in ("old", "decide"):
            before = kept(fresh_server)
            await _flood(fresh_server, kind, 60)
            if kept(fresh_server) != before:
                problems.append(f"60 dropped connections of kind {kind!r} added {kept(fresh_server) - before} "
                                f"kept selections")
        victim, _, _, _ = await lost_selection(fresh_server.url, rate=False)
        await _flood(fresh_server, "hello", 520)
        v = await Raw.open(fresh_server.url, resume=victim)
        if not v.welcome["resumed"]:
            problems.append(f"520 connections that only said hello and dropped evicted a user's lost selection "
                            f"(/healthz resumable: {health(fresh_server)['resumable']})")
        await v.close()
        assert not problems, "; ".join(problems)
    asyncio.run(go())


# --- secrets in logs and the store ---------------------------------------------------------------------------------

def test_tokens_never_reach_logs_events_or_the_store(engine17, tmp_path, capfd):
    """Debug logs on stderr, the JSON-lines events and the SQLite store (which keeps every message in and out) hold no
    token: neither issued, presented, spent, bogus nor resumed. The resume event names `from_session`."""
    events, db = tmp_path / "events.jsonl", tmp_path / "store.db"
    configure_logging("debug")
    srv = RunningServer(engine17, events_path=events, store_path=db, token="s3cret-access")
    seen = []
    try:
        async def go():
            a = await Raw.open(srv.url, token="s3cret-access", client="leak-probe/1")
            seen.append(a.token)
            g = await a.ok({"type": "start", "algorithm": "pca", "init": "random"}, "candidates")
            await a.close()
            c = await Raw.open(srv.url, greet=False)          # unauthorized, presenting it
            m = await c.req({"type": "hello", "protocol": 1, "client": "x", "resume": a.token})
            assert m["code"] == "unauthorized"
            await c.close()
            b = await Raw.open(srv.url, token="s3cret-access", resume=a.token)
            assert b.welcome["resumed"] is True
            seen.append(b.token)
            await b.ok({"type": "choose", "id": g["items"][0]["id"]}, "candidates")
            for tok in (a.token, "feedfacefeedfacefeedfacefeedface"):   # spent and bogus
                d = await Raw.open(srv.url, token="s3cret-access", resume=tok)
                assert d.welcome["resumed"] is False
                seen.append(d.token)
                await d.close()
            seen.append("feedfacefeedfacefeedfacefeedface")
            await b.close()
            return a.welcome["session_id"], b.welcome["session_id"], ids(b.grid)
        old_sid, new_sid, shown_ids = asyncio.run(go())
    finally:
        srv.stop()
        logs = capfd.readouterr().err
        configure_logging("warning")
    assert old_sid in logs, "the logs were not captured"
    blobs = {"stderr logs": logs.encode(), "events": events.read_bytes()}
    for p in tmp_path.iterdir():
        if p.name.startswith("store.db"):
            blobs[p.name] = p.read_bytes()
    assert b"leak-probe/1" in b"".join(v for k, v in blobs.items() if k.startswith("store.db")), \
        "the store keeps no messages in a readable form: the search below would prove nothing"
    for tok in seen:
        for where, blob in blobs.items():
            for form in (tok.encode(), tok.upper().encode(), bytes.fromhex(tok)):
                assert form not in blob, f"a resume token reached the {where}"
    import sqlite3
    with sqlite3.connect(db) as con:
        rows = con.execute("SELECT step, position, item FROM candidates WHERE session_id = ? AND event = 'resume' "
                           "ORDER BY position", (new_sid,)).fetchall()
    assert [r[2] for r in rows] == shown_ids and {r[0] for r in rows} == {1}, \
        f"the store's candidates table lacks the resumed grid: {rows}"
    resumes = [json.loads(line) for line in events.read_text().splitlines() if '"resume"' in line]
    assert any(e.get("event") == "resume" and e.get("from_session") == old_sid and e.get("session_id") == new_sid
               for e in resumes), resumes
    assert "s3cret-access" not in logs


# --- old clients ------------------------------------------------------------------------------------------------------

def test_old_clients_golden_vectors_see_nothing_of_v1_7(server):
    """The v1.0 and v1.6 hello vectors, sent byte for byte: no `resume`, no `resumed`; the v1.0 start vector gets its
    grid with its rid; every reply carries a rid."""
    async def go():
        for hello in ("hello", "hello_v1_1", "hello_v1_5_device", "hello_v1_6"):
            ws = await websockets.connect(server.url, max_size=None, compression=None)
            await ws.send((VECTORS / f"{hello}.msgpack").read_bytes())
            w = msgpack.unpackb(await asyncio.wait_for(ws.recv(), 10))
            assert w["type"] == "welcome" and w["rid"] == 1
            assert "resume" not in w and "resumed" not in w, (hello, w)
            await ws.send((VECTORS / "start_random.msgpack").read_bytes())
            g = msgpack.unpackb(await asyncio.wait_for(ws.recv(), 10))
            assert g["type"] == "candidates" and g["rid"] == 2 and len(g["items"]) == GRID
            await ws.send(msgpack.packb({"type": "choose", "rid": 4, "id": g["items"][1]["id"]}))
            g2 = msgpack.unpackb(await asyncio.wait_for(ws.recv(), 10))
            assert g2["type"] == "candidates" and g2["rid"] == 4 and g2["step"] == 2
            await ws.close()
    asyncio.run(go())


def test_a_v1_6_client_may_present_a_token_but_is_told_no_new_one(server):
    """"The minor gates what the server tells a client, never what it accepts": a hello with protocol_minor 6 (or
    none) and a valid `resume` resumes, with the grid; it gets no `welcome.resume`. A v1.6 client's own dropped
    selection is not kept (it holds no token that could resume it)."""
    async def go():
        for minor in (6, None):
            token, _, grid, _ = await lost_selection(server.url, rate=False)
            c = await Raw.open(server.url, minor=minor, resume=token)
            assert c.welcome["resumed"] is True and "resume" not in c.welcome, c.welcome
            assert c.grid["items"] == grid["items"]
            await c.close()
        before = kept(server)
        old = await Raw.open(server.url, minor=6)
        await old.ok({"type": "start", "algorithm": "pca", "init": "random"}, "candidates")
        await old.close()
        await asyncio.sleep(0.2)
        assert kept(server) == before, "a v1.6 client's selection (no token: never resumable) is kept"
    asyncio.run(go())


# --- gaze calibration carries over -------------------------------------------------------------------------------------

BIAS_DEG = 12.0     # this tracker reports every gaze 12 degrees to the right of where the eyes look


def _ray(yaw_deg, pitch_deg):
    y, p = np.radians(yaw_deg), np.radians(pitch_deg)
    return [float(np.cos(p) * np.sin(y)), float(np.sin(p)), float(-np.cos(p) * np.cos(y))]


def _layout():
    """3x3 panels of 0.3 m, 1.5 m ahead of a viewer whose eyes are at (0, 1.5, 0) (the scene frame: -z forward)."""
    return {"type": "layout", "panels": [
        {"position": [(c - 1) * 0.36, 1.5 + (1 - r) * 0.36, -1.5], "rotation": [0.0, 0.0, 0.0, 1.0],
         "size": [0.3, 0.3]} for r in range(3) for c in range(3)]}


async def _look_at_centre(c, seconds=1.0):
    """Eye samples looking at the centre panel (4) for `seconds` after now, as the biased tracker reports them (sent
    once they are in the past: a sample may be at most 0.5 s ahead of the server)."""
    now = (await c.ok({"type": "ping", "t": 0}, "pong"))["server_time"]
    await asyncio.sleep(seconds + 0.05)
    n = int(seconds * 100)
    ray = _ray(BIAS_DEG, 0.0)
    samples = [[now + k / 100, "eye", 0.0, 1.5, 0.0, *ray, 1.0] for k in range(n)]
    for k in range(0, n, 50):
        await c.send({"type": "gaze.batch", "samples": samples[k:k + 50]})


def _gaze_on(events_path, session_id):
    """The faces of the session's last logged grid gaze, by dwell."""
    ev = [json.loads(line) for line in Path(events_path).read_text().splitlines()]
    gaze = [e for e in ev if e.get("event") == "gaze" and e.get("session_id") == session_id]
    assert gaze, f"no gaze event for {session_id}"
    return gaze[-1]


def test_a_gaze_calibration_carries_over_to_the_resumed_connection(durable_server):
    """"The gaze calibration carr[ies] over": a tracker biased 12 degrees to the right is calibrated on the old
    connection; on the resumed one, gaze streamed at the centre face lands on the centre face (uncalibrated, the same
    samples land on its right-hand neighbour: the control)."""
    async def go():
        a = await Raw.open(durable_server.url)
        await a.ok({"type": "start", "algorithm": "pca", "init": "random", "seed": 3}, "candidates")
        cal = await a.ok({"type": "calibrate.begin", "pattern": "nine-point"}, "calibration")
        now = (await a.ok({"type": "ping", "t": 0}, "pong"))["server_time"]
        t0, samples, shown = now - 4.0, [], []
        for k, (yaw, pitch) in enumerate(cal["targets"]):
            start = t0 + 0.4 * k
            samples += [[start + j / 100, "eye", 0.0, 1.5, 0.0, *_ray(yaw + BIAS_DEG, pitch), 1.0] for j in range(25)]
            shown.append([k, start, start + 0.25])
        for k in range(0, len(samples), 200):
            await a.send({"type": "gaze.batch", "samples": samples[k:k + 200]})
        done = await a.req({"type": "calibrate.end", "shown": shown})
        assert done["type"] == "calibrated" and done["accuracy_deg"] < 1.0, done
        token = a.token
        await a.close()

        profiles, resumed_token = [], []

        async def centre_gaze(**hello):
            c = await Raw.open(durable_server.url, **hello)
            profiles.append(c.welcome["gaze"]["profile"])
            grid = c.grid or await c.ok({"type": "start", "algorithm": "pca", "init": "random", "seed": 3},
                                        "candidates")
            await c.send(_layout())
            await _look_at_centre(c)
            await c.ok({"type": "choose", "id": grid["items"][0]["id"]}, "candidates")
            sid = c.welcome["session_id"]
            resumed_token[:] = [c.token]
            await c.close()
            return _gaze_on(durable_server.events_path, sid)

        control = await centre_gaze()
        resumed = await centre_gaze(resume=token)
        assert profiles == ["none", "calibration"], f"welcome.gaze.profile without and with the resumed calibration: " \
                                                    f"{profiles}"
        # a v1.6 client resuming it is not told of the v1.7 value
        c = await Raw.open(durable_server.url, minor=6, resume=resumed_token[0])
        assert c.welcome["resumed"] is True and c.welcome["gaze"]["profile"] in ("none", "device"), c.welcome["gaze"]
        await c.close()
        return control, resumed
    control, resumed = asyncio.run(go())
    assert np.argmax(control["dwell_s"]) == 5, f"the control's gaze is not where the bias puts it: {control}"
    assert np.argmax(resumed["dwell_s"]) == 4 and resumed["dwell_s"][4] > 0.5, \
        f"the calibration did not carry over to the resumed connection: dwell by panel {resumed['dwell_s']}"
