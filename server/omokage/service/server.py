"""`omokage serve`: protocol v1 over WebSocket on uvloop, one sans-I/O ServerConnection per socket.

The event loop only moves bytes. Decoding and projecting an uploaded image runs on a small thread
pool (numpy, PIL and torch release the GIL), so one client's upload never stalls the others.

Hardening (docs/protocol.md, "Security and limits"): every frame is scanned against object, depth
and string budgets before it is decoded, and frames over OFFLOAD_DECODE_BYTES are decoded on a
thread; each connection handles one message per loop turn and large texture batches take turns
through a global semaphore, so no client starves another; a connection whose client stops reading
is dropped after `send_timeout` with close code 1008 instead of pinning memory; frames before `hello` are held to
64 KiB, and large frames in transit to one server-wide budget and a floor on their pace (GuardedWsConnection,
InflightBudget), so slow senders cannot pin memory either; HTTP requests are
checked (method, path, Host) before any file is touched; session events are group-committed with
fsync before the reply that acknowledges them is sent.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import contextlib
import ctypes
import dataclasses
import functools
import gc
import gzip
import hmac
import http
import importlib
import ipaddress
import itertools
import json
import logging
import math
import mimetypes
import os
import signal
import sqlite3
import ssl
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Sequence
from urllib.parse import unquote_to_bytes, urlsplit

import numpy as np
from websockets.asyncio.server import ServerConnection as WsConnection
from websockets.frames import CloseCode, Opcode
from websockets.protocol import State
from websockets.asyncio.server import serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from omokage import PROTOCOL_VERSION, __version__
from omokage.catalog.store import Item, Texture, encode_texture
from omokage.engine import Engine, load_fitted
from omokage.errors import UserError
from omokage.features import ALGORITHMS
from omokage.imageio import UPLOAD_FORMATS, ImageDecodeError, load_image_bytes
from omokage.protocol.connection import (BackJob, Close, IdealJob, Limits, Log, Offload, ProjectionJob, Send,
                                         ServerConnection, SharpenJob, SketchJob, Supersede)
from omokage.protocol.messages import error, predecode
from omokage.protocol.resume import RESUME_TTL_S, SessionKeeper, max_detached_for
from omokage.selection import FeatureSpace
from omokage.ratelimit import TokenBucket
from omokage.service.background import BackgroundFitter
from omokage.sketch.service import SharpenProcess, SharpenUnavailable
from omokage.store.group_commit import GroupCommitWriter
from omokage.store import EventStore, wire
from omokage.store.blobs import BlobStore, blob_dir_for
from omokage.store.db import LOG_IN_USE, create_private, hold_for_serving

log = logging.getLogger("omokage.server")
events_log = logging.getLogger("omokage.events")

WS_PATH = "/ws"

# Frames at least this large are decoded on a worker thread (image uploads); the budgets of
# messages.scan_frame bound the cost of the rest to well under a millisecond on the loop.
OFFLOAD_DECODE_BYTES = 256 * 1024
# A reply of more frames than this (a texture.get of many hashes) takes a turn through a global
# semaphore, and every connection yields the loop every YIELD_EVERY frames: bulk senders share
# the loop instead of queueing a healthy client's ping behind thousands of textures.
BULK_SENDS = 16
BULK_SLOTS = 2
YIELD_EVERY = 8
# Bytes of frames a connection may send per second (after a burst of two maximal frames): reading a
# 4 MiB frame costs the loop several ms before any budget can look at it, so a client sending them
# back to back is paused (TCP pushes back) rather than served at line rate. A legitimate client sends
# one image per `start`.
INCOMING_BYTES_PER_S = 4 * 1024 * 1024
# A connection that brought in this many bytes (or was dropped as a slow consumer, or had an image
# projected) has its memory handed back to the system when it closes (release_memory).
RELEASE_AFTER_BYTES = 1 << 20
# Per-connection buffers: at most MAX_QUEUE received frames wait for the handler (then reading
# pauses and TCP pushes back), and sends wait once WRITE_LIMIT bytes are buffered for the client.
MAX_QUEUE = 4
WRITE_LIMIT = 64 * 1024
# WebSocket ping and pong frames a connection may send per second (after a burst). The WebSocket library answers pings
# itself, below every budget above: a flood of empty pings (6 bytes each) held the loop for seconds and, from a client
# that reads nothing, buffered pongs without bound. Clients send one every 20-30 s (keep-alive); a flood is closed 1008.
CONTROL_FRAMES_PER_S = 10.0
CONTROL_FRAMES_BURST = 50
# A read is handed to the WebSocket parser this many bytes at a time (at most ~1,400 empty ping frames), so a ping
# flood is seen and cut off within a slice, not after a whole read of them has been parsed and answered.
FEED_SLICE_BYTES = 8 * 1024
# Frames a connection may send before its `hello` is accepted: a hello is a few hundred bytes. A larger frame is
# refused at its header (close 1009), before any of its payload is kept: clients not let in hold next to nothing.
PRE_HELLO_MAX_FRAME_BYTES = 64 * 1024
# Large messages in transit (a frame's payload being received, or received and not yet taken by its handler) hold
# memory before any budget of the protocol can look at them: 60 connections that each started an 8 MiB frame and sent
# it slowly, or stalled in it, held ~450 MB for 40 s (until the keep-alive gave up on them). Two guards, because
# neither is enough alone: a floor on the rate bounds how long one frame is held but not how many are held at once (60
# frames at the floor are still 60 frames), and a budget alone is filled and then kept full by frames that stall,
# turning away every legitimate upload. So: (1) what every connection holds for messages in transit counts against
# one server-wide INFLIGHT_BUDGET_BYTES; past it, the slowest large message in progress is dropped (close 1013, "try
# again later"), which leaves a fast upload its room; (2) a large message (LARGE_MESSAGE_BYTES or more received) that
# arrives at under MIN_RECEIVE_BYTES_PER_S (over the last RATE_WINDOW_S) for SLOW_FOR_S in a row is dropped (close
# 1008, "too slow"). A 4 MiB upload over 1 MB/s Wi-Fi runs 30 times over that floor and rides out a stall of ~8 s;
# the budget holds 16 of the largest valid frames in flight at once. The rate is only charged while the server is
# reading: while a connection's queue is full (its handler is behind), its client cannot send and is not counted slow.
LARGE_MESSAGE_BYTES = 64 * 1024
INFLIGHT_BUDGET_BYTES = 64 * 1024 * 1024
MIN_RECEIVE_BYTES_PER_S = 32 * 1024
RATE_WINDOW_S = 1.0
SLOW_FOR_S = 5.0
INFLIGHT_CHECK_S = 0.5
SEND_TIMEOUT_S = 10.0
# v1.2 `models` notes while a model trains in the background: at most this often
MODELS_NOTE_INTERVAL_S = 1.0
# v1.6 sharper sketch previews: a drawing's newest result is sharpened once no newer one came for this long (the pen
# rests). Over two message intervals at 30 Hz, so one late message while drawing does not cost a decode.
SHARPEN_REST_S = 0.075
# HTTP requests: paths longer than this are 414, deeper ones 404, before any file is looked at.
MAX_PATH_BYTES = 1024
MAX_PATH_SEGMENTS = 16
# Failed hellos per client address (all its connections together) before hellos are refused unchecked.
HELLO_FAILURES_PER_WINDOW = 10
HELLO_WINDOW_S = 60.0
# A connection that has not said `hello` this long is closed: without it, connections that never authenticate (the
# WebSocket library answers their keep-alive pings) could hold every file descriptor the server has
HELLO_DEADLINE_S = 10.0
# Open connections per client address (loopback excepted: benchmarks and a local proxy run hundreds); past it a new
# handshake is refused with 429
MAX_CONNECTIONS_PER_ADDRESS = 64
# The page's content security policy: its own scripts, styles and images (blobs and data: for decoded textures), a
# WebSocket to any server (`?server=`), and never inside another site's frame (clickjacking)
CONTENT_SECURITY_POLICY = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
                           "connect-src 'self' ws: wss:; object-src 'none'; base-uri 'none'; form-action 'self'; "
                           "frame-ancestors 'none'")


class JsonFormatter(logging.Formatter):
    """One JSON object per line: structured logs that tools can filter."""

    def format(self, record: logging.LogRecord) -> str:
        out = {"ts": round(record.created, 6), "level": record.levelname.lower(), "logger": record.name,
               "msg": record.getMessage()}
        extra = getattr(record, "fields", None)
        if extra:
            out.update(extra)
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str, ensure_ascii=False)


def configure_logging(level: str = "info") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger("omokage")
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    root.propagate = False
    # websockets logs handshake failures and its own errors (with tracebacks): JSON lines too, one per record
    ws_log = logging.getLogger("websockets")
    ws_log.handlers[:] = [handler]
    ws_log.setLevel(max(logging.WARNING, logging.getLevelName(level.upper())))
    ws_log.propagate = False


def _max_size(protocol) -> int | None:
    return protocol.max_message_size if hasattr(protocol, "max_message_size") else protocol.max_size


def _set_max_size(protocol, size: int | None) -> None:
    """The largest message the library reads (it checks each frame's header against it): websockets >= 15 calls it
    max_message_size, 14 max_size."""
    if hasattr(protocol, "max_message_size"):
        protocol.max_message_size = size
    else:
        protocol.max_size = size


class InflightBudget:
    """Bytes every connection of a server holds for messages in transit (see INFLIGHT_BUDGET_BYTES), and the large
    messages in progress: the slowest is dropped when the budget is exceeded, and any that arrives too slowly for too
    long by `check` (every INFLIGHT_CHECK_S). Counts what it refused, for /healthz."""

    def __init__(self, limit: int = INFLIGHT_BUDGET_BYTES, floor: float = MIN_RECEIVE_BYTES_PER_S,
                 slow_for: float = SLOW_FOR_S, large: int = LARGE_MESSAGE_BYTES, window: float = RATE_WINDOW_S):
        self.limit, self.floor, self.slow_for = int(limit), float(floor), float(slow_for)
        self.large_bytes = int(large)   # a message counts as large (and its pace is watched) from this many bytes
        self.window = float(window)   # a message's rate is its bytes decayed over this many seconds
        self.held = self.peak = 0
        self.in_progress: set[GuardedWsConnection] = set()   # connections with a large message in progress
        self.too_big_before_hello = self.too_slow = self.over_budget = 0

    def add(self, delta: int) -> None:
        self.held += delta
        self.peak = max(self.peak, self.held)

    def relieve(self, now: float) -> None:
        """Over the budget: drop large messages in progress, the slowest first, until it holds again."""
        while self.held > self.limit and self.in_progress:
            # a connection whose handler is behind (its reading paused) cannot be faster: it goes last
            slowest = min(self.in_progress, key=lambda c: (c.recv_messages.paused, c.receive_rate(now)))
            self.over_budget += 1
            slowest.drop(CloseCode.TRY_AGAIN_LATER, f"server busy: {self.held} bytes of messages in transit, over "
                         f"{self.limit}; this one came slowest; retry later", why="over the budget")

    def check(self, now: float) -> None:
        for conn in list(self.in_progress):
            conn.check_rate(now)

    def stats(self) -> dict[str, Any]:
        return {"held_bytes": self.held, "peak_bytes": self.peak, "budget_bytes": self.limit,
                "in_progress": len(self.in_progress), "min_bytes_per_s": int(self.floor),
                "too_big_before_hello": self.too_big_before_hello, "too_slow": self.too_slow,
                "over_budget": self.over_budget}


class GuardedWsConnection(WsConnection):
    """A WebSocket connection guarded below the protocol's budgets, where the library reads and answers by itself.

    Ping and pong frames are rationed (CONTROL_FRAMES_PER_S): past the budget it is failed with 1008 and the rest of
    what it sends is discarded unparsed. A read is parsed in FEED_SLICE_BYTES slices, so at most the pings of the slice
    in which the ration ran out are still answered (the library answers them as it parses).

    Until `admit` (its hello was accepted) a frame over PRE_HELLO_MAX_FRAME_BYTES is refused at its header (1009).
    What it holds for messages in transit (the frame being received, and messages the handler has not taken yet)
    counts against the server's InflightBudget, and a large message that comes too slowly is dropped (1008)."""

    def __init__(self, *args, inflight: InflightBudget | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self._control = TokenBucket(CONTROL_FRAMES_PER_S, CONTROL_FRAMES_BURST)
        self.control_flood = False
        self.inflight = inflight if inflight is not None else InflightBudget()
        self.admitted = False
        self._max_size = _max_size(self.protocol)
        if self._max_size is None or self._max_size > PRE_HELLO_MAX_FRAME_BYTES:
            _set_max_size(self.protocol, PRE_HELLO_MAX_FRAME_BYTES)
        library_fail = self.protocol.fail

        def fail(code, reason: str = "") -> None:
            # the library's own refusal of a frame over the limit, at its header: say why the limit is low
            if code == CloseCode.MESSAGE_TOO_BIG and not self.admitted and self.protocol.state is State.OPEN:
                self.inflight.too_big_before_hello += 1
                reason = f"{reason} before the welcome"
                log.info("closed: frame too big before hello", extra={"fields": {"peer": _peer(self),
                                                                                 "reason": reason}})
                library_fail(code, reason)
                self._stop_reading()
                return
            library_fail(code, reason)
        self.protocol.fail = fail
        self.bytes_received = 0
        self._held = 0           # bytes counted against the budget: the frame being received + messages not taken
        self._queued = 0         # bytes of data frames received and not yet taken by the handler
        self._frames: collections.deque[tuple[int, bool]] = collections.deque()   # their sizes, and fin
        self._completed = False  # a message was completed by the data being received
        self._message = 0        # bytes received of the message in progress
        self._recent = 0.0       # its bytes, decayed over RATE_WINDOW_S
        self._recent_at = 0.0
        self._slow_since: float | None = None

    def admit(self) -> None:
        """The hello was accepted: frames up to the server's limit are read from now on."""
        if not self.admitted:
            self.admitted = True
            _set_max_size(self.protocol, self._max_size)

    def process_event(self, event) -> None:
        opcode = getattr(event, "opcode", None)
        if opcode is Opcode.PING or opcode is Opcode.PONG:
            if self.control_flood:
                return
            if not self._control.take(self.loop.time()):
                self.control_flood = True
                # CLOSING too: the library answers pings until the client's close comes (up to its close timeout),
                # and a flood after the server's own close (a failed hello, a deadline) was answered in full.
                # `fail` sends no second close frame there, but the rest is discarded unparsed
                if self.protocol.state in (State.OPEN, State.CLOSING):
                    self.protocol.fail(CloseCode.POLICY_VIOLATION, "too many ping/pong frames")
                    self.send_data()
                elif self.protocol.state is State.CONNECTING and self.transport is not None:
                    # pings sent with the upgrade request, before its 101: no close frame can be sent yet, and once
                    # open it would go on unrationed (every later ping answered by the library, a read over a slice
                    # dropped unparsed). No client does this: its connection is dropped, the handshake unanswered
                    log.info("closed: ping flood before the handshake", extra={"fields": {"peer": _peer(self)}})
                    self.transport.abort()
                return
        elif opcode is Opcode.BINARY or opcode is Opcode.TEXT or opcode is Opcode.CONT:
            size = len(event.data)
            self._frames.append((size, event.fin))
            self._queued += size
            self._completed = self._completed or event.fin
        super().process_event(event)

    def data_received(self, data: bytes) -> None:
        self._completed = False
        self.bytes_received += len(data)
        # The library parses a whole read before any of its frames reach process_event, and answers every ping in it
        # as it parses: one read of a ping flood (64-256 KiB, 10,000-40,000 frames) held the loop for 20-300 ms. Fed
        # in slices, the ration sees a flood within its first few thousand frames and the rest of the read is dropped.
        if len(data) <= FEED_SLICE_BYTES:
            super().data_received(data)
        else:
            view = memoryview(data)
            for start in range(0, len(data), FEED_SLICE_BYTES):
                if self.control_flood:
                    break
                super().data_received(bytes(view[start:start + FEED_SLICE_BYTES]))
        self._account(grew=True)

    async def recv(self, *args, **kwargs):
        message = await super().recv(*args, **kwargs)
        taken = 0
        while self._frames:   # the frames of the message taken
            size, fin = self._frames.popleft()
            taken += size
            if fin:
                break
        self._queued -= taken
        self._account()
        return message

    def connection_lost(self, exc) -> None:
        super().connection_lost(exc)
        self._frames.clear()
        self._queued = 0
        self._account()

    def _account(self, grew: bool = False) -> None:
        """Bring this connection's count in the budget up to date, and the rate of its message in progress."""
        now = self.loop.time()
        protocol = self.protocol
        partial = len(protocol.reader.buffer) if protocol.state is not State.CLOSED else 0
        earlier = getattr(protocol, "current_size", None) or 0   # the fragments already in of a fragmented message
        message = partial + earlier
        began = grew and self._completed
        self._completed = False
        if message and (began or not self._message or message < self._message):
            self._recent, self._recent_at, self._slow_since = float(message), now, None   # a new message began
        elif message > self._message:
            self._recent = self._recent_rate_bytes(now) + (message - self._message)
            self._recent_at = now
        self._message = message
        held = partial + self._queued
        budget = self.inflight
        budget.add(held - self._held)
        self._held = held
        if message >= budget.large_bytes and protocol.state is State.OPEN:
            budget.in_progress.add(self)
        else:
            budget.in_progress.discard(self)
        if grew and budget.held > budget.limit:
            budget.relieve(now)

    def _recent_rate_bytes(self, now: float) -> float:
        return self._recent * math.exp(-(now - self._recent_at) / self.inflight.window) if self._recent else 0.0

    def receive_rate(self, now: float) -> float:
        """Bytes per second of the message in progress, over about the last RATE_WINDOW_S."""
        return self._recent_rate_bytes(now) / self.inflight.window

    def check_rate(self, now: float) -> None:
        """Drop the large message in progress when it has come at under the floor for SLOW_FOR_S in a row."""
        if self.protocol.state is not State.OPEN or self.recv_messages.paused:
            self._slow_since = None    # its handler is behind: the server is not reading, the client cannot send
            return
        budget = self.inflight
        if self.receive_rate(now) >= budget.floor:
            self._slow_since = None
        elif self._slow_since is None:
            self._slow_since = now
        elif now - self._slow_since >= budget.slow_for:
            budget.too_slow += 1
            self.drop(CloseCode.POLICY_VIOLATION, f"too slow: {self._message} bytes of a message, under "
                      f"{budget.floor / 1024:g} KiB/s for {budget.slow_for:g} s", why="too slow")

    def drop(self, code: int, reason: str, why: str) -> None:
        """Close with `code` now and discard what comes after (the frame in progress is let go at once)."""
        log.warning("large message dropped", extra={"fields": {
            "peer": _peer(self), "why": why, "received": self._message, "held": self._held,
            "bytes_per_s": round(self.receive_rate(self.loop.time())), "in_transit": self.inflight.held}})
        if self.protocol.state is State.OPEN:
            self.protocol.fail(code, reason[:123])
            self.send_data()
        self._account()
        self._stop_reading()

    def _stop_reading(self) -> None:
        """After a close for what it sent: the rest of its frame is not read (the library would read and discard it,
        megabytes a connection on the loop), and its socket goes a second later, once the close frame is out."""
        transport = self.transport
        if transport is not None and not transport.is_closing():
            with contextlib.suppress(Exception):   # uvloop and asyncio differ on a transport already paused
                transport.pause_reading()
        self.loop.call_later(1.0, self._abort)

    def _abort(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.abort()


class EventFile(GroupCommitWriter):
    """Append-only JSON-lines file of session events with group commit.

    A writer thread takes every record queued since its last pass, writes them, flushes and (with
    `fsync=True`, the default) fsyncs once for the whole batch, then resolves the futures of the
    `commit()` calls in it. The server awaits `commit()` before sending the reply an event produced,
    so an acknowledged event is on disk, and concurrent sessions share one fsync. `fsync=False`
    writes and flushes on the caller's thread instead, as before group commit (a process crash loses
    nothing acknowledged; a power loss may).
    """

    def __init__(self, path: Path, fsync: bool = True, exclusive: bool = False):
        """exclusive: refuse (StoreInUse) a log another server is writing; this one holds it until `close`."""
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.fsync = fsync
        create_private(path)   # what users did is readable by the server's user only
        # one server per log, as per store: a server restarted on its log reads it back to resume the selections it
        # was in the middle of (v1.7) and records the links still open when it stopped as lost; a second server
        # appending to it would have its live selections marked lost and taken over
        self._serving = hold_for_serving(path, refusal=LOG_IN_USE) if exclusive else None
        self._f = open(path, "ab")
        if path.stat().st_size:   # a crash mid-write left a line without its end: the next record starts a line
            with open(path, "rb") as f:
                f.seek(-1, os.SEEK_END)
                if f.read(1) != b"\n":
                    self._f.write(b"\n")
                    self._f.flush()
        self.events = self.batches = 0
        self.sync_seconds = 0.0
        super().__init__("omokage-events", threaded=fsync)

    @staticmethod
    def _line(record: dict[str, Any]) -> bytes:
        return (json.dumps(record, default=str, ensure_ascii=False) + "\n").encode("utf-8", "backslashreplace")

    def write(self, record: dict[str, Any]) -> None:
        """Queue a record without waiting for it (disconnect records: nothing is acknowledged by them)."""
        if self._thread is None:
            self._write_now(self._line(record))
        else:
            self._enqueue(self._line(record))

    def commit(self, records: Sequence[dict[str, Any]]) -> asyncio.Future:
        """Queue records; the future completes once they are written (and fsync'd)."""
        lines = b"".join(self._line(r) for r in records)
        if self._thread is not None:
            return self._enqueue_commit(lines)
        done = asyncio.get_running_loop().create_future()
        try:
            self._write_now(lines)
            done.set_result(None)
        except OSError as exc:
            done.set_exception(exc)
        return done

    def _write_now(self, lines: bytes) -> None:
        with self._cond:
            self._f.write(lines)
            self._f.flush()
            self.batches += 1
            self.events += lines.count(b"\n")

    def _write_batch(self, items: list[bytes], acknowledged: bool = True) -> None:
        try:
            self._f.write(b"".join(items))
            self._f.flush()
            if self.fsync:
                t = time.perf_counter()
                os.fsync(self._f.fileno())
                self.sync_seconds += time.perf_counter() - t
        finally:
            self.batches += 1
            self.events += sum(lines.count(b"\n") for lines in items)

    def stats(self) -> dict[str, Any]:
        return {"events": self.events, "batches": self.batches, "fsync": self.fsync,
                "fsync_ms_per_batch": round(1000 * self.sync_seconds / self.batches, 3) if self.batches else None,
                "events_per_batch": round(self.events / self.batches, 2) if self.batches else None}

    def close(self) -> None:
        self._stop_writer(30)
        try:
            self._f.close()
        except OSError as exc:   # a full disk: what could not be written was never acknowledged
            log.error("the event log could not be closed cleanly", extra={"fields": {"path": str(self.path),
                                                                                      "error": str(exc)}})
        if self._serving is not None:   # after the last record: the next server may read it all back
            self._serving.close()


class HelloLimiter:
    """Failed hellos per client address across all its connections: past `limit` failures within
    `window` seconds, that address's hellos are refused without looking at the token."""

    def __init__(self, limit: int = HELLO_FAILURES_PER_WINDOW, window: float = HELLO_WINDOW_S,
                 max_addresses: int = 10_000):
        self.limit, self.window, self.max_addresses = limit, window, max_addresses
        self._failures: collections.OrderedDict[str, collections.deque] = collections.OrderedDict()

    def _recent(self, address: str, now: float) -> collections.deque:
        times = self._failures.get(address)
        if times is None:
            return collections.deque()
        while times and times[0] <= now - self.window:
            times.popleft()
        if not times:
            del self._failures[address]
        return times

    def retry_after(self, address: str, now: float) -> float:
        times = self._recent(address, now)
        return max(0.0, times[0] + self.window - now) if len(times) >= self.limit else 0.0

    def failed(self, address: str, now: float) -> None:
        times = self._failures.setdefault(address, collections.deque(maxlen=self.limit))
        times.append(now)
        self._failures.move_to_end(address)
        while len(self._failures) > self.max_addresses:  # bounded memory under many addresses
            self._failures.popitem(last=False)

    def guard(self, address: str) -> "_AddressGuard":
        return _AddressGuard(self, address)


@dataclass
class _AddressGuard:
    """One address's view of a HelloLimiter: the HelloGuard a ServerConnection consults."""
    limiter: HelloLimiter
    address: str

    def retry_after(self, now: float) -> float:
        return self.limiter.retry_after(self.address, now)

    def failed(self, now: float) -> None:
        self.limiter.failed(self.address, now)


def restorable_selections(path: Path, is_store: bool,
                          ttl_s: float) -> tuple[dict[str, Any], list[dict], set[str] | None]:
    """The selections a previous run of the server left in its log at `path` (the store, or the JSON-lines log) that a
    client may still go on with: (resume key -> LoggedSelection (omokage.protocol.restore), the `disconnect` records
    to log for those whose client was connected when it stopped: RestoreIndex.lost, the blobs the selections still
    open in the log name: RestoreIndex.blobs, None when the log could not be read). Reads the log's last
    RESTORE_SCAN_BYTES (for the default dated log, the day before's too: a restart after midnight starts a new file);
    a log it cannot read gives none (and says why), never a server that does not start."""
    from omokage.protocol.restore import RESTORE_SCAN_BYTES, RestoreIndex
    index = RestoreIndex()
    now = time.time()

    def feed(text) -> None:
        try:
            index.feed(json.loads(text))
        except (ValueError, RecursionError):   # a line a crash cut short, or damaged (nested past Python's stack)
            index.damaged += 1

    try:
        if is_store:
            from omokage.store.db import connect
            conn = connect(path, readonly=True)
            try:   # the log records, newest first, up to the budget; then fed oldest first
                bodies, size = [], 0
                for (body,) in conn.execute("SELECT body FROM events WHERE direction = 'log' ORDER BY seq DESC"):
                    size += len(body)
                    if size > RESTORE_SCAN_BYTES:
                        break
                    bodies.append(body)
            finally:
                conn.close()
            for body in reversed(bodies):
                feed(body)
        else:
            files = [path]
            if path.name.startswith("events-") and path.suffix == ".jsonl":   # the default, one file a day
                earlier = sorted(p for p in path.parent.glob("events-*.jsonl") if p.name < path.name)
                files = earlier[-1:] + files
            budget, start_at = RESTORE_SCAN_BYTES, {}
            for f_path in reversed(files):     # the budget goes to the newest first; each is then read from there
                if f_path.is_file() and budget > 0:
                    size = f_path.stat().st_size
                    start_at[f_path] = size - min(size, budget)
                    budget -= size - start_at[f_path]
            for f_path in files:
                if f_path not in start_at:
                    continue
                offset = start_at[f_path]
                with open(f_path, "rb") as f:
                    f.seek(offset)
                    if offset:
                        f.readline()       # the middle of a line
                    for line in f:
                        feed(line)
    except (OSError, sqlite3.Error) as exc:
        log.warning("could not read the previous run's selections from the log; none will be resumed",
                    extra={"fields": {"path": str(path), "error": str(exc)}})
        return {}, [], None
    if index.damaged:
        log.warning("damaged records in the log were skipped while reading the previous run's selections",
                    extra={"fields": {"path": str(path), "damaged": index.damaged}})
    lost = index.lost(now)
    return index.restorable(now, ttl_s), lost, index.blobs()


def read_logged_blobs(selections, blobs: BlobStore) -> None:
    """What the records of these selections named in a blob, read from the log's blob folder: an image start's query
    (raw pixels), a drawing's evidence (a catalog of over 512 faces). A selection whose blob is missing or damaged is
    marked unrestorable, with why (its client starts again)."""
    for sel in selections:
        for key, attr, what in ((sel.query_blob, "query", "its image's query"),
                                (sel.sketch_blob, "sketch", "its drawing's evidence")):
            if key is None or getattr(sel, attr) is not None:
                continue
            data = blobs.get(key)
            if data is None or len(data) % 4:
                sel.unrestorable = f"{what} (blob {key[:12]}) is missing or damaged"
            else:
                setattr(sel, attr, np.frombuffer(data, dtype="<f4"))


@dataclass
class EngineBackend:
    """The read-only view a ServerConnection needs, built once from the engine."""

    engine: Engine
    items: Sequence[Item] = field(init=False)
    textures: dict[str, Texture] = field(init=False)
    image_size: int = field(init=False)
    catalog_fingerprint: str = field(init=False)
    # models being fitted in the background (BackgroundFitter.training): protocol v1.2 `training`
    training: Sequence[dict[str, Any]] = field(default_factory=list)

    @property
    def sketch_resolution(self) -> int | None:
        return self.engine.sketch.resolution if self.engine.sketch is not None else None

    @property
    def sketch_preview_size(self) -> int:
        return self.engine.sketch.preview_size if self.engine.sketch is not None else 0

    @property
    def sketch_sharpens(self) -> bool:
        return self.engine.sketch is not None and self.engine.sketch.sharp is not None

    def new_live_drawing(self):
        return self.engine.sketch.new_live() if self.engine.sketch is not None else None

    @property
    def ideal_image_size(self) -> int:
        return self.engine.catalog.image_size if self.engine.can_generate_ideal else 0

    def __post_init__(self):
        # an item's url goes to every client: a file:// URL (what `catalog ingest` gives a face without a manifest) is
        # no page a client could open, and would tell them this machine's folders: sent as "" (no product page)
        self.items = [dataclasses.replace(item, url="") if item.url.lower().startswith("file:") else item
                      for item in self.engine.catalog.items]
        self.textures = self.engine.catalog.textures()  # a few MB: served from memory
        self.image_size = self.engine.catalog.image_size
        self.catalog_fingerprint = self.engine.catalog.fingerprint()

    @property
    def algorithms(self) -> Sequence[str]:
        return self.engine.algorithms  # grows when a background fit finishes

    def space(self, algorithm: str) -> FeatureSpace:
        return self.engine.space(algorithm)

    def policy_params(self, algorithm: str) -> dict:
        return self.engine.policy_params(algorithm)


def project_upload(engine: Engine, job: ProjectionJob, limits: Limits) -> tuple[np.ndarray, Texture]:
    """Runs on the worker pool: decode (with bomb limits), resize, project, encode the reconstruction."""
    rgb = load_image_bytes(job.image, engine.catalog.image_size, max_bytes=limits.max_image_bytes,
                           max_pixels=limits.max_image_pixels, formats=UPLOAD_FORMATS)
    vector, recon = engine.project(job.algorithm, rgb)
    return vector, encode_texture(recon, "jpeg")


class OmokageServer:
    def __init__(self, engine: Engine, *, limits: Limits = Limits(), token: str | None = None,
                 allow_origins: Sequence[str] = (), events_path: Path | None = None, workers: int = 2,
                 max_queued_projections: int = 32, web_root: Path | None = None,
                 public_names: Sequence[str] = (), fsync_events: bool = True,
                 send_timeout: float = SEND_TIMEOUT_S, hello_limiter: HelloLimiter | None = None,
                 fitter: BackgroundFitter | None = None, store_path: Path | None = None, study=None,
                 calibration: dict[str, dict] | None = None, device_profiles: dict | None = None,
                 max_connections_per_address: int = MAX_CONNECTIONS_PER_ADDRESS,
                 hello_deadline_s: float = HELLO_DEADLINE_S, resume_ttl_s: float = RESUME_TTL_S,
                 inflight: InflightBudget | None = None):
        if token is not None and not token:
            raise ValueError("an empty token would accept any hello; pass None for no token")
        self.engine = engine
        self.backend = EngineBackend(engine)
        self.limits = limits
        self.token = token
        self.allow_origins = set(allow_origins)
        # Host names this server answers to besides IP literals and loopback names (DNS-rebinding guard)
        self.public_names = {n.lower().rstrip(".") for n in public_names if n}
        self.pool = concurrent.futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="omokage-project")
        self.decode_pool = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="omokage-decode")
        self.projection_slots = asyncio.Semaphore(max_queued_projections)
        # v1.5 ideal faces: slots of their own, so cheap `ideal` requests from many connections never hold the image
        # uploads' (each connection has at most one of either in flight: its next message waits for it)
        self.ideal_slots = asyncio.Semaphore(4 * workers)
        self.back_slots = asyncio.Semaphore(4 * workers)   # v1.7: long backs' replays queued on the pool at once
        self.bulk_slots = asyncio.Semaphore(BULK_SLOTS)
        self.events = EventFile(events_path, fsync=fsync_events, exclusive=True) if events_path else None
        # the durable event store (SQLite, WAL, group commit): every message in and out, and the logged events
        try:
            self.store = EventStore(store_path, fsync=fsync_events) if store_path else None
        except BaseException:
            if self.events is not None:   # its lock goes with it: this process may start a server on the log again
                self.events.close()
            raise
        # a user study this server walks participants through (omokage.study.runner.StudyRunner), or None
        self.study = study
        self.calibration = dict(calibration or {})   # v1.4: gaze calibration patterns by name (calibration/*.json)
        self.device_profiles = dict(device_profiles or {})   # v1.5: default corrections by headset model
        self.web_root = web_root if web_root is not None else _default_web_root()
        self._static_cache: dict[Path, tuple[bytes, bytes]] = {}
        self.send_timeout = send_timeout
        self.hello_limiter = hello_limiter or HelloLimiter()
        self.max_connections_per_address = int(max_connections_per_address)
        self.hello_deadline_s = float(hello_deadline_s)
        # bytes of messages in transit, over all connections, and the slow large ones dropped (GuardedWsConnection)
        self.inflight = inflight if inflight is not None else InflightBudget()
        # v1.7: selections a reconnecting client goes on with (0: none are kept; a study resumes by participant code)
        self.keeper = (SessionKeeper(ttl_s=resume_ttl_s, max_detached=max_detached_for(len(self.backend.items)))
                       if resume_ttl_s > 0 else None)
        # what a restart needs that a log line cannot carry (a raw-pixel start's query), beside the log it reads
        self.blobs: BlobStore | None = None
        self.blob_pool: concurrent.futures.ThreadPoolExecutor | None = None
        if self.keeper is not None and study is None and (store_path or events_path):
            restore_from = Path(store_path) if store_path else Path(events_path)
            self.blobs = BlobStore(blob_dir_for(restore_from), fsync=fsync_events)
            self.blob_pool = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="omokage-blobs")
            # the selections the previous run's clients were in the middle of (a restart, a crash): from its log
            logged, lost, named = restorable_selections(restore_from, is_store=bool(store_path), ttl_s=resume_ttl_s)
            read_logged_blobs(self.keeper.load_logged(logged), self.blobs)
            if named is not None:   # blobs no open selection names: a crash's leftovers, or of selections now gone
                self.blobs.prune(named)
            for record in lost:   # their links went with the previous run: the next restart counts from now
                self._event(record)
            if logged:
                log.info("selections of the previous run can be resumed", extra={"fields": {"count": len(logged)}})
        self._per_address: collections.Counter[str] = collections.Counter()
        self.connections = 0
        self.dropped_slow = 0
        self.started = time.time()
        self.server = None
        self._sending: set[WsConnection] = set()   # connections whose handler is inside a send
        self._stalls: dict[WsConnection, tuple[int, float]] = {}
        self._session_ids: dict[WsConnection, str] = {}
        self._dropped: set[WsConnection] = set()
        # one send at a time per connection: sketch results are delivered by tasks of their own, and two sends that
        # each saw room under WRITE_LIMIT would together pass it
        self._send_locks: dict[WsConnection, asyncio.Lock] = {}
        self._projected: set[WsConnection] = set()  # connections that had an image projected
        self._release_pending = False
        self._tasks: set[asyncio.Task] = set()
        self._connections: dict[WsConnection, ServerConnection] = {}
        self.fitter = fitter
        self.backend.training = fitter.training if fitter is not None else []
        self._models_note_at = 0.0       # when clients were last told about training progress
        self._models_note_pending = False
        self.sketches = SketchBatcher(self, engine.sketch) if engine.sketch is not None else None

    # -- HTTP side: checks, health, static web client, origin check --------------------------------
    def process_request(self, connection: WsConnection, request: Request) -> Response | None:
        try:
            return self._http(connection, request)
        except Exception:  # a bug: answered and logged as one JSON line, never websockets' plain traceback
            log.exception("http handler failed", extra={"fields": {"method": request.method,
                                                                   "path": _loggable(request.path)}})
            return _response(http.HTTPStatus.INTERNAL_SERVER_ERROR, b"internal server error\n", "text/plain")

    def _refuse(self, connection: WsConnection, request: Request, status: http.HTTPStatus, why: str,
                **headers: str) -> Response:
        log.info("http request refused", extra={"fields": {
            "status": status.value, "method": request.method[:16], "path": _loggable(request.path), "why": why,
            "peer": _peer(connection)}})
        response = _response(status, (why + "\n").encode(), "text/plain")
        for k, v in headers.items():
            response.headers[k.replace("_", "-")] = v
        return response

    def _http(self, connection: WsConnection, request: Request) -> Response | None:
        raw = request.path
        if len(raw) > MAX_PATH_BYTES:
            return self._refuse(connection, request, http.HTTPStatus.REQUEST_URI_TOO_LONG,
                                f"path longer than {MAX_PATH_BYTES} bytes")
        path = urlsplit(raw).path
        decoded = unquote_to_bytes(path)
        if any(c < 0x20 or c == 0x7f for c in decoded) or b"\\" in decoded:
            return self._refuse(connection, request, http.HTTPStatus.BAD_REQUEST,
                                "control characters or backslashes in the path")
        hosts = request.headers.get_all("Host")
        if len(hosts) != 1:
            return self._refuse(connection, request, http.HTTPStatus.BAD_REQUEST, "exactly one Host header needed")
        if not self._host_allowed(hosts[0]):
            return self._refuse(connection, request, http.HTTPStatus.FORBIDDEN,
                                f"host {hosts[0][:100]!r} is not one this server answers to; start it with "
                                "--public-name NAME (IP addresses and localhost are always accepted)")
        method = request.method
        if path == WS_PATH:
            if method != "GET":
                return self._refuse(connection, request, http.HTTPStatus.METHOD_NOT_ALLOWED,
                                    f"{method[:16]} is not allowed on {WS_PATH}", Allow="GET")
            peer = _peer(connection)
            if not _is_loopback(peer) and self._per_address[peer] >= self.max_connections_per_address:
                return self._refuse(connection, request, http.HTTPStatus.TOO_MANY_REQUESTS,
                                    f"too many connections from this address (at most "
                                    f"{self.max_connections_per_address}); close some and retry", Retry_After="10")
            origin = request.headers.get("Origin")
            if origin is not None and not self._origin_allowed(origin, hosts[0]):
                log.warning("origin refused", extra={"fields": {"origin": origin[:200], "peer": _peer(connection)}})
                return _response(http.HTTPStatus.FORBIDDEN, b"origin not allowed; start the server with "
                                 b"--allow-origin ORIGIN\n", "text/plain")
            return None  # proceed with the WebSocket handshake
        if method not in ("GET", "HEAD"):
            return self._refuse(connection, request, http.HTTPStatus.METHOD_NOT_ALLOWED,
                                f"{method[:16]} is not allowed", Allow="GET, HEAD")
        segments = [p for p in path.split("/") if p]
        if len(segments) > MAX_PATH_SEGMENTS or any(len(p) > 255 for p in segments):
            response = self._refuse(connection, request, http.HTTPStatus.NOT_FOUND, "not found")
        elif path == "/healthz":
            response = _response(http.HTTPStatus.OK, json.dumps(self._health(connection, request)).encode(),
                                 "application/json")
        else:
            response = self._static(path, request.headers.get("Accept-Encoding", ""))
        if method == "HEAD":  # the same headers (Content-Length included), no body
            response = Response(response.status_code, response.reason_phrase, response.headers, b"")
        return response

    def _health(self, connection: WsConnection, request: Request) -> dict[str, Any]:
        """`ok` for anyone; the details (connections, algorithms, ...) only for an authorised caller:
        `Authorization: Bearer TOKEN`, or a loopback peer when the server has no token."""
        body: dict[str, Any] = {"status": "ok"}
        auth = request.headers.get("Authorization", "")
        if self.token is not None:
            # a wrong token here counts as a failed hello from this address (and a locked-out address is not checked):
            # else /healthz would be a way to guess the token as fast as requests go
            peer, now = _peer(connection), time.time()
            authorised = (bool(auth) and self.hello_limiter.retry_after(peer, now) == 0
                          and auth.startswith("Bearer ")
                          and hmac.compare_digest(auth[7:].strip().encode(), self.token.encode()))
            if auth and not authorised:
                self.hello_limiter.failed(peer, now)
        else:
            authorised = _is_loopback(_peer(connection))
        if authorised:
            body.update({"server": f"omokage/{__version__}", "protocol": PROTOCOL_VERSION,
                         "connections": self.connections, "items": len(self.backend.items),
                         "algorithms": list(self.backend.algorithms), "dropped_slow": self.dropped_slow,
                         "event_log": self.events.stats() if self.events is not None else None,
                         "store": self.store.stats() if self.store is not None else None,
                         "sketch": self.sketches.stats() if self.sketches is not None else None,
                         "resumable": self.keeper.stats(time.time()) if self.keeper is not None else None,
                         "in_transit": self.inflight.stats(),
                         "uptime_s": round(time.time() - self.started, 3)})
        return body

    def _host_allowed(self, host: str) -> bool:
        """DNS rebinding: a page on evil.example that re-points its name at this machine sends
        `Host: evil.example`. IP literals cannot be re-pointed; names must be loopback or listed."""
        name = host.strip().lower()
        if name.startswith("["):  # [v6]:port
            name = name[1:name.find("]")] if "]" in name else name
        elif name.count(":") == 1:
            name = name.rsplit(":", 1)[0]
        name = name.rstrip(".")
        if not name:
            return False
        try:
            ipaddress.ip_address(name)
            return True
        except ValueError:
            pass
        return name == "localhost" or name.endswith(".localhost") or name in self.public_names

    def _origin_allowed(self, origin: str, host: str) -> bool:
        if origin in self.allow_origins or "*" in self.allow_origins:
            return True
        return urlsplit(origin).netloc == host  # the page omokage itself served (Host was checked above)

    def _static(self, path: str, accept_encoding: str = "") -> Response:
        if self.web_root is None:
            return _response(http.HTTPStatus.NOT_FOUND, b"no web client installed\n", "text/plain")
        rel = "index.html" if path in ("", "/") else path.lstrip("/")
        root = self.web_root.resolve()
        try:
            target = (self.web_root / rel).resolve()
            found = (root in target.parents or target == root) and target.is_file()
        except (OSError, ValueError):  # a name the file system refuses: not a file we serve
            found = False
        if not found:
            return _response(http.HTTPStatus.NOT_FOUND, b"not found\n", "text/plain")
        ctype = mimetypes.guess_type(target.name)[0] or "application/octet-stream"
        if target.suffix == ".js":
            ctype = "text/javascript"
        body = self._static_cache.get(target)
        if body is None:  # the web client is a few files: read and gzip each once
            raw = target.read_bytes()
            body = self._static_cache[target] = (raw, gzip.compress(raw, 9, mtime=0))
        if "gzip" in accept_encoding and ctype.startswith(("text/", "application/json", "image/svg")):
            return _response(http.HTTPStatus.OK, body[1], ctype, gzip_encoded=True)
        return _response(http.HTTPStatus.OK, body[0], ctype)

    # -- WebSocket side ----------------------------------------------------------------------------
    async def handle(self, ws: WsConnection) -> None:
        session_id = uuid.uuid4().hex[:12]
        peer = _peer(ws)
        conn = ServerConnection(self.backend, session_id, limits=self.limits, token=self.token,
                                grid_size=9, hello_guard=self.hello_limiter.guard(peer), study=self.study,
                                calibration=self.calibration, device_profiles=self.device_profiles,
                                keeper=self.keeper)
        self.connections += 1
        self._per_address[peer] += 1
        self._connections[ws] = conn
        self._session_ids[ws] = session_id
        self._send_locks[ws] = asyncio.Lock()
        log.info("connected", extra={"fields": {"session_id": session_id, "peer": str(ws.remote_address)}})
        loop = asyncio.get_running_loop()

        def hello_due() -> None:
            if not conn.greeted and not conn.closed:
                log.info("closed: no hello", extra={"fields": {"session_id": session_id, "peer": peer}})
                task = loop.create_task(ws.close(1008, f"send hello within {self.hello_deadline_s:g} s"))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
        deadline = loop.call_later(self.hello_deadline_s, hello_due)
        incoming = _ByteBucket(INCOMING_BYTES_PER_S, 2 * self.limits.max_frame_bytes)
        refused = _RefusedTally(session_id)
        bytes_in = 0
        try:
            async for frame in ws:
                size = len(frame)
                bytes_in += size
                if not isinstance(frame, str) and size >= OFFLOAD_DECODE_BYTES:
                    frame = await loop.run_in_executor(self.decode_pool, predecode, frame,
                                                       self.limits.max_frame_bytes)
                now = time.time()
                actions = conn.receive(frame, now)
                del frame  # the bytes are not kept while we wait below
                if conn.greeted and isinstance(ws, GuardedWsConnection):
                    ws.admit()   # frames before the welcome were held to PRE_HELLO_MAX_FRAME_BYTES
                if self.store is not None and conn.refused_over_rate:
                    # a flood: one row per second of them, not two per message (in and its error out)
                    refused.add(now, size)
                    if refused.due(now):
                        self.store.write_many([refused.record(conn)])
                    await self._perform(ws, conn, actions, None, record_out=False)
                    await asyncio.sleep(incoming.charge(size, time.monotonic()))
                    continue
                if refused.count and refused.due(now):    # a flood that goes on between accepted messages
                    self.store.write_many([refused.record(conn)])
                wire_in = self._wire_in(conn, session_id, now, size) if self.store is not None else None
                if not actions and wire_in is not None:
                    # a message with no reply (v1.2 gaze.batch): stored in the next group commit, never waited on
                    self.store.write_many([wire_in])
                while actions:
                    actions = await self._perform(ws, conn, actions, wire_in)
                    wire_in = None
                # one message per connection per loop turn, and no more bytes than the budget allows
                await asyncio.sleep(incoming.charge(size, time.monotonic()))
        except ConnectionClosed:
            pass
        except SlowConsumer as exc:
            await self._drop_slow(ws, session_id, str(exc))
        except Exception:
            log.exception("connection handler failed", extra={"fields": {"session_id": session_id}})
        finally:
            deadline.cancel()
            if refused.count and self.store is not None:
                self.store.write_many([refused.record(conn)])
            conn.disconnected()   # work still out for it (a drawing being projected) is dropped, not sent
            if self.keeper is not None:   # v1.7: its selection waits for the client to come back, if it has one
                if conn.resumable:
                    self.keeper.detach(conn.resume_token, time.time())
                else:
                    self.keeper.forget(conn.resume_token)
            self.connections -= 1
            self._per_address[peer] -= 1
            if self._per_address[peer] <= 0:
                del self._per_address[peer]
            self._connections.pop(ws, None)
            self._sending.discard(ws)
            self._send_locks.pop(ws, None)
            self._stalls.pop(ws, None)
            self._session_ids.pop(ws, None)
            # bytes received, complete or not: a large frame dropped half-way was held too
            if (max(bytes_in, getattr(ws, "bytes_received", 0)) >= RELEASE_AFTER_BYTES or self._slow_dropped(ws)
                    or ws in self._projected):
                self._release_pending = True
            self._projected.discard(ws)
            self._event({"event": "disconnect", "session_id": session_id, "at": time.time(),
                         "messages_in": conn.messages_in, "errors_out": conn.errors_out})
            if self.study is not None:
                self.study.disconnected(session_id)
            log.info("disconnected", extra={"fields": {"session_id": session_id, "messages_in": conn.messages_in,
                                                       "errors_out": conn.errors_out}})

    @staticmethod
    def _wire_in(conn: ServerConnection, session_id: str, now: float, size: int) -> dict[str, Any]:
        """The store's record of the message just received (bins as their length; no token, no participant code)."""
        msg = conn.last_message
        if msg is None:  # a frame that did not decode or validate: its error reply is logged on the way out
            return {"wire": "in", "session_id": session_id, "at": now, "kind": "(invalid)", "body": {"bytes": size},
                    "trial": conn.trial_id}
        t = msg.get("t") if msg["type"] == "ping" else None
        return {"wire": "in", "session_id": session_id, "at": now, "kind": msg["type"], "rid": msg.get("rid"),
                "client_time": float(t) if t is not None else None, "body": wire.incoming(msg),
                "trial": conn.trial_id}

    async def _keep_blobs(self, blobs: Sequence[tuple[str, bytes]]) -> bool:
        """The blobs records name (omokage.store.blobs), on disk before the records are (off the loop: a file and its
        folder are synced). False when one could not be written (a full disk): then the records may not be
        committed, nor their step acknowledged."""
        if not blobs or self.blobs is None:
            return True
        try:
            await asyncio.get_running_loop().run_in_executor(self.blob_pool, self.blobs.put, blobs)
            return True
        except Exception:
            log.exception("could not write a blob beside the event log", extra={"fields": {
                "path": str(self.blobs.directory)}})
            return False

    async def _commit(self, records: list[dict[str, Any]], wire_in: dict[str, Any] | None) -> bool:
        """Write-ahead: events reach the log and the store (each synced, in a group commit) before the client
        sees their effect, so a reply never acknowledges an event a crash or power loss could lose. False when a
        sink failed (a full disk): then nothing may be acknowledged."""
        waits = []
        if self.events is not None:
            waits.append((self.events.path, self.events.commit(records)))
        if self.store is not None:
            waits.append((self.store.path, self.store.commit([wire_in, *records] if wire_in else records)))
        ok = True
        for path, done in waits:
            try:
                await done
            except Exception:
                ok = False
                log.exception("could not write session events", extra={"fields": {"path": str(path)}})
        return ok

    async def _perform(self, ws: WsConnection, conn: ServerConnection, actions,
                       wire_in: dict[str, Any] | None = None, record_out: bool = True) -> list:
        """Carry out actions; returns follow-up actions (from offloaded work). record_out: the store keeps the
        messages sent (not for refusals a tally stands for)."""
        follow = []
        for a in actions:
            if isinstance(a, Log) and not a.acknowledged:
                self._event(a.record)
        records = [a.record for a in actions if isinstance(a, Log) and a.acknowledged]
        blobs = [blob for a in actions if isinstance(a, Log) and a.acknowledged for blob in a.blobs]
        for record in records:
            events_log.info(record.get("event", "event"), extra={"fields": record})
        if records:
            if not (await self._keep_blobs(blobs) and await self._commit(records, wire_in)):
                # The session moved on in memory but its events are not on disk: acknowledging would lie, and
                # going on would serve a state a restart cannot rebuild. Say so and end this connection.
                rid = next((a.message.get("rid") for a in actions if isinstance(a, Send)), None)
                conn.unrecorded()
                then = ("reconnect to go on from your last recorded step" if conn.participant is not None
                        else "reconnect and start again")
                actions = [Send(error("internal", "the server could not record this step (its event log failed "
                                                  f"to write: a full disk?); it was not kept; {then}", rid)),
                           Close(1011, "event log write failed")]
            wire_in = None
        wire_out: list[dict[str, Any]] = [wire_in] if wire_in is not None else []
        bulk = sum(isinstance(a, Send) for a in actions) > BULK_SENDS
        slot = False  # holding a bulk turn; never while waiting for the client to read
        # a bulk reply holds its connection's send lock throughout, taken before any bulk turn: a turn is never held
        # while another send to the same client (a sketch result's) waits on that client
        lock = self._send_locks.get(ws) if bulk else None
        if lock is not None:
            await lock.acquire()
        try:
            sent = 0
            for action in actions:
                if isinstance(action, Send):
                    frame = action.frame
                    if bulk:
                        if _buffered(ws) + len(frame) > WRITE_LIMIT or getattr(ws, "paused", False):
                            if slot:
                                self.bulk_slots.release()
                                slot = False
                            await self._wait_writable(ws)
                        if not slot:
                            await self.bulk_slots.acquire()
                            slot = True
                    await self._send(ws, frame, locked=lock is not None)
                    if self.store is not None and record_out:
                        msg = action.message
                        wire_out.append({"wire": "out", "session_id": conn.session_id, "at": time.time(),
                                         "kind": msg.get("type"), "rid": msg.get("rid"), "body": wire.outgoing(msg),
                                         "trial": conn.trial_id})
                    sent += 1
                    if sent % YIELD_EVERY == 0:
                        await asyncio.sleep(0)
                elif isinstance(action, Close):
                    async with asyncio.timeout(self.send_timeout):
                        await ws.close(action.code, action.reason)
                elif isinstance(action, Supersede):
                    self._supersede(action.connection)
                elif isinstance(action, Offload) and isinstance(action.job, SketchJob):
                    self.sketches.submit(ws, conn, action.job)   # not awaited: strokes go on arriving meanwhile
                elif isinstance(action, Offload) and isinstance(action.job, SharpenJob):
                    self.sketches.sharpen(ws, conn, action.job)  # v1.6: a sharper preview follows, when it can
                elif isinstance(action, Offload) and isinstance(action.job, IdealJob):
                    follow.extend(await self._ideal(conn, action.job))
                elif isinstance(action, Offload) and isinstance(action.job, BackJob):
                    follow.extend(await self._back(conn, action.job))
                elif isinstance(action, Offload):
                    self._projected.add(ws)
                    follow.extend(await self._offload(conn, action.job))
        except TimeoutError:
            raise SlowConsumer(f"the client did not take its close frame for {self.send_timeout:g} s") from None
        finally:
            if slot:
                self.bulk_slots.release()
            if lock is not None:
                lock.release()
            if wire_out and self.store is not None:
                self.store.write_many(wire_out)
        return follow

    def _supersede(self, previous: ServerConnection) -> None:
        """v1.7: its selection went on on a new connection (the client reconnected before this link was seen to die):
        close it, without waiting for a client that is most likely gone."""
        ws = next((w for w, c in self._connections.items() if c is previous), None)
        if ws is None:
            return
        log.info("superseded by a resumed connection", extra={"fields": {"session_id": previous.session_id}})
        closing = ws.close(1000, "this selection was resumed on another connection")
        task = asyncio.get_running_loop().create_task(closing)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _wait_writable(self, ws: WsConnection) -> None:
        """Wait (without a bulk turn) until the client has read half the write buffer, at most send_timeout."""
        deadline = time.monotonic() + self.send_timeout
        self._sending.add(ws)
        try:
            while _buffered(ws) > WRITE_LIMIT // 2 or getattr(ws, "paused", False):
                if time.monotonic() > deadline:
                    raise SlowConsumer(f"the client read nothing for {self.send_timeout:g} s")
                await asyncio.sleep(0.005)
        finally:
            self._sending.discard(ws)

    async def _send(self, ws: WsConnection, frame: bytes, locked: bool = False) -> None:
        """A send that waits at most send_timeout for the client to read (websockets waits forever). One at a time per
        connection (locked: the caller holds the connection's send lock already)."""
        lock = None if locked else self._send_locks.get(ws)   # none: the connection is gone, and ws.send says so
        if lock is not None:
            async with lock:
                await self._send_now(ws, frame)
        else:
            await self._send_now(ws, frame)

    async def _send_now(self, ws: WsConnection, frame: bytes) -> None:
        # under the high-water mark and not paused (websockets waits for the buffer to fall to a quarter of it once
        # writing is paused): cannot block
        if _buffered(ws) + len(frame) <= WRITE_LIMIT and not getattr(ws, "paused", False):
            await ws.send(frame)
            return
        self._sending.add(ws)
        try:
            async with asyncio.timeout(self.send_timeout):
                await ws.send(frame)
        except TimeoutError:
            raise SlowConsumer(f"the client read nothing for {self.send_timeout:g} s") from None
        finally:
            self._sending.discard(ws)

    def _slow_dropped(self, ws: WsConnection) -> bool:
        if ws in self._dropped:
            self._dropped.discard(ws)
            return True
        return False

    async def _drop_slow(self, ws: WsConnection, session_id: str, why: str) -> None:
        """Disconnect a client that stopped reading: close 1008 if the frame gets through within a
        second, else abort the TCP connection. Its buffers are freed with it. Once per connection: every task that
        was sending to it (its sketch results') times out alike."""
        transport = ws.transport
        if ws in self._dropped or transport is None or transport.is_closing():   # being dropped, or gone
            return
        self.dropped_slow += 1
        self._dropped.add(ws)
        log.warning("slow consumer disconnected", extra={"fields": {
            "session_id": session_id, "peer": _peer(ws), "why": why,
            "buffered": transport.get_write_buffer_size() if transport is not None else None}})
        try:
            async with asyncio.timeout(1.0):
                await ws.close(1008, f"too slow: {why}"[:120])
        except (TimeoutError, ConnectionClosed, OSError):
            pass
        finally:
            if transport is not None and not transport.is_closing():
                transport.abort()

    async def _watchdog(self) -> None:
        """The keepalive cannot see a client that stopped reading: its ping waits on the same full
        buffer. Every quarter of send_timeout, a connection whose handler is not sending and whose
        write buffer has not shrunk for send_timeout is dropped as a slow consumer."""
        period = max(0.05, min(1.0, self.send_timeout / 4))
        while True:
            await asyncio.sleep(period)
            if self._release_pending:
                self._release_pending = False
                t = time.perf_counter()
                release_memory()
                collected = time.perf_counter() - t
                await asyncio.get_running_loop().run_in_executor(self.decode_pool, trim_heap)
                log.debug("memory released", extra={"fields": {"collect_ms": round(collected * 1000, 2),
                                                               "total_ms": round((time.perf_counter() - t) * 1000, 2)}})
            now = time.monotonic()
            for ws in list(self.server.connections if self.server is not None else ()):
                transport = ws.transport
                size = transport.get_write_buffer_size() if transport is not None and not transport.is_closing() else 0
                if size == 0 or ws in self._sending:
                    self._stalls.pop(ws, None)
                    continue
                seen = self._stalls.get(ws)
                if seen is None or size < seen[0]:
                    self._stalls[ws] = (size, now)
                elif now - seen[1] >= self.send_timeout:
                    self._stalls.pop(ws, None)
                    task = asyncio.create_task(self._drop_slow(ws, self._session_ids.get(ws, "?"),
                                                               f"the client read nothing for {self.send_timeout:g} s"))
                    self._tasks.add(task)
                    task.add_done_callback(self._tasks.discard)

    async def _check_inflight(self) -> None:
        """Large messages arriving too slowly (InflightBudget.check): a client that stalled sends nothing that would
        wake the connection up."""
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(INFLIGHT_CHECK_S)
            self.inflight.check(loop.time())

    async def _ideal(self, conn: ServerConnection, job: IdealJob) -> list:
        """v1.5 `ideal`: the CMA-ES search (~8 ms at 1,500 faces) and the decode, on the worker pool; the client's
        next message is read when it is done, as after an uploaded image."""
        if self.ideal_slots.locked():
            return conn.ideal_failed(job, "overloaded", "too many ideal faces being generated; retry shortly")
        async with self.ideal_slots:
            try:
                found, image = await asyncio.get_running_loop().run_in_executor(
                    self.pool, functools.partial(self.engine.ideal, job.evidence, job.algorithm, job.near, job.shown,
                                                 seed=job.seed, k=job.count))
            except Exception as exc:
                log.exception("ideal face failed")
                return conn.ideal_failed(job, "internal", f"could not generate the ideal face ({type(exc).__name__})")
        return conn.ideal_done(job, found, image, time.time())

    async def _back(self, conn: ServerConnection, job: BackJob) -> list:
        """v1.7: a long back's replay runs on the worker pool (numpy lets the loop go on meanwhile), a few at a time."""
        if self.back_slots.locked():
            return conn.back_failed(job, "overloaded", "too many backs in progress; retry shortly")
        async with self.back_slots:
            loop = asyncio.get_running_loop()
            try:
                rebuilt = await loop.run_in_executor(self.pool, job.session.rebuilt_without_last_pick, job.inputs)
                return conn.back_done(job, rebuilt, time.time())
            except Exception as exc:
                log.exception("back failed")
                return conn.back_failed(job, "internal", f"back failed ({type(exc).__name__}); the grid on screen "
                                                         "is unchanged")

    async def _offload(self, conn: ServerConnection, job: ProjectionJob) -> list:
        if self.projection_slots.locked():
            return conn.projection_failed(job, "overloaded", "too many image uploads in progress; retry shortly")
        async with self.projection_slots:
            loop = asyncio.get_running_loop()
            try:
                vector, recon = await loop.run_in_executor(self.pool, project_upload, self.engine, job, self.limits)
            except ImageDecodeError as exc:
                code = "too_large" if exc.reason in ("too_large", "bomb") else "bad_field"
                return conn.projection_failed(job, code, f"start.image: {exc}")
            except Exception as exc:
                log.exception("projection failed")
                return conn.projection_failed(job, "internal", f"could not project the image ({type(exc).__name__})")
        return conn.projection_done(job, vector, recon, time.time())

    # -- models fitted in the background (protocol v1.2) ------------------------------------------
    def _training_changed(self) -> None:
        """Progress moved: tell v1.2 clients, at most once a second (the last figure always goes out)."""
        self.backend.training = self.fitter.training if self.fitter is not None else []
        now = time.monotonic()
        if now - self._models_note_at >= MODELS_NOTE_INTERVAL_S:
            self._notify_models()
        elif not self._models_note_pending:
            self._models_note_pending = True
            asyncio.get_running_loop().call_later(MODELS_NOTE_INTERVAL_S - (now - self._models_note_at),
                                                  self._notify_models)

    def _notify_models(self) -> None:
        self._models_note_pending = False
        self._models_note_at = time.monotonic()
        for ws, conn in list(self._connections.items()):
            for action in conn.models_changed():
                frame = action.frame
                if self.store is not None:   # the store keeps every message out, these too
                    self.store.write({"wire": "out", "session_id": conn.session_id, "at": time.time(),
                                      "kind": "models", "rid": None, "body": action.message, "trial": conn.trial_id})
                if _buffered(ws) + len(frame) > WRITE_LIMIT:
                    continue  # a client that is not reading gets the next note, or none
                task = asyncio.create_task(self._send_note(ws, frame))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)

    @staticmethod
    async def _send_note(ws: WsConnection, frame: bytes) -> None:
        with contextlib.suppress(ConnectionClosed, OSError):
            await ws.send(frame)

    async def _serve_fitted(self, name: str) -> None:
        """A background fit saved `name`: load it off the loop, then serve it and tell the clients."""
        fitter = self.fitter
        loop = asyncio.get_running_loop()
        loaded = await loop.run_in_executor(self.pool, functools.partial(
            load_fitted, self.engine.catalog, fitter.catalog_dir, fitter.models_dir, name,
            user_model=self.engine.user_model))
        self.engine.add_model(loaded)
        self._event({"event": "model_served", "algorithm": name, "at": time.time()})
        log.info("now serving", extra={"fields": {"algorithm": name, "algorithms": list(self.backend.algorithms)}})

    async def _run_fitter(self) -> None:
        await asyncio.sleep(0.2)  # the URL is announced first (on_ready runs once `run` waits)
        try:
            await self.fitter.run(self._training_changed, self._serve_fitted)
        finally:
            self._notify_models()  # the final state goes out at once

    def _event(self, record: dict[str, Any]) -> None:
        events_log.info(record.get("event", "event"), extra={"fields": record})
        if self.events is not None:
            self.events.write(record)
        if self.store is not None:
            self.store.write(record)

    async def run(self, host: str, port: int, ready: asyncio.Future | None = None,
                  stop: asyncio.Future | None = None, tls: ssl.SSLContext | None = None) -> None:
        stop = stop if stop is not None else asyncio.get_running_loop().create_future()
        if host and host not in ("0.0.0.0", "::"):
            self.public_names.add(host.lower().rstrip("."))  # the name the server was told to bind answers too
        try:
            await self._serve(host, port, ready, stop, tls)
        finally:   # a bind that failed too: the log's lock and the worker pools go (the process may start another)
            self._close_sinks()

    async def _serve(self, host: str, port: int, ready: asyncio.Future | None, stop: asyncio.Future,
                     tls: ssl.SSLContext | None) -> None:
        async with serve(self.handle, host, port, ssl=tls, process_request=self.process_request, compression=None,
                         create_connection=functools.partial(GuardedWsConnection, inflight=self.inflight),
                         max_size=2 * self.limits.max_frame_bytes, max_queue=MAX_QUEUE, write_limit=WRITE_LIMIT,
                         ping_interval=20, ping_timeout=20, server_header=f"omokage/{__version__}") as server:
            self.server = server
            watchdog = asyncio.create_task(self._watchdog())
            inflight_checks = asyncio.create_task(self._check_inflight())
            fitting = asyncio.create_task(self._run_fitter()) if self.fitter is not None else None
            bound = server.sockets[0].getsockname()
            scheme = "wss" if tls else "ws"
            log.info("serving", extra={"fields": {"url": f"{scheme}://{bound[0]}:{bound[1]}{WS_PATH}",
                                                  "algorithms": list(self.backend.algorithms),
                                                  "items": len(self.backend.items)}})
            if ready is not None and not ready.done():
                ready.set_result(bound)
            # What loading leaves for later, made now rather than on the first user's first upload or `ideal`, and on
            # the pool once listening rather than before, so that a start does not wait for it: the models' torch
            # modules and sessions (ae's imports torch, ~2.5 s) and the ideal-face search's CMA-ES (`cma` imports
            # scipy.stats and matplotlib, ~2 s). One job, so the pool's other workers stay free for uploads; an upload
            # or `ideal` that comes first makes what it needs itself, or waits for this job on the model's or the
            # import lock. A server stopped meanwhile skips what is left (its shutdown waits for the pool).
            warming = threading.Event()
            self.pool.submit(self._warm_up, list(self.engine.models.values()), self.engine.can_generate_ideal,
                             warming)
            await stop
            warming.set()
            log.info("shutting down", extra={"fields": {"connections": self.connections}})
            watchdog.cancel()
            inflight_checks.cancel()
            if fitting is not None:
                fitting.cancel()
                try:
                    await fitting
                except asyncio.CancelledError:
                    pass
                except Exception:  # a fitter failure must not cost the event logs their last records
                    log.exception("background fitting failed")
            server.close()  # closes connections with 1001 (going away) and waits for handlers
            await server.wait_closed()

    @staticmethod
    def _warm_up(models: list, ideal: bool, stopping: threading.Event) -> None:
        for loaded in models:
            if stopping.is_set():
                return
            try:
                loaded.model.warm()
            except Exception:   # a model that cannot project says so now, in the log, as its uploads will
                log.exception("warming a model failed", extra={"fields": {"algorithm": loaded.name,
                                                                          "model": str(loaded.version_dir)}})
        if ideal and not stopping.is_set():
            try:
                importlib.import_module("cma")
            except Exception:   # `ideal` says so when asked, as it did before
                log.exception("importing cma for ideal faces failed")

    def _close_sinks(self) -> None:
        if self.sketches is not None:
            self.sketches.close()
        self.pool.shutdown(wait=True)
        self.decode_pool.shutdown(wait=True)
        if self.blob_pool is not None:
            self.blob_pool.shutdown(wait=True)
        if self.events is not None:
            self.events.close()
            log.info("event log closed", extra={"fields": {"path": str(self.events.path), **self.events.stats()}})
        if self.store is not None:
            self.store.close()
            log.info("event store closed", extra={"fields": self.store.stats()})


