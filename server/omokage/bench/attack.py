"""`omokage bench attack`: the attacks of issue 10 against a real `omokage serve`, with a healthy client watching.

For each attack the server runs as its own process (`omokage serve --token ...` on a loopback port, a small
generated catalog with PCA and NMF); the attackers run in another process (`python -m omokage.bench.attack
worker NAME ...`), and this process keeps one healthy client pinging every 20 ms. The table says, per attack,
whether the server held (every check of the attack passed) or degraded, the healthy client's ping p50/p99
during the attack, and the server's RSS before, at its peak during, and after the attackers left.

The attack functions are also what tests/test_hardening.py runs (bounded in count and time, loopback only).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import io
import json
import os
import socket
import struct
import subprocess
import sys
import tempfile
import time
import zlib
from pathlib import Path
from typing import Any, Awaitable, Callable

import msgpack

from omokage.bench.common import async_runner

LOOPBACK = "127.0.0.1"


# --- a raw WebSocket client: the attacks need what a polite library will not do ---------------------------

def ws_frame(payload: bytes, opcode: int = 2) -> bytes:
    """One client frame, FIN set, masked with a zero key (allowed by RFC 6455, and free to compute)."""
    n = len(payload)
    if n < 126:
        head = struct.pack("!BB", 0x80 | opcode, 0x80 | n)
    elif n < 65536:
        head = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, n)
    else:
        head = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, n)
    return head + b"\0\0\0\0" + payload


class RawWebSocket:
    """A WebSocket over asyncio streams with a small receive buffer, so that not reading really
    stops the peer's sends (a library client keeps reading into its own queue)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.reader, self.writer = reader, writer

    @classmethod
    async def connect(cls, port: int, path: str = "/ws", rcvbuf: int | None = None,
                      timeout: float = 10) -> "RawWebSocket":
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        sock.setblocking(False)
        await asyncio.wait_for(asyncio.get_running_loop().sock_connect(sock, (LOOPBACK, port)), timeout)
        reader, writer = await asyncio.open_connection(sock=sock, limit=64 * 1024)
        key = base64.b64encode(os.urandom(16)).decode()
        writer.write((f"GET {path} HTTP/1.1\r\nHost: {LOOPBACK}:{port}\r\nUpgrade: websocket\r\n"
                      f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout)
        if not head.startswith(b"HTTP/1.1 101"):
            writer.close()
            raise ConnectionError(f"handshake refused: {head.splitlines()[0]!r}")
        return cls(reader, writer)

    async def send(self, payload: bytes, timeout: float | None = None) -> None:
        self.writer.write(ws_frame(payload))
        await asyncio.wait_for(self.writer.drain(), timeout)

    async def recv(self, timeout: float = 10) -> dict[str, Any] | None:
        """The next data frame as a message; None when the server closed the connection."""
        while True:
            head = await asyncio.wait_for(self.reader.readexactly(2), timeout)
            opcode, n = head[0] & 0x0F, head[1] & 0x7F
            if n == 126:
                n = struct.unpack("!H", await self.reader.readexactly(2))[0]
            elif n == 127:
                n = struct.unpack("!Q", await self.reader.readexactly(8))[0]
            payload = await asyncio.wait_for(self.reader.readexactly(n), timeout)
            if opcode == 8:
                return None
            if opcode == 2:
                return msgpack.unpackb(payload, raw=False)

    def abort(self) -> None:
        transport = self.writer.transport
        if not transport.is_closing():
            transport.abort()


def hello(token: str | None, rid: int = 1) -> bytes:
    message: dict[str, Any] = {"type": "hello", "rid": rid, "protocol": 1, "client": "attack/0"}
    if token is not None:
        message["token"] = token
    return msgpack.packb(message)


def nested_frame(max_bytes: int = 4 * 1024 * 1024) -> bytes:
    """A `ping` whose unknown field holds ~4 M empty arrays (array16s of 4,096 `\\x90`): under the byte limit,
    2.7 s of decoding before the object budget existed."""
    inner = b"\xdc\x10\x00" + b"\x90" * 4096
    head = b"\x83\xa4type\xa4ping\xa1t\x00\xa1x"
    count = (max_bytes - len(head) - 5) // len(inner)
    return head + b"\xdd" + struct.pack("!I", count) + inner * count


async def texture_hashes(url: str, token: str | None, n: int = 64) -> list[str]:
    """n texture hashes from a real session (repeated when the grids show fewer: the server sends each)."""
    from omokage.client import OmokageClient
    async with await OmokageClient.connect(url, token=token) as c:
        grid = await c.start("pca", seed=1)
        seen = [i.texture for i in grid.items]
        for _ in range(3):
            grid = await c.choose(grid.ids[1])
            seen += [i.texture for i in grid.items if i.texture not in seen]
    return (seen * (n // len(seen) + 1))[:n]


# --- the attacks: each returns counts and a verdict ----------------------------------------------------

async def attack_nested_frame(port: int, token: str | None, seconds: float, clients: int = 4) -> dict[str, Any]:
    """4 clients, each sending 4 MiB frames of nested empty arrays as fast as answered, after a hello (before it,
    frames over 64 KiB close the connection: slow_large_frames_before_hello)."""
    frame = nested_frame()
    codes: dict[str, int] = {}
    deadline = time.monotonic() + seconds

    async def one():
        ws = await RawWebSocket.connect(port)
        try:
            await ws.send(hello(token))
            welcome = await ws.recv(timeout=10)
            if not welcome or welcome.get("type") != "welcome":
                codes["hello refused"] = codes.get("hello refused", 0) + 1
                return
            while time.monotonic() < deadline:
                await ws.send(frame, timeout=10)
                reply = await ws.recv(timeout=10)
                code = reply.get("code", reply["type"]) if reply else "closed"
                codes[code] = codes.get(code, 0) + 1
                if reply is None:
                    return
        finally:
            ws.abort()
    await asyncio.gather(*(one() for _ in range(clients)))
    held = set(codes) == {"too_large"} and sum(codes.values()) >= clients
    return {"held": held, "replies": codes, "frame_bytes": len(frame)}


async def attack_slow_reader(port: int, token: str | None, seconds: float, clients: int = 3,
                             requests: int = 8) -> dict[str, Any]:
    """3 clients: hello, `requests` texture.get of 64 hashes (the issue's 8 overflow the kernel's buffers with
    a 200-pixel catalog's textures; the tests' 64-pixel catalog needs more), then up to 64 frames of 8 MiB,
    reading nothing. A server that is stuck sending must drop each client within its send timeout (and give
    the memory back); one that never got stuck (all fitted in the kernel's buffers) must have read every frame."""
    url = f"ws://{LOOPBACK}:{port}/ws"
    hashes = await texture_hashes(url, token)
    big = msgpack.packb({"type": "ping", "t": 0, "pad": b"\0" * (8 * 1024 * 1024 - 64)})
    outcomes: list[tuple[float | None, int]] = []   # (seconds until the server dropped it, big frames sent)

    async def one():
        ws = await RawWebSocket.connect(port, rcvbuf=4096)
        t0 = time.monotonic()
        sent = 0
        try:
            await ws.send(hello(token))
            for k in range(requests):
                await ws.send(msgpack.packb({"type": "texture.get", "rid": 10 + k, "hashes": hashes}))
            while time.monotonic() - t0 < seconds and sent < 64:
                try:
                    await ws.send(big, timeout=max(0.1, seconds - (time.monotonic() - t0)))
                    sent += 1
                except asyncio.TimeoutError:
                    break
            # Now read: whatever the server had buffered, then its close (or a reset) must come.
            gone = False
            try:
                while not gone and time.monotonic() - t0 < seconds + 5:
                    gone = not await asyncio.wait_for(ws.reader.read(1 << 20), 5)  # b"": end of stream
            except ConnectionError:
                gone = True
            except asyncio.TimeoutError:
                pass
        except (ConnectionError, OSError):
            gone = True
        finally:
            ws.abort()
        outcomes.append((round(time.monotonic() - t0, 2) if gone else None, sent))
    await asyncio.gather(*(one() for _ in range(clients)))
    held = all(dropped is not None or sent == 64 for dropped, sent in outcomes)
    return {"held": held, "dropped_after_s": [d for d, _ in outcomes], "big_frames_sent": [n for _, n in outcomes]}


async def attack_texture_flood(port: int, token: str | None, seconds: float, clients: int = 10,
                               rate: float = 190.0) -> dict[str, Any]:
    """10 clients, each within the 200 messages/s limit, asking for 64 textures per message."""
    from websockets.asyncio.client import connect
    url = f"ws://{LOOPBACK}:{port}/ws"
    hashes = await texture_hashes(url, token)
    received = {"texture": 0, "overloaded": 0, "other": 0}
    deadline = time.monotonic() + seconds

    async def one():
        # close_timeout: at the end the server is still sending; it drops us as a slow reader anyway
        async with connect(url, compression=None, max_size=None, close_timeout=1) as ws:
            await ws.send(hello(token))
            await ws.recv()

            async def reader():
                async for frame in ws:
                    msg = msgpack.unpackb(frame, raw=False)
                    key = msg["type"] if msg["type"] == "texture" else msg.get("code", "other")
                    received[key if key in received else "other"] += 1
            task = asyncio.create_task(reader())
            request = msgpack.packb({"type": "texture.get", "rid": 7, "hashes": hashes})
            t = time.monotonic()
            while t < deadline:
                await ws.send(request)
                t += 1.0 / rate
                await asyncio.sleep(max(0.0, t - time.monotonic()))
            task.cancel()
    await asyncio.gather(*(one() for _ in range(clients)))
    return {"held": received["texture"] > 0 and received["other"] == 0, "received": received}


HTTP_PROBES: list[tuple[str, str, str, dict[str, str], set[int]]] = [
    # (name, method, path, extra headers, acceptable statuses)
    ("long path component", "GET", "/" + "a" * 900, {}, {404, 414}),
    ("path over 1024 bytes", "GET", "/" + "a" * 5000, {}, {414}),
    ("3,000 segments", "GET", "/a" * 3000, {}, {404, 414}),
    ("300 segments", "GET", "/a" * 300, {}, {404}),
    ("NUL byte", "GET", "/index.html%00.png", {}, {400}),
    ("backslash traversal", "GET", "/..%5c..%5cetc%5cpasswd", {}, {400}),
    ("dot-dot traversal", "GET", "/../../etc/passwd", {}, {404}),
    ("HEAD /", "HEAD", "/", {}, {200}),
    ("HEAD /healthz", "HEAD", "/healthz", {}, {200}),
    ("POST /", "POST", "/", {}, {405}),
    ("PUT /healthz", "PUT", "/healthz", {}, {405}),
    ("DELETE /ws", "DELETE", "/ws", {}, {405}),
    ("DNS rebinding Host", "GET", "/healthz", {"Host": "evil.example:{port}"}, {403}),
    ("DNS rebinding Origin on /ws", "GET", "/ws", {"Host": "evil.example:{port}",
                                                     "Origin": "http://evil.example:{port}"}, {403}),
    ("two Host headers", "GET", "/", {"Host": "127.0.0.1:{port}\r\nHost: evil.example"}, {400}),
]


async def http_probe(port: int, method: str, path: str, headers: dict[str, str]) -> dict[str, Any]:
    """One raw HTTP/1.1 request (paths no client library would send); status, Server headers, body size."""
    reader, writer = await asyncio.open_connection(LOOPBACK, port)
    try:
        lines = [f"{method} {path} HTTP/1.1"]
        host = headers.get("Host", f"{LOOPBACK}:{port}").replace("{port}", str(port))
        lines.append(f"Host: {host}")
        lines += [f"{k}: {v.replace('{port}', str(port))}" for k, v in headers.items() if k != "Host"]
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
        await writer.drain()
        raw = await asyncio.wait_for(reader.read(-1), 10)  # the server closes after a plain HTTP response
    finally:
        writer.close()
    head, _, body = raw.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    status = int(status_line.split()[1]) if status_line.startswith("HTTP/") else 0
    names = [h.split(":", 1)[0].lower() for h in header_lines]
    return {"status": status, "server_headers": names.count("server"), "body_bytes": len(body)}


async def attack_http(port: int, token: str | None, seconds: float) -> dict[str, Any]:
    """Every HTTP probe, repeated for the duration: no 500, one Server header, HEAD without a body."""
    failures: list[str] = []
    statuses: dict[str, int] = {}
    rounds = 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline or rounds == 0:
        for name, method, path, headers, ok in HTTP_PROBES:
            r = await http_probe(port, method, path, headers)
            statuses[str(r["status"])] = statuses.get(str(r["status"]), 0) + 1
            if r["status"] not in ok or r["server_headers"] != 1 or (method == "HEAD" and r["body_bytes"]):
                failures.append(f"{name}: {r}")
        rounds += 1
        await asyncio.sleep(0.05)
    return {"held": not failures and "500" not in statuses, "statuses": statuses, "rounds": rounds,
            "failures": sorted(set(failures))[:10]}


async def attack_token_guessing(port: int, token: str | None, seconds: float, connections: int = 50,
                                guesses: int = 3) -> dict[str, Any]:
    """50 connections x 3 wrong tokens, as fast as possible: only the first few may be checked."""
    checked = refused = closed = 0

    async def one(k):
        nonlocal checked, refused, closed
        ws = await RawWebSocket.connect(port)
        try:
            for g in range(guesses):
                await ws.send(hello(f"guess-{k}-{g}", rid=g + 1))
                reply = await ws.recv(timeout=10)
                if reply is None:
                    closed += 1
                    return
                if "wrong token" in reply.get("message", ""):
                    checked += 1
                elif "too many failed hellos" in reply.get("message", ""):
                    refused += 1
        except (asyncio.IncompleteReadError, ConnectionError):
            closed += 1
        finally:
            ws.abort()
    await asyncio.gather(*(one(k) for k in range(connections)))
    from omokage.service.server import HELLO_FAILURES_PER_WINDOW
    return {"held": checked <= HELLO_FAILURES_PER_WINDOW and refused > 0, "checked": checked,
            "refused_unchecked": refused, "closed": closed}


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def hostile_uploads() -> list[tuple[str, bytes, str, str]]:
    """(name, image bytes, expected error code, a phrase the message must contain)."""
    from PIL import Image
    out = []
    for fmt in ("TIFF", "ICO"):
        buf = io.BytesIO()
        Image.new("RGB", (32, 32), (10, 200, 30)).save(buf, fmt)
        out.append((fmt, buf.getvalue(), "bad_field", "not accepted"))
    out.append(("PSD", b"8BPS\x00\x01" + b"\x00" * 64, "bad_field", "not accepted"))
    out.append(("EPS", b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\nshowpage\n", "bad_field", "not accepted"))
    ihdr = struct.pack(">IIBBBBB", 8, 8, 8, 2, 0, 0, 0)
    idat = _png_chunk(b"IDAT", zlib.compress(b"\x00" * (1 + 8 * 3) * 8))
    ztxt = _png_chunk(b"zTXt", b"Comment\x00\x00" + zlib.compress(b"A" * (32 << 20), 9))
    sig = b"\x89PNG\r\n\x1a\n"
    out.append(("zTXt text bomb", sig + _png_chunk(b"IHDR", ihdr) + ztxt + idat + _png_chunk(b"IEND", b""),
                "too_large", "text chunk"))
    huge = struct.pack(">IIBBBBB", 60000, 60000, 8, 2, 0, 0, 0)
    out.append(("60,000 x 60,000 PNG", sig + _png_chunk(b"IHDR", huge) + idat + _png_chunk(b"IEND", b""),
                "too_large", "16,000,000"))
    out.append(("5,000 x 4,000 PNG", sig + _png_chunk(b"IHDR", struct.pack(">IIBBBBB", 5000, 4000, 8, 2, 0, 0, 0))
                + idat + _png_chunk(b"IEND", b""), "too_large", "16,000,000"))
    return out


async def attack_uploads(port: int, token: str | None, seconds: float) -> dict[str, Any]:
    """Refused formats and bombs as `start` images, plus MessagePack timestamps: each with its code and words."""
    from omokage.client import OmokageClient, OmokageError
    failures: list[str] = []
    answered = 0
    deadline = time.monotonic() + seconds
    async with await OmokageClient.connect(f"ws://{LOOPBACK}:{port}/ws", token=token) as c:
        while time.monotonic() < deadline or answered == 0:
            for name, data, code, phrase in hostile_uploads():
                try:
                    await c.start("pca", image=data)
                    failures.append(f"{name}: accepted")
                except OmokageError as exc:
                    answered += 1
                    if exc.code != code or phrase not in exc.message:
                        failures.append(f"{name}: {exc.code} {exc.message[:120]}")
            stamp = msgpack.packb({"type": "ping", "rid": 99, "t": 0, "at": msgpack.Timestamp(0, 0)}, datetime=False)
            await c.send_raw(stamp)
            reply = await asyncio.wait_for(c.unsolicited.get(), 10)  # undecodable: the error cannot name rid 99
            answered += 1
            if reply.get("code") != "bad_frame":
                failures.append(f"timestamp ext: {reply}")
    return {"held": not failures, "answered": answered, "failures": sorted(set(failures))[:10]}


def heavy_png(side: int = 3000) -> bytes:
    """A smooth side x side PNG: small on the wire (~100 kB), ~0.2 s of decoding and resizing."""
    import numpy as np
    from PIL import Image
    ramp = np.linspace(0, 255, side, dtype=np.float32)
    arr = np.stack(np.broadcast_arrays(ramp[None, :], ramp[:, None], ramp[None, ::-1]), -1).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, "PNG")
    return buf.getvalue()


async def attack_upload_flood(port: int, token: str | None, seconds: float, clients: int = 4) -> dict[str, Any]:
    """4 clients starting from a 3,000 x 3,000 upload again and again: the projection pool is shared, and
    its queue is bounded (beyond it: `overloaded`)."""
    from omokage.client import OmokageClient, OmokageError
    image = heavy_png()
    outcomes = {"candidates": 0, "overloaded": 0, "other": 0}
    deadline = time.monotonic() + seconds

    async def one():
        async with await OmokageClient.connect(f"ws://{LOOPBACK}:{port}/ws", token=token) as c:
            while time.monotonic() < deadline:
                try:
                    await c.start("pca", image=image)
                    outcomes["candidates"] += 1
                except OmokageError as exc:
                    outcomes["overloaded" if exc.code == "overloaded" else "other"] += 1
    await asyncio.gather(*(one() for _ in range(clients)))
    return {"held": outcomes["candidates"] > 0 and outcomes["other"] == 0, "outcomes": outcomes}


async def attack_control_flood(port: int, token: str | None, seconds: float, clients: int = 2) -> dict[str, Any]:
    """2 clients, before hello: empty WebSocket ping frames (6 bytes each) written as fast as the socket takes them,
    reading nothing back. The WebSocket library answers pings itself, below the server's message budgets: before the
    control-frame ration this held the loop for seconds and buffered the unread pongs without bound. Held when the
    server closes each flooder with 1008 within the attack."""
    blob = b"\x89\x80\x00\x00\x00\x00" * 1000      # masked, empty PING frames
    closed: list[float | None] = []

    async def one():
        ws = await RawWebSocket.connect(port)
        t0 = time.monotonic()
        code = None
        try:
            while time.monotonic() - t0 < seconds and code is None:
                try:
                    ws.writer.write(blob)
                    await asyncio.wait_for(ws.writer.drain(), 1)
                except (ConnectionError, asyncio.TimeoutError):
                    break
                code = await _close_code(ws, wait=0)
            if code is None:   # its writes stopped (the server discards what it sends): is the close there?
                code = await _close_code(ws, wait=3)
        finally:
            ws.abort()
        closed.append(time.monotonic() - t0 if code == 1008 else None)
    await asyncio.gather(*(one() for _ in range(clients)))
    return {"held": all(c is not None for c in closed), "closed_1008_after_s": closed}


def ws_frame_head(length: int, opcode: int = 2) -> bytes:
    """The header of one masked client frame (FIN set, zero mask key) that announces `length` payload bytes."""
    if length < 126:
        return struct.pack("!BB", 0x80 | opcode, 0x80 | length) + b"\0\0\0\0"
    if length < 65536:
        return struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, length) + b"\0\0\0\0"
    return struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, length) + b"\0\0\0\0"


async def read_until_close(ws: RawWebSocket, limit: float) -> tuple[int | None, str]:
    """Read (and drop) what the server sends until its close frame: (code, reason); (None, why) when the connection
    ended without one, or nothing closed it within `limit` s."""
    deadline = time.monotonic() + limit
    try:
        while True:
            head = await asyncio.wait_for(ws.reader.readexactly(2), max(0.001, deadline - time.monotonic()))
            n = head[1] & 0x7F
            if n >= 126:
                n = int.from_bytes(await ws.reader.readexactly(2 if n == 126 else 8), "big")
            payload = await ws.reader.readexactly(n)
            if head[0] & 0x0F == 8:
                code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else 1005
                return code, payload[2:].decode("utf-8", "replace")
    except asyncio.TimeoutError:
        return None, "still open"
    except (asyncio.IncompleteReadError, ConnectionError):
        return None, "connection ended without a close frame"


async def attack_slow_large_frames(port: int, token: str | None, seconds: float, clients: int = 60,
                                   say_hello: bool = True, frame_bytes: int = 8 * 1024 * 1024,
                                   trickle_bytes_per_s: int = 16 * 1024, stall_short_by: int = 4096,
                                   expected: tuple[int, ...] = (1008, 1013)) -> dict[str, Any]:
    """`clients` connections (after a hello when `say_hello`) each announce a `frame_bytes` frame (the most the
    server reads) and never finish it: even ones trickle it at `trickle_bytes_per_s`, odd ones send all of it but
    the last `stall_short_by` bytes at once and then stall. Before the server bounded them, they held what they had
    sent (~260 MB here; ~450 MB for the attack client that found it) until the keep-alive gave up, 40 s. Held when
    the server closes every one of them within the attack, with one of the `expected` codes; `closed_after_s`: how
    long each held its frame (from its header to the server's close)."""
    head = b"\x83\xa4type\xa4ping\xa1t\x00\xa3pad\xc6"   # a `ping` with a bin32 `pad`: the rest of the frame
    prefix = head + struct.pack("!I", frame_bytes - len(head) - 4)
    stall_after = frame_bytes - stall_short_by
    outcomes: list[dict[str, Any]] = []
    chunk_every = 0.1

    async def one(k: int) -> None:
        try:
            ws = await RawWebSocket.connect(port)
        except (OSError, ConnectionError, asyncio.TimeoutError) as exc:
            outcomes.append({"code": None, "reason": f"connect failed: {exc}", "sent": 0, "closed_after_s": None})
            return
        sent = 0
        try:
            if say_hello:
                await ws.send(hello(token))
                welcome = await ws.recv(timeout=10)
                if not welcome or welcome.get("type") != "welcome":
                    outcomes.append({"code": None, "reason": f"hello refused: {welcome}", "sent": 0,
                                     "closed_after_s": None})
                    return
            t0 = time.monotonic()
            closed = asyncio.create_task(read_until_close(ws, seconds))
            ws.writer.write(ws_frame_head(frame_bytes) + prefix)
            sent = len(prefix)
            burst = stall_after - sent if k % 2 else 0
            step = max(1, int(trickle_bytes_per_s * chunk_every))
            while not closed.done() and sent < frame_bytes and time.monotonic() - t0 < seconds:
                n = min(frame_bytes - sent, burst or step)
                burst = 0
                if n and (k % 2 == 0 or sent < stall_after):
                    ws.writer.write(bytes(n))
                    sent += n
                try:
                    await asyncio.wait_for(ws.writer.drain(), chunk_every)
                except (ConnectionError, asyncio.TimeoutError):
                    pass
                await asyncio.wait({closed}, timeout=chunk_every)
            code, reason = await closed
            outcomes.append({"code": code, "reason": reason[:120], "sent": sent,
                             "closed_after_s": round(time.monotonic() - t0, 2) if code is not None else None})
        finally:
            ws.abort()
    await asyncio.gather(*(one(k) for k in range(clients)))
    codes: dict[str, int] = {}
    for o in outcomes:
        codes[str(o["code"])] = codes.get(str(o["code"]), 0) + 1
    held_s = sorted(o["closed_after_s"] for o in outcomes if o["closed_after_s"] is not None)
    reasons = sorted({o["reason"] for o in outcomes})
    return {"held": len(outcomes) == clients and all(o["code"] in expected for o in outcomes),
            "close_codes": codes, "closed_after_s_p50": held_s[len(held_s) // 2] if held_s else None,
            "closed_after_s_max": held_s[-1] if held_s else None,
            "still_open": sum(o["code"] is None for o in outcomes),
            "bytes_sent_mb": round(sum(o["sent"] for o in outcomes) / 1e6, 1), "reasons": reasons[:6]}


async def attack_slow_large_frames_before_hello(port: int, token: str | None, seconds: float,
                                                clients: int = 60) -> dict[str, Any]:
    """The same without a hello (no token needed): frames before the welcome are small (hello is), so each
    connection must be closed 1009 at its frame's header, before any of its payload is kept."""
    return await attack_slow_large_frames(port, token, seconds, clients=clients, say_hello=False, expected=(1009,))


async def _close_code(ws: RawWebSocket, wait: float) -> int | None:
    """Read what the server sent (pongs) until its close frame: its code; None when none came within `wait` s."""
    deadline = time.monotonic() + wait
    while True:
        try:
            head = await asyncio.wait_for(ws.reader.readexactly(2), max(0.001, deadline - time.monotonic()))
            n = head[1] & 0x7F
            if n == 126:
                n = struct.unpack("!H", await ws.reader.readexactly(2))[0]
            elif n == 127:
                n = struct.unpack("!Q", await ws.reader.readexactly(8))[0]
            payload = await ws.reader.readexactly(n)
        except (asyncio.TimeoutError, asyncio.IncompleteReadError, ConnectionError):
            return None
        if head[0] & 0x0F == 8:
            return struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else 1005


ATTACKS: dict[str, Callable[..., Awaitable[dict[str, Any]]]] = {
    "nested_frame": attack_nested_frame,
    "control_flood": attack_control_flood,
    "slow_large_frames": attack_slow_large_frames,
    "slow_large_frames_before_hello": attack_slow_large_frames_before_hello,
    "slow_reader": attack_slow_reader,
    "texture_flood": attack_texture_flood,
    "http": attack_http,
    "uploads": attack_uploads,
    "upload_flood": attack_upload_flood,
    "token_guessing": attack_token_guessing,  # last: it locks 127.0.0.1 out of hellos for a minute
}
DESCRIPTIONS = {
    "nested_frame": "4 clients, after hello: 4 MiB frames of ~4 M nested empty arrays",
    "control_flood": "2 clients, before hello: empty WebSocket ping frames as fast as the socket takes them",
    "slow_large_frames": "60 clients: hello, then an 8 MiB frame trickled at 16 KiB/s (half) or stalled 4 KiB short "
                         "of its end (half)",
    "slow_large_frames_before_hello": "the same before hello (no token needed)",
    "slow_reader": "3 clients: hello, 8 texture.get x 64, then 8 MiB frames; never read",
    "texture_flood": "10 clients within the rate limit: texture.get x 64 at 190/s each",
    "http": "long/deep/NUL paths, HEAD, POST/PUT/DELETE, DNS-rebinding Host and Origin",
    "token_guessing": "50 connections x 3 wrong tokens, at once",
    "uploads": "TIFF, ICO, PSD, EPS, zTXt bomb, pixel bombs, MessagePack timestamps",
    "upload_flood": "4 clients starting from a 3,000 x 3,000 PNG upload, again and again",
}


def run_worker(name: str, port: int, token: str | None, seconds: float) -> dict[str, Any]:
    return async_runner()(ATTACKS[name](port, token, seconds))


def spawn_worker(name: str, port: int, token: str | None, seconds: float) -> subprocess.Popen:
    """The attackers in their own process, so they do not share a core's time slices with the observer."""
    cmd = [sys.executable, "-m", "omokage.bench.attack", "worker", name, "--port", str(port),
           "--seconds", str(seconds)]
    if token is not None:
        cmd += ["--token", token]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def worker_result(proc: subprocess.Popen, timeout: float) -> dict[str, Any]:
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        return {"held": False, "error": "attack worker did not finish in time", "stderr": err[-2000:]}
    lines = [line for line in out.splitlines() if line.startswith("{")]
    if proc.returncode != 0 or not lines:
        return {"held": False, "error": f"attack worker exited with {proc.returncode}", "stderr": err[-2000:]}
    return json.loads(lines[-1])


# --- the observer: a healthy client and the server's memory ---------------------------------------------

async def healthy_pings(url: str, token: str | None, stop: asyncio.Event, period: float = 0.02,
                        timeout: float = 5.0) -> list[float]:
    """Round trips (s) of a ping every `period` until `stop`; a ping without an answer counts as `timeout`."""
    from omokage.client import OmokageClient
    samples: list[float] = []
    async with await OmokageClient.connect(url, token=token) as c:
        while not stop.is_set():
            t = time.perf_counter()
            try:
                await c.request("ping", t=time.time(), timeout=timeout)
                samples.append(time.perf_counter() - t)
            except (asyncio.TimeoutError, ConnectionError):
                samples.append(timeout)
            await asyncio.sleep(max(0.0, period - (time.perf_counter() - t)))
    return samples


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


async def observe(port: int, pid: int | None, token: str | None, run_attack: Callable[[], Awaitable[dict]],
                  settle: float = 3.0, rss_over_mb: float = 32.0) -> dict[str, Any]:
    """RSS before; healthy pings and peak RSS while the attack runs; RSS `settle` s after it ended, and for how long
    (s, attack and settling together) the server's RSS stood `rss_over_mb` or more above where it started."""
    from omokage.bench.common import percentiles
    url = f"ws://{LOOPBACK}:{port}/ws"
    before = rss_mb(pid) if pid else None
    peak = before
    over_s = 0.0
    stop, settled = asyncio.Event(), asyncio.Event()
    pinger = asyncio.create_task(healthy_pings(url, token, stop))

    async def sample_rss():
        nonlocal peak, over_s
        last = time.monotonic()
        while not settled.is_set():
            if pid:
                rss = rss_mb(pid)
                peak = max(peak, rss) if not stop.is_set() else peak
                now = time.monotonic()
                over_s += (now - last) if rss >= before + rss_over_mb else 0.0
                last = now
            await asyncio.sleep(0.1)
    sampler = asyncio.create_task(sample_rss())
    await asyncio.sleep(0.3)  # a baseline of pings before the attack starts
    try:
        result = await run_attack()
    finally:
        stop.set()
        samples = await pinger
        await asyncio.sleep(settle)
        settled.set()
        await sampler
    after = rss_mb(pid) if pid else None
    return {**result, "ping": percentiles(samples), "ping_max_ms": max(samples) * 1000 if samples else None,
            "rss_before_mb": before, "rss_peak_mb": peak, "rss_after_mb": after,
            "rss_over_s": round(over_s, 1) if pid else None}


# --- the benchmark ---------------------------------------------------------------------------------------

def _ingest_row(tmp: Path) -> dict[str, Any]:
    """Issue 10, item 4: a non-UTF-8 file name and a symlink out of the folder, through a real ingest."""
    import numpy as np
    from PIL import Image
    from omokage.catalog.ingest import ingest_images
    src, outside = tmp / "imgs", tmp / "outside"
    src.mkdir()
    outside.mkdir()
    rng = np.random.default_rng(0)
    for name in (os.fsdecode(b"caf\xe9.png"), "plain.png"):
        Image.fromarray(rng.integers(0, 256, (48, 48, 3), dtype=np.uint8)).save(src / name)
    Image.fromarray(rng.integers(0, 256, (48, 48, 3), dtype=np.uint8)).save(outside / "secret.png")
    (src / "link.png").symlink_to(outside / "secret.png")
    t = time.perf_counter()
    try:
        report = ingest_images(src, tmp / "cat", progress=False, image_size=32)
        skipped = dict(report.skipped)
        held = report.added == 2 and skipped.get("link.png", "").startswith("linked_outside")
        detail = {"added": report.added, "skipped": skipped}
    except Exception as exc:  # the bug this row checks for: a crash losing the run
        held, detail = False, {"error": repr(exc)}
    return {"attack": "ingest: non-UTF-8 name, symlink out", "held": held, "seconds": time.perf_counter() - t,
            **detail}


def _bind_row(catalog: Path, models: Path) -> dict[str, Any]:
    """Item 6: `--host 0.0.0.0` without --token must refuse before binding anything; `--token ""` too.
    The catalog path given does not exist, so even a regression could not get as far as binding."""
    rows = {}
    missing = catalog.parent / "no-such-catalog"
    for label, extra in (("no token", []), ("empty token", ["--token", ""])):
        proc = subprocess.run([sys.executable, "-m", "omokage", "serve", "--catalog", str(missing), "--models",
                               str(models), "--host", "0.0.0.0", "--port", "9", *extra],
                              capture_output=True, text=True, timeout=120)
        rows[label] = {"rc": proc.returncode, "says": proc.stderr.strip().splitlines()[-1][:160]
                       if proc.stderr.strip() else ""}
    held = all(r["rc"] == 2 and "token" in r["says"].lower() for r in rows.values())
    return {"attack": "non-loopback bind without a token", "held": held, **rows}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind((LOOPBACK, 0))
        return s.getsockname()[1]


def _start_server(catalog: Path, models: Path, events: Path, token: str, extra: list[str] = ()) -> tuple:
    from omokage.bench.serve import _wait_http
    port = _free_port()
    log = open(events.with_suffix(".log"), "w")
    proc = subprocess.Popen([sys.executable, "-m", "omokage", "serve", "--catalog", str(catalog), "--models",
                             str(models), "--port", str(port), "--token", token, "--events", str(events),
                             "--log-level", "info", *extra], stderr=log, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    _wait_http(port, proc, log=events.with_suffix(".log"))
    return proc, port, log


def attack_order(names) -> list[str]:
    """The attacks to run, each once, in the order given but for token_guessing, which goes last: it locks the
    attacker's address (this machine's) out for a minute, so any attack after it would measure the lock-out, and
    /healthz's details (read just before it) would miss the attacks after it."""
    unique = list(dict.fromkeys(names))
    return [n for n in unique if n != "token_guessing"] + (["token_guessing"] if "token_guessing" in unique else [])


def run(out: Path = Path("benchmarks/results"), home: Path = Path("var"), seconds: float = 8.0,
        attacks: list[str] | None = None, count: int = 500) -> int:
    from omokage.bench.common import markdown_table, write_results
    from omokage.demo import prepare
    names = attacks or list(ATTACKS)
    unknown = [n for n in names if n not in ATTACKS]
    if unknown:
        from omokage.errors import UserError
        raise UserError(f"unknown attack(s) {', '.join(unknown)}; choose from {', '.join(ATTACKS)}")
    ordered = attack_order(names)
    if ordered != list(names):
        print(f"attacks run in this order: {', '.join(ordered)} (token_guessing last: it locks this address out of "
              "hellos and /healthz's details for a minute)", flush=True)
    names = ordered
    catalog, models = prepare(Path(home) / "bench-attack", count=count, algorithms=["pca", "nmf"])
    token = base64.urlsafe_b64encode(os.urandom(12)).decode()
    events = Path(home) / "events" / "bench-attack.jsonl"
    events.parent.mkdir(parents=True, exist_ok=True)
    runner = async_runner()
    rows: list[dict[str, Any]] = []
    proc, port, log = _start_server(catalog, models, events, token)
    try:
        async def warm():  # every code path once, so RSS "before" is the server's working size
            from omokage.client import OmokageClient
            image = heavy_png(1500)
            async with await OmokageClient.connect(f"ws://{LOOPBACK}:{port}/ws", token=token) as c:
                for algorithm in ("pca", "nmf"):
                    await c.start(algorithm, image=image)
                grid = await c.start("nmf", seed=3)
                await c.fetch_textures([i.texture for i in grid.items])
                await c.decide(grid.ids[0])
        runner(warm())
        time.sleep(1.0)
        async def idle():
            await asyncio.sleep(seconds)
            return {"held": True}
        baseline = runner(observe(port, proc.pid, token, idle))
        rows.append({"attack": "none (baseline)", **baseline})
        health_detail: dict[str, Any] = {}
        for name in names:
            if name == "token_guessing":   # it locks this address out, of /healthz's details too: read them first
                with urllib_open(port, token) as health:
                    health_detail = json.loads(health.read())
            # slow_reader: the default send timeout is 10 s; slow_large_frames: a large message is dropped after 5 s
            # under the floor, and a frame that came in at once is under it ~5.5 s after it stalled
            worker_seconds = seconds + (12 if name in ("slow_reader", "slow_large_frames") else 0)

            async def attack(name=name, worker_seconds=worker_seconds):
                worker = spawn_worker(name, port, token, worker_seconds)
                return await asyncio.get_running_loop().run_in_executor(
                    None, worker_result, worker, worker_seconds + 60)
            result = runner(observe(port, proc.pid, token, attack))
            print(f"  {name:<15} held={result['held']} ping p50 {result['ping']['p50_ms']:.2f} ms "
                  f"p99 {result['ping']['p99_ms']:.2f} ms, RSS {result['rss_before_mb']:.0f} -> "
                  f"{result['rss_peak_mb']:.0f} -> {result['rss_after_mb']:.0f} MB", flush=True)
            rows.append({"attack": name, **result})
        if "token_guessing" not in names:
            with urllib_open(port, token) as health:
                health_detail = json.loads(health.read())
    finally:
        proc.terminate()
        proc.wait(30)
        log.close()
    server_log = [json.loads(line) for line in events.with_suffix(".log").read_text().splitlines()
                  if line.startswith("{")]
    internal = sum(1 for r in server_log if r.get("msg") == "internal_error" or r.get("event") == "internal_error")
    tracebacks = sum(1 for r in server_log if "exc" in r)
    with tempfile.TemporaryDirectory() as tmp:
        rows.append(_ingest_row(Path(tmp)))
    rows.append(_bind_row(catalog, models))

    for r in rows:
        ping = r.get("ping")
        r["description"] = DESCRIPTIONS.get(r["attack"], r.get("description", ""))
        r["verdict"] = "held" if r.get("held", True) else "degraded"
        if ping:
            r["p50_ms"], r["p99_ms"] = ping["p50_ms"], ping["p99_ms"]
            if ping["p99_ms"] > 50:
                r["verdict"] = "degraded" if not r.get("held", True) else "held (ping p99 over 50 ms)"
        if r.get("rss_before_mb") is not None:
            r["rss_back_pct"] = 100 * (r["rss_after_mb"] - r["rss_before_mb"]) / r["rss_before_mb"]
    table = markdown_table(rows, [("attack", "attack"), ("description", "what"), ("verdict", "verdict"),
                                  ("p50_ms", "ping p50 (ms)"), ("p99_ms", "ping p99 (ms)"),
                                  ("rss_before_mb", "RSS before (MB)"), ("rss_peak_mb", "RSS during, peak (MB)"),
                                  ("rss_after_mb", "RSS after (MB)"), ("rss_back_pct", "after vs before (%)"),
                                  ("rss_over_s", "RSS 32+ MB up (s)")])
    notes = (f"One `omokage serve --token ...` (a {count}-face generated catalog, PCA and NMF) on loopback; each "
             f"attack runs {seconds:g} s (slow_reader and slow_large_frames {seconds + 12:g} s: the send timeout is "
             "10 s, a large message is dropped after 5 s under its floor rate) from a separate "
             "process while a healthy client in this process pings every 20 ms, after one warm-up session (an image "
             "start per algorithm, a random start, its textures, a decision). Server and clients share this "
             "machine's 2 cores. held: every check of the attack passed (see the JSON for counts); RSS after is "
             "taken 3 s after the attackers left; RSS 32+ MB up: seconds (attack and those 3 s) the server's RSS "
             f"stood 32 MB or more above where it started. Server log over the run: {internal} internal errors, "
             f"{tracebacks} records with a traceback. /healthz (authorised) after the attacks (before token_guessing, "
             "which locks this address out of its details for a minute): "
             f"{json.dumps({k: health_detail.get(k) for k in ('connections', 'dropped_slow', 'in_transit')})}.")
    write_results(Path(out), "attack", {"rows": rows, "seconds": seconds, "internal_errors": internal,
                                        "log_tracebacks": tracebacks, "health": health_detail}, table, notes)
    return 0 if all(r.get("held", True) for r in rows) and internal == 0 else 1


def urllib_open(port: int, token: str):
    import urllib.request
    request = urllib.request.Request(f"http://{LOOPBACK}:{port}/healthz", headers={"Authorization": f"Bearer {token}"})
    return urllib.request.urlopen(request, timeout=10)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m omokage.bench.attack",
                                description="Run one attack of `omokage bench attack` against a server on loopback "
                                            "and print its result as JSON (the benchmark's worker process).")
    sub = p.add_subparsers(dest="command", required=True)
    w = sub.add_parser("worker", help="run one attack and print a JSON line")
    w.add_argument("name", choices=sorted(ATTACKS), help="the attack to run")
    w.add_argument("--port", type=int, required=True, help="the server's port on 127.0.0.1")
    w.add_argument("--seconds", type=float, default=5.0, help="how long the attack runs (default 5)")
    w.add_argument("--token", help="the server's --token, if it has one")
    a = p.parse_args(argv)
    print(json.dumps(run_worker(a.name, a.port, a.token, a.seconds), default=str), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
