"""`omokage serve`: protocol v1 over WebSocket on uvloop, one sans-I/O ServerConnection per socket.

The event loop only moves bytes. Decoding and projecting an uploaded image runs on a small thread
pool (numpy, PIL and torch release the GIL), so one client's upload never stalls the others.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import gzip
import http
import json
import logging
import mimetypes
import signal
import ssl
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Sequence
from urllib.parse import urlsplit

import numpy as np
from websockets.asyncio.server import ServerConnection as WsConnection
from websockets.asyncio.server import serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from omokage import PROTOCOL_VERSION, __version__
from omokage.catalog.store import Item, Texture, encode_texture
from omokage.engine import Engine
from omokage.imageio import ImageDecodeError, load_image_bytes
from omokage.protocol.connection import (Close, Limits, Log, Offload, ProjectionJob, Send, ServerConnection)
from omokage.selection import FeatureSpace

log = logging.getLogger("omokage.server")
events_log = logging.getLogger("omokage.events")

WS_PATH = "/ws"


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


class EventFile:
    """Append-only JSON-lines file of session events, flushed per line so a crash loses nothing written."""

    def __init__(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        self._f = open(path, "a", buffering=1, encoding="utf-8")
        self._lock = threading.Lock()

    def write(self, record: dict[str, Any]) -> None:
        with self._lock:
            self._f.write(json.dumps(record, default=str, ensure_ascii=False) + "\n")

    def close(self) -> None:
        self._f.close()


@dataclass
class EngineBackend:
    """The read-only view a ServerConnection needs, built once from the engine."""

    engine: Engine
    items: Sequence[Item] = field(init=False)
    textures: dict[str, Texture] = field(init=False)
    image_size: int = field(init=False)
    algorithms: Sequence[str] = field(init=False)

    def __post_init__(self):
        self.items = self.engine.catalog.items
        self.textures = self.engine.catalog.textures()  # a few MB: served from memory
        self.image_size = self.engine.catalog.image_size
        self.algorithms = self.engine.algorithms

    def space(self, algorithm: str) -> FeatureSpace:
        return self.engine.space(algorithm)


def project_upload(engine: Engine, job: ProjectionJob, limits: Limits) -> tuple[np.ndarray, Texture]:
    """Runs on the worker pool: decode (with bomb limits), resize, project, encode the reconstruction."""
    rgb = load_image_bytes(job.image, engine.catalog.image_size, max_bytes=limits.max_image_bytes,
                           max_pixels=limits.max_image_pixels)
    vector, recon = engine.project(job.algorithm, rgb)
    return vector, encode_texture(recon, "jpeg")


class OmokageServer:
    def __init__(self, engine: Engine, *, limits: Limits = Limits(), token: str | None = None,
                 allow_origins: Sequence[str] = (), events_path: Path | None = None, workers: int = 2,
                 max_queued_projections: int = 32, web_root: Path | None = None):
        self.engine = engine
        self.backend = EngineBackend(engine)
        self.limits = limits
        self.token = token
        self.allow_origins = set(allow_origins)
        self.pool = concurrent.futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="omokage-project")
        self.projection_slots = asyncio.Semaphore(max_queued_projections)
        self.events = EventFile(events_path) if events_path else None
        self.web_root = web_root if web_root is not None else _default_web_root()
        self._static_cache: dict[Path, tuple[bytes, bytes]] = {}
        self.connections = 0
        self.started = time.time()
        self.server = None

    # -- HTTP side: health, static web client, origin check ----------------------------------------
    def process_request(self, connection: WsConnection, request: Request) -> Response | None:
        path = urlsplit(request.path).path
        if path == WS_PATH:
            origin = request.headers.get("Origin")
            if origin is not None and not self._origin_allowed(origin, request.headers.get("Host", "")):
                log.warning("origin refused", extra={"fields": {"origin": origin}})
                return _response(http.HTTPStatus.FORBIDDEN, b"origin not allowed; start the server with "
                                 b"--allow-origin ORIGIN\n", "text/plain")
            return None  # proceed with the WebSocket handshake
        if path == "/healthz":
            body = json.dumps({"status": "ok", "server": f"omokage/{__version__}", "protocol": PROTOCOL_VERSION,
                               "connections": self.connections, "items": len(self.backend.items),
                               "algorithms": list(self.backend.algorithms),
                               "uptime_s": round(time.time() - self.started, 3)}).encode()
            return _response(http.HTTPStatus.OK, body, "application/json")
        return self._static(path, request.headers.get("Accept-Encoding", ""))

    def _origin_allowed(self, origin: str, host: str) -> bool:
        if origin in self.allow_origins or "*" in self.allow_origins:
            return True
        return urlsplit(origin).netloc == host  # the page omokage itself served

    def _static(self, path: str, accept_encoding: str = "") -> Response:
        if self.web_root is None:
            return _response(http.HTTPStatus.NOT_FOUND, b"no web client installed\n", "text/plain")
        rel = "index.html" if path in ("", "/") else path.lstrip("/")
        target = (self.web_root / rel).resolve()
        root = self.web_root.resolve()
        if root not in target.parents and target != root or not target.is_file():
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
        conn = ServerConnection(self.backend, session_id, limits=self.limits, token=self.token,
                                grid_size=9)
        self.connections += 1
        log.info("connected", extra={"fields": {"session_id": session_id, "peer": str(ws.remote_address)}})
        try:
            async for frame in ws:
                actions = conn.receive(frame, time.time())
                while actions:
                    actions = await self._perform(ws, conn, actions)
        except ConnectionClosed:
            pass
        except Exception:
            log.exception("connection handler failed", extra={"fields": {"session_id": session_id}})
        finally:
            self.connections -= 1
            self._event({"event": "disconnect", "session_id": session_id, "at": time.time(),
                         "messages_in": conn.messages_in, "errors_out": conn.errors_out})
            log.info("disconnected", extra={"fields": {"session_id": session_id, "messages_in": conn.messages_in,
                                                       "errors_out": conn.errors_out}})

    async def _perform(self, ws: WsConnection, conn: ServerConnection, actions) -> list:
        """Carry out actions; returns follow-up actions (from offloaded work)."""
        follow = []
        # Write-ahead: events reach the log before the client sees their effect, so a crash after
        # a reply never loses the event that produced it.
        for action in actions:
            if isinstance(action, Log):
                self._event(action.record)
        for action in actions:
            if isinstance(action, Send):
                await ws.send(action.frame)
            elif isinstance(action, Close):
                await ws.close(action.code, action.reason)
            elif isinstance(action, Offload):
                follow.extend(await self._offload(conn, action.job))
        return follow

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

    def _event(self, record: dict[str, Any]) -> None:
        events_log.info(record.get("event", "event"), extra={"fields": record})
        if self.events is not None:
            self.events.write(record)

    async def run(self, host: str, port: int, ready: asyncio.Future | None = None,
                  stop: asyncio.Future | None = None, tls: ssl.SSLContext | None = None) -> None:
        stop = stop if stop is not None else asyncio.get_running_loop().create_future()
        async with serve(self.handle, host, port, ssl=tls, process_request=self.process_request, compression=None,
                         max_size=2 * self.limits.max_frame_bytes, max_queue=64, ping_interval=20,
                         ping_timeout=20, server_header=f"omokage/{__version__}") as server:
            self.server = server
            bound = server.sockets[0].getsockname()
            scheme = "wss" if tls else "ws"
            log.info("serving", extra={"fields": {"url": f"{scheme}://{bound[0]}:{bound[1]}{WS_PATH}",
                                                  "algorithms": list(self.backend.algorithms),
                                                  "items": len(self.backend.items)}})
            if ready is not None and not ready.done():
                ready.set_result(bound)
            await stop
            log.info("shutting down", extra={"fields": {"connections": self.connections}})
            server.close()  # closes connections with 1001 (going away) and waits for handlers
            await server.wait_closed()
        self.pool.shutdown(wait=True)
        if self.events is not None:
            self.events.close()


def _response(status: http.HTTPStatus, body: bytes, content_type: str, gzip_encoded: bool = False) -> Response:
    headers = Headers([("Content-Type", content_type), ("Content-Length", str(len(body))),
                       ("Cache-Control", "no-cache"), ("Server", f"omokage/{__version__}")])
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


def serve_forever(catalog, models, host="127.0.0.1", port=8765, token=None, allow_origins=(),
                  log_level="info", events_path: Path | None = None, on_ready=None,
                  tls_cert: Path | None = None, tls_key: Path | None = None,
                  max_messages_per_second: float = Limits.max_messages_per_second) -> int:
    configure_logging(log_level)
    tls = tls_context(tls_cert, tls_key) if tls_cert else None
    loop_kind = install_uvloop()
    engine = Engine.open(catalog, models)
    if events_path is None:
        events_path = Path("var") / "events" / f"events-{time.strftime('%Y%m%d')}.jsonl"
    limits = Limits(max_messages_per_second=max_messages_per_second, burst=int(2 * max_messages_per_second))
    server = OmokageServer(engine, limits=limits, token=token, allow_origins=allow_origins, events_path=events_path)

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
        log.info("ready", extra={"fields": {"loop": loop_kind, "events": str(events_path)}})
        if on_ready is not None:
            on_ready(bound)
        await task

    asyncio.run(main())
    return 0