class SketchBatcher:
    """Drawings of every session, projected in batches off the event loop (v1.3 sketch).

    Each connection has at most one drawing out (the connection coalesces the rest), so the queue never holds more
    than one entry per connection. While a batch runs, new drawings queue; the next batch takes them all (up to
    `max_batch`): under load the per-drawing cost falls (one matrix product for many drawings) instead of a queue
    growing. Results are delivered to their connections by tasks of their own, so a slow reader delays only itself.

    Where: a worker process (`omokage.sketch.worker`: no GIL shared with the loop) when the previews are PCA's own
    (numpy) or the decoder says how the process makes it again (`worker_spec`: a GPU decoder of the `gen` model), else,
    and with OMOKAGE_SKETCH_WORKER=thread, one worker thread (a decoder gives the GIL up while it runs). A worker
    process that cannot start (it cannot make the decoder there: `SketchWorkerStartError`) is not started again: the
    batch it failed, and every one after it, runs on the thread instead (`worker_fallback` in the stats says why)."""

    def __init__(self, server: "OmokageServer", service, max_batch: int = 64, mode: str | None = None):
        from omokage.sketch.worker import SketchWorker, supports
        self.server = server
        self.service = service
        self.max_batch = max_batch
        self.queue: collections.deque = collections.deque()
        mode = mode or os.environ.get("OMOKAGE_SKETCH_WORKER") or ("process" if supports(service) else "thread")
        if mode not in ("process", "thread") or (mode == "process" and not supports(service)):
            log.warning("sketch worker %r is not possible here; projecting on a thread", mode)
            mode = "thread"
        self.worker = SketchWorker(service) if mode == "process" else None
        self.pool = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="omokage-sketch") \
            if self.worker is None else None
        self.worker_fallback: str | None = None   # why the worker process gave way to the thread
        # a drawing's key in the worker process, by its live state (`SketchJob.live`, one per sketch.begin): when
        # that is collected (a new drawing, the connection gone), its key is queued for the worker to forget
        import weakref
        self._keys: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
        self._forget: collections.deque = collections.deque()
        self._next_key = 0
        self._wakeup: asyncio.Event | None = None
        self._task: asyncio.Task | None = None
        self.batches = 0
        self.drawings = 0
        self.failed = 0           # drawings answered with an error
        self.compute_s = 0.0      # time from handing a batch off to its results, for /healthz
        self.closed = False
        self.sharpener = PreviewSharpener(self, service) if service.sharp is not None else None

    def stats(self) -> dict[str, Any]:
        return {"batches": self.batches, "drawings": self.drawings, "queued": len(self.queue), "failed": self.failed,
                "drawings_per_batch": round(self.drawings / self.batches, 2) if self.batches else None,
                "compute_ms_per_drawing": round(1000 * self.compute_s / self.drawings, 3) if self.drawings else None,
                "compute_s": round(self.compute_s, 3),
                **(self.worker.stats() if self.worker is not None else {"worker": "thread"}),
                **({"worker_fallback": self.worker_fallback} if self.worker_fallback else {}),
                **({"sharpen": self.sharpener.stats()} if self.sharpener is not None else {})}

    def sharpen(self, ws, conn: ServerConnection, job: SharpenJob) -> None:
        if self.sharpener is not None and not self.closed:
            self.sharpener.offer(ws, conn, job)

    def submit(self, ws, conn: ServerConnection, job: SketchJob) -> None:
        if self.closed:
            return   # shutting down: nothing is projected any more
        self.queue.append((ws, conn, job))
        if self._task is None or self._task.done():
            self._wakeup = asyncio.Event()
            self._task = asyncio.get_running_loop().create_task(self._run())
        self._wakeup.set()

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            while self.queue:
                batch = [self.queue.popleft() for _ in range(min(len(self.queue), self.max_batch))]
                batch = [entry for entry in batch if not entry[1].closed]   # gone while it waited
                if not batch:
                    continue
                try:
                    await self._project(loop, batch)
                except asyncio.CancelledError:
                    raise
                except Exception:   # a bug here must not end sketching for everyone, nor leave these waiting
                    log.exception("sketch batch failed")
                    for ws, conn, job in batch:
                        if conn._sketch_busy and not conn.closed:
                            self._deliver(ws, conn, conn.sketch_failed(job, "internal", "could not project the "
                                                                       "drawing; draw on or send `sketch.clear`"))

    async def _project(self, loop, batch) -> None:
        started = time.perf_counter()
        if self.worker is not None:
            results = await self._in_process(batch)
        else:
            results = await self._in_thread(loop, batch)
        self.compute_s += time.perf_counter() - started
        self.batches += 1
        self.drawings += len(batch)
        now = time.time()
        for (ws, conn, job), result in zip(batch, results):
            try:
                if isinstance(result, Exception):
                    self.failed += 1
                    kind = getattr(result, "kind", type(result).__name__)
                    actions = conn.sketch_failed(job, "internal", f"could not project the drawing ({kind}); draw on "
                                                                  "or send `sketch.clear`")
                else:
                    actions = conn.sketch_done(job, result, now)
            except Exception as exc:   # a bug for one connection must not stop sketching for all
                log.exception("sketch result handling failed")
                actions = conn.sketch_failed(job, "internal", f"could not send the result "
                                                              f"({type(exc).__name__})")
            self._deliver(ws, conn, actions)

    def _key(self, live) -> int | None:
        if live is None:
            return None
        key = self._keys.get(live)
        if key is None:
            import weakref
            self._next_key += 1
            key = self._keys[live] = self._next_key
            weakref.finalize(live, self._forget.append, key)
        return key

    async def _in_process(self, batch) -> list:
        from omokage.sketch.worker import SketchWorkerError, SketchWorkerStartError
        drawings = [(self._key(job.live), job.drawing) for _, _, job in batch]
        forget = []
        while self._forget:
            forget.append(self._forget.popleft())
        try:
            return await self.worker.run(drawings, forget)
        except SketchWorkerStartError as exc:
            # it cannot make what it was sent (a GPU decoder it cannot make there, say): another start would fail the
            # same way, and every batch with it, while the server's own service works
            log.error("%s; projecting on a thread in the server from now on", exc,
                      extra={"fields": {"drawings": len(batch)}})
            self.worker_fallback = str(exc)
            self.worker.close()
            self.worker = None
            self._forget.clear()
            self.pool = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="omokage-sketch")
            return await self._in_thread(asyncio.get_running_loop(), batch)
        except SketchWorkerError as exc:   # the process ended or hung: this batch fails, the next starts a new one
            log.error("%s", exc, extra={"fields": {"drawings": len(batch)}})
            return [exc] * len(batch)

    async def _in_thread(self, loop, batch) -> list:
        drawings = [job.drawing for _, _, job in batch]
        lives = [job.live for _, _, job in batch]
        lives = lives if all(live is not None for live in lives) else None
        try:
            return await loop.run_in_executor(self.pool, self.service.run, drawings, lives)
        except Exception:
            log.exception("sketch projection failed; retrying the batch's drawings one by one")
            # one bad drawing fails alone; afresh (a live state may be half updated: it is rebuilt)
            for live in lives or ():
                live.reset()
            return [await self._run_one(loop, d) for d in drawings]

    async def _run_one(self, loop, drawing):
        try:
            return (await loop.run_in_executor(self.pool, self.service.run, [drawing]))[0]
        except Exception as exc:
            return exc

    def _deliver(self, ws, conn: ServerConnection, actions) -> None:
        if not actions:
            return

        async def perform():
            current = actions
            try:
                while current:
                    current = await self.server._perform(ws, conn, current)
            except ConnectionClosed:
                pass   # the connection's own handler notices and cleans up
            except SlowConsumer as exc:
                await self.server._drop_slow(ws, conn.session_id, str(exc))
            except Exception:
                log.exception("could not deliver a sketch result")
                # the connection waits for the projection these actions hand on: hand it on, or it waits forever
                for a in current:
                    if isinstance(a, Offload) and isinstance(a.job, SketchJob) \
                            and not any(j is a.job for _, _, j in self.queue):
                        self.submit(ws, conn, a.job)

        task = asyncio.get_running_loop().create_task(perform())
        self.server._tasks.add(task)
        task.add_done_callback(self.server._tasks.discard)

    def close(self) -> None:
        self.closed = True
        if self._task is not None:
            self._task.cancel()
        if self.sharpener is not None:
            self.sharpener.close()
        if self.worker is not None:
            self.worker.close()
        else:
            self.pool.shutdown(wait=False, cancel_futures=True)


class PreviewSharpener:
    """v1.6 `sketch.preview`: sharper previews of each drawing's newest result, from a generator too slow for the live
    loop (`SketchService.sharp`: the `gen` decoder in ONNX Runtime on a CPU), decoded in batches in a process that
    runs in the CPU's spare time only (`SharpenProcess`).

    A drawing is sharpened once it rests: its newest result waits `rest_s` and is decoded only if no newer result
    came meanwhile (a newer one replaces it and waits in turn). While the pen moves, each result is superseded within
    a message interval (33 ms at 30 Hz), so decoding it would spend a core on a face nobody sees for long, and that
    core is the live loop's tail: at 50 people drawing without pause, sharpening every result the decoder could reach
    put the stroke -> result p99 at 36-38 ms against 10-12 ms once the pen has to rest (benchmarks/results/sketch.md,
    docs/sketch.md). When the pen lifts or stops, the sharper face
    follows about `rest_s` plus one decode later. The connection still drops a preview its client has a newer result
    for (a stroke that came during the decode)."""

    def __init__(self, batcher: SketchBatcher, service, max_batch: int = 2, rest_s: float = SHARPEN_REST_S):
        """max_batch: small, so a batch is decoded before its drawings' next results make it stale (a client drawing
        at 30 Hz has a new result every 33 ms; 8 previews took ~60 ms here and nearly all came too late)."""
        self.batcher = batcher
        self.service = service
        self.max_batch = max_batch
        self.rest_s = float(rest_s)
        self.pending: dict[int, tuple] = {}      # id(conn) -> (ws, conn, job, due), in the order they came
        self.process = SharpenProcess(service.sharp, service.preview_size)
        self._wakeup: asyncio.Event | None = None
        self._task: asyncio.Task | None = None
        self.batches = self.previews = self.replaced = self.failed = self.skipped = 0
        self.compute_s = 0.0
        self.closed = False

    def stats(self) -> dict[str, Any]:
        return {"batches": self.batches, "previews": self.previews, "replaced": self.replaced, "failed": self.failed,
                "skipped": self.skipped, "queued": len(self.pending), "backend": getattr(self.service.sharp, "name", None),
                "process_starts": self.process.starts, "failures_in_a_row": self.process.failures,
                "compute_ms_per_preview": round(1000 * self.compute_s / self.previews, 3) if self.previews else None}

    def offer(self, ws, conn: ServerConnection, job: SharpenJob) -> None:
        if self.closed:
            return
        key = id(conn)
        if key in self.pending:
            self.replaced += 1
            del self.pending[key]            # to the back of the line: it waits its full rest again
        loop = asyncio.get_running_loop()
        self.pending[key] = (ws, conn, job, loop.time() + self.rest_s)
        if self._task is None or self._task.done():
            self._wakeup = asyncio.Event()
            self._task = loop.create_task(self._run())
        self._wakeup.set()

    async def _run(self) -> None:
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            while self.pending:
                # every rest is equally long, so the line is in order of due time: the front is due first
                now = asyncio.get_running_loop().time()
                keys = [k for k, e in itertools.islice(self.pending.items(), self.max_batch) if e[3] <= now]
                if not keys:
                    await asyncio.sleep(next(iter(self.pending.values()))[3] - now)
                    continue
                entries = [self.pending.pop(k)[:3] for k in keys]
                batch = [e for e in entries if e[1].wants_sharpen(e[2])]   # stale while it waited: not decoded
                self.skipped += len(entries) - len(batch)
                if not batch:
                    continue
                started = time.perf_counter()
                try:
                    previews = await asyncio.wrap_future(
                        self.process.submit(np.stack([job.latent for _, _, job in batch])))
                except asyncio.CancelledError:
                    raise
                except SharpenUnavailable:   # backing off after failures (logged when they happened)
                    self.failed += len(batch)
                    continue
                except Exception:   # the quick previews stand; sharpening goes on with the next batch
                    log.exception("sharper sketch previews failed", extra={"fields": {"drawings": len(batch)}})
                    self.failed += len(batch)
                    continue
                self.compute_s += time.perf_counter() - started
                self.batches += 1
                self.previews += len(batch)
                for (ws, conn, job), preview in zip(batch, previews):
                    self.batcher._deliver(ws, conn, conn.sketch_sharpened(job, preview))

    def close(self) -> None:
        self.closed = True
        self.pending.clear()
        if self._task is not None:
            self._task.cancel()
        self.process.close()


class _RefusedTally:
    """Messages a connection sent over its rate: the store keeps one `(overloaded)` row for each second of them
    (how many, how many bytes, from when to when) instead of each message and its refusal, so a flood cannot grow
    the store faster than a client within its rate can."""

    def __init__(self, session_id: str, period_s: float = 1.0):
        self.session_id, self.period_s = session_id, period_s
        self.count = self.bytes = 0
        self.since = self.until = 0.0

    def add(self, now: float, size: int) -> None:
        if not self.count:
            self.since = now
        self.count += 1
        self.bytes += size
        self.until = now

    def due(self, now: float) -> bool:
        return now - self.since >= self.period_s

    def record(self, conn) -> dict[str, Any]:
        row = {"wire": "in", "session_id": self.session_id, "at": self.since, "kind": "(overloaded)",
               "body": {"refused": self.count, "bytes": self.bytes, "until": self.until}, "trial": conn.trial_id}
        self.count = self.bytes = 0
        return row


@dataclass
class _ByteBucket:
    """A token bucket of bytes: charge() returns how long to wait before reading more."""
    rate: float
    burst: float
    level: float = -1.0
    last: float = 0.0

    def charge(self, size: int, now: float) -> float:
        if self.level < 0:
            self.level, self.last = self.burst, now
        self.level = min(self.burst, self.level + (now - self.last) * self.rate) - size
        self.last = now
        return 0.0 if self.level >= 0 else -self.level / self.rate


class SlowConsumer(Exception):
    """The client did not read its replies within send_timeout."""


def _buffered(ws: WsConnection) -> int:
    """Bytes written for the client and not yet taken by the kernel (0 once the connection is closing)."""
    transport = ws.transport
    return transport.get_write_buffer_size() if transport is not None and not transport.is_closing() else 0


def _loggable(path: str) -> str:
    """A request path for the logs: without its query string, where a page's `?token=` would be."""
    parts = urlsplit(path[:2048])
    return parts.path[:200] + ("?…" if parts.query else "")


def _peer(connection: WsConnection) -> str:
    address = connection.remote_address
    return str(address[0]) if isinstance(address, (tuple, list)) and address else str(address)


def _is_loopback(address: str) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return ip.is_loopback or (ip.version == 6 and ip.ipv4_mapped is not None and ip.ipv4_mapped.is_loopback)


def is_loopback_host(host: str) -> bool:
    """Whether binding `host` keeps the server off the network (no DNS lookup: a name other than
    localhost counts as non-loopback)."""
    if host.lower().rstrip(".") == "localhost":
        return True
    return bool(host) and _is_loopback(host)


def _malloc_trim():
    try:
        return ctypes.CDLL("libc.so.6").malloc_trim
    except (OSError, AttributeError):  # not glibc (macOS, musl): nothing to trim
        return None


_MALLOC_TRIM = _malloc_trim()


def release_memory() -> None:
    """Give back what closed connections held. websockets' connection objects sit in reference cycles,
    so their buffers (up to MAX_QUEUE frames of 8 MiB) wait for the cyclic collector; and glibc keeps
    freed heap pages (the decoders' arenas too) unless asked: RSS stayed 1.7 GB after three attackers
    left before this. The collection takes ~1 ms after gc.freeze() (serve_forever); the trim (up to
    tens of ms on a large heap) releases the GIL and runs on a worker thread."""
    gc.collect()


def trim_heap() -> None:
    if _MALLOC_TRIM is not None:
        _MALLOC_TRIM(0)


def _response(status: http.HTTPStatus, body: bytes, content_type: str, gzip_encoded: bool = False) -> Response:
    # no Server header here: websockets adds the one given to serve() to every response
    headers = Headers([("Content-Type", content_type), ("Content-Length", str(len(body))),
                       ("Cache-Control", "no-cache"), ("X-Content-Type-Options", "nosniff"),
                       ("Content-Security-Policy", CONTENT_SECURITY_POLICY), ("X-Frame-Options", "DENY")])
    if gzip_encoded:
        headers["Content-Encoding"] = "gzip"
        headers["Vary"] = "Accept-Encoding"
    return Response(status.value, status.phrase, headers, body)


def _default_web_root() -> Path | None:
    try:
        root = Path(str(resources.files("omokage") / "web"))
    except Exception:
        return None
    return root if (root / "index.html").is_file() else None


def install_uvloop() -> str:
    try:
        import uvloop
    except ImportError:
        return "asyncio"
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    return "uvloop"


def tls_context(cert: Path, key: Path) -> ssl.SSLContext:
    """HTTPS/WSS: Quest Browser offers WebXR only on https pages (or localhost)."""
    from omokage.errors import UserError
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        ctx.load_cert_chain(cert, key)
    except (OSError, ssl.SSLError) as exc:
        raise UserError(f"cannot load the TLS certificate {cert} / key {key}: {exc}") from None
    return ctx


def check_exposure(host: str, token: str | None, insecure: bool = False) -> None:
    """Refuse, before anything binds, a server a LAN could use without a token."""
    from omokage.errors import UserError
    if token is not None and not token.strip():
        raise UserError("--token is empty: an empty token would let anyone in. Give a secret, e.g. "
                        "--token $(python -c 'import secrets; print(secrets.token_urlsafe(16))')")
    if token is None and not insecure and not is_loopback_host(host):
        raise UserError(f"--host {host or '(all interfaces)'} exposes the server to the network, and without "
                        "--token anyone who reaches the port can use it. Add --token SECRET (clients send it in "
                        "`hello`), or --insecure if this network is yours alone")




def check_port_free(host: str, port: int,
                    advice: str = "is another server running there? choose another --port") -> None:
    """UserError now, before the models are loaded and the event log is opened, if the port is taken (probed with
    SO_REUSEADDR, as the server binds)."""
    import errno
    import socket
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind((host, port))
    except OSError as exc:
        if exc.errno == errno.EADDRNOTAVAIL:
            advice = "this machine has no such address; give --host one of its own (0.0.0.0: all of them)"
        elif exc.errno == errno.EACCES:
            advice = "ports below 1024 need privileges; choose a port of 1024 or more"
        elif exc.errno != errno.EADDRINUSE:
            advice = "check --host and --port"
        raise UserError(f"cannot listen on {host}:{port}: {exc.strerror or exc}; {advice}") from None


def serve_forever(catalog, models, host="127.0.0.1", port=8765, token=None, allow_origins=(),
                  log_level="info", events_path: Path | None = None, on_ready=None,
                  tls_cert: Path | None = None, tls_key: Path | None = None,
                  max_messages_per_second: float = Limits.max_messages_per_second, insecure: bool = False,
                  public_names: Sequence[str] = (), fsync_events: bool = True,
                  send_timeout: float = SEND_TIMEOUT_S, background_fits: Sequence[str] = (),
                  ae_epochs: int | None = None, fit_report=None, store_path: Path | None = None,
                  study: str | None = None, preview_backend: str = "auto", preview_size: int | None = None,
                  calibration_dir: Path | None = None, resume_ttl_s: float = RESUME_TTL_S) -> int:
    """Serve until SIGINT/SIGTERM. `background_fits`: models to fit (where missing or stale) while the others are
    already served; each is served the moment it is saved. Events go to the JSON-lines file `events_path` (default
    var/events/events-DATE.jsonl when no store is given) and/or the event store at `store_path` (always for a
    study: default var/omokage.db). `study`: walk the participants of this study (in the store) through it."""
    check_exposure(host, token, insecure)
    configure_logging(log_level)
    if port:   # 0: any free port
        check_port_free(host, port)
    tls = tls_context(tls_cert, tls_key) if tls_cert else None
    loop_kind = install_uvloop()
    fitter = None
    if background_fits:
        from omokage.features.fitting import stale_models
        fitted = [a for a in ALGORITHMS if (Path(models) / a).is_dir()]
        stale = set(stale_models(catalog, models, sorted(set(fitted) | set(background_fits))))
        pending = [a for a in background_fits if a in stale]
        fitter = BackgroundFitter(Path(catalog), Path(models), pending, ae_epochs=ae_epochs,
                                  report=fit_report) if pending else None
        ready = [a for a in fitted if a not in stale]
        engine = Engine.open(catalog, models, algorithms=ready, preview_backend=preview_backend,
                             preview_size=preview_size)
    else:
        engine = Engine.open(catalog, models, preview_backend=preview_backend, preview_size=preview_size)
    from omokage.store import serve_sinks
    events_path, store_path = serve_sinks(events_path, store_path, study)
    limits = Limits(max_messages_per_second=max_messages_per_second, burst=int(2 * max_messages_per_second))
    from omokage.errors import UserError
    from omokage.gaze.calibration import CalibrationError, load_device_profiles, load_patterns
    if calibration_dir is not None and not Path(calibration_dir).is_dir():
        raise UserError(f"--calibration {calibration_dir}: no such folder (it holds calibration patterns, *.json, "
                        "like the repository's calibration/)")
    try:
        patterns = load_patterns(calibration_dir)
        devices = load_device_profiles(calibration_dir)
    except (CalibrationError, ValueError, OSError) as exc:
        raise UserError(f"a gaze calibration pattern could not be read: {exc}") from None
    if not patterns:
        log.info("no gaze calibration patterns: clients cannot calibrate (give them with --calibration DIR)")
    server = OmokageServer(engine, limits=limits, token=token, allow_origins=allow_origins, events_path=events_path,
                           public_names=public_names, fsync_events=fsync_events, send_timeout=send_timeout,
                           fitter=fitter, store_path=store_path, calibration=patterns,
                           device_profiles=devices, resume_ttl_s=resume_ttl_s)
    if study:
        from omokage.selection import SERVED_POLICIES
        from omokage.study.runner import StudyRunner
        runner = StudyRunner.load(store_path, study)
        runner.check_served(engine.algorithms, SERVED_POLICIES)
        server.study = runner
        log.info("running a study", extra={"fields": {"study": study, "participants": len(runner.participants)}})
    if token is None and not is_loopback_host(host):
        log.warning("serving without a token on a non-loopback address (--insecure)", extra={"fields": {"host": host}})
    # The engine's objects live as long as the process: out of the collector's sight, a full collection
    # (release_memory, after large frames) takes ~1 ms instead of ~100.
    gc.freeze()

    async def main():
        loop = asyncio.get_running_loop()
        stop = loop.create_future()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, lambda: stop.done() or stop.set_result(None))
        ready = loop.create_future()
        task = asyncio.create_task(server.run(host, port, ready=ready, stop=stop, tls=tls))
        await asyncio.wait({ready, task}, return_when=asyncio.FIRST_COMPLETED)
        if not ready.done():  # run() failed before binding: surface it instead of waiting forever
            exc = task.exception()
            if isinstance(exc, OSError):
                from omokage.errors import UserError
                raise UserError(f"cannot listen on {host}:{port}: {exc.strerror or exc}; is another server "
                                "running there? choose another --port") from None
            raise exc
        bound = ready.result()
        log.info("ready", extra={"fields": {"loop": loop_kind, "events": str(events_path) if events_path else None,
                                            "store": str(store_path) if store_path else None, "fsync": fsync_events}})
        if on_ready is not None:
            on_ready(bound)
        await task

    asyncio.run(main())
    return 0
