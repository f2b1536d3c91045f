"""An async Python client for protocol v1.7 (PROTOCOL_MINOR; `protocol_minor=` greets as an older v1.x client),
used by the tests, the benchmarks and simulated users.

    async with await OmokageClient.connect("ws://127.0.0.1:8765/ws") as c:
        grid = await c.start("pca", policy=c.default_policy)
        grid = await c.choose(grid.items[4].id)
        grid = await c.skip()                       # none of these
        decided = await c.decide(grid.items[0].id)

        await c.sketch_begin()                      # live sketch search (v1.3)
        rid = await c.stroke([0.3, 0.4, 0.5, 0.45, 0.7, 0.4])
        result = await c.sketch_result(rid)         # result["items"]: the nearest faces; result["preview"]: a face
        grid = await c.start("pca", init="sketch")  # the drawing as the first grid of a selection
"""

from __future__ import annotations

import asyncio
import itertools
import time
from dataclasses import dataclass
from typing import Any, Callable

import msgpack
from websockets.asyncio.client import ClientConnection, connect

from omokage import PROTOCOL_VERSION, __version__
from omokage.protocol.messages import PROTOCOL_MINOR


class OmokageError(Exception):
    """The server answered a request with `error`."""

    def __init__(self, code: str, message: str):
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


@dataclass(frozen=True)
class CandidateItem:
    id: int
    distance: float | None
    texture: str
    title: str
    url: str
    probability: float | None = None  # v1.1: the policy's belief that this is the face wanted, when it has one

    @classmethod
    def from_wire(cls, item: dict[str, Any]) -> "CandidateItem":
        # fields a later minor version adds are ignored, as the protocol requires
        return cls(item["id"], item["distance"], item["texture"], item["title"], item["url"], item.get("probability"))


@dataclass(frozen=True)
class Candidates:
    step: int
    algorithm: str
    items: list[CandidateItem]
    reconstruction: dict[str, Any] | None = None
    policy: str | None = None  # v1.1; None from a v1.0 server
    trial: dict[str, Any] | None = None  # v1.2 studies: {index, count, practice, label, task, target?}

    @property
    def ids(self) -> list[int]:
        return [i.id for i in self.items]


class OmokageClient:
    def __init__(self, ws: ClientConnection, welcome: dict[str, Any] | None = None,
                 trace: Callable[[str, dict[str, Any]], None] | None = None):
        self.ws = ws
        self.trace = trace  # called with ("->" | "<-", message) for every frame: transcripts, debugging
        self.welcome = welcome or {}
        self._rids = itertools.count(1)
        self._pending: dict[int, asyncio.Queue] = {}
        self.unsolicited: asyncio.Queue = asyncio.Queue()
        self.models_note: dict[str, Any] | None = None  # the latest v1.2 `models` note
        self.textures: dict[str, dict[str, Any]] = {}  # cache by content hash
        # v1.3 sketch: results are coalesced (one may answer several strokes), so they are not matched to requests
        # one to one; they arrive here, with the errors of sketch messages, in order
        self.sketch_updates: asyncio.Queue = asyncio.Queue()
        self.last_sketch: dict[str, Any] | None = None
        # v1.6: the latest `sketch.preview` (a sharper preview of the result of the same `revision`); they arrive in
        # `sketch_updates` too, in order with the results (`sketch_result` passes over them)
        self.last_sketch_preview: dict[str, Any] | None = None
        self._sketch_rids: set[int] = set()
        # v1.7: the grid a resumed selection was showing (the server sends it, with no rid, after the welcome)
        self.resumed_grid: Candidates | None = None
        self._resumed = asyncio.Event()
        self._reader = asyncio.create_task(self._read_loop())

    @classmethod
    async def connect(cls, url: str, *, client: str = f"omokage-python/{__version__}", token: str | None = None,
                      protocol: int = PROTOCOL_VERSION, protocol_minor: int | None = PROTOCOL_MINOR,
                      open_timeout: float = 10, participant: str | None = None, device: str | None = None,
                      resume: str | None = None,
                      trace: Callable[[str, dict[str, Any]], None] | None = None) -> "OmokageClient":
        """Open the WebSocket and say hello. `protocol_minor=None` greets like a v1.0 client (no minor).
        `participant`: a study participant's code (v1.2, a server run with `--study`). `device`: the headset model,
        e.g. `quest-pro` (v1.5: its default gaze correction applies until a calibration). `resume`: the
        `resume_token` of an earlier connection (v1.7): when the server still keeps its selection, `resumed` is true
        and `resumed_grid` holds the grid it was showing, to choose from as if nothing had happened."""
        ws = await connect(url, compression=None, max_size=16 * 1024 * 1024, open_timeout=open_timeout)
        self = cls(ws, trace=trace)
        hello: dict[str, Any] = {"protocol": protocol, "client": client}
        if token is not None:
            hello["token"] = token
        if protocol_minor is not None:
            hello["protocol_minor"] = protocol_minor
        if participant is not None:
            hello["participant"] = participant
        if device is not None:
            hello["device"] = device
        if resume is not None:
            hello["resume"] = resume
        try:
            self.welcome = await self.request("hello", **hello)
            if self.resumed:   # the grid follows the welcome at once
                await asyncio.wait_for(self._resumed.wait(), open_timeout)
        except BaseException:
            await self.close()  # a refused hello must not leave the socket open
            raise
        return self

    @property
    def resume_token(self) -> str | None:
        """v1.7: the secret to pass as `connect(resume=...)` after a lost connection (None: the server keeps no
        selections for this client, e.g. a study, or a server older than v1.7)."""
        resume = self.welcome.get("resume")
        return resume.get("token") if isinstance(resume, dict) else None

    @property
    def resumed(self) -> bool:
        """v1.7: this connection goes on with the selection of the `resume` token given to connect."""
        return bool(self.welcome.get("resumed"))

    @property
    def protocol_minor(self) -> int:
        """The server's minor version (0 for a v1.0 server, which offers no policies, skip or rate)."""
        return int(self.welcome.get("protocol_minor", 0))

    @property
    def algorithms(self) -> list[str]:
        """The models served now: the welcome's list, updated by v1.2 `models` notes."""
        source = self.models_note if self.models_note is not None else self.welcome
        return list(source.get("algorithms", []))

    @property
    def training(self) -> list[dict[str, Any]]:
        """v1.2: models being fitted in the background, [{algorithm, progress, eta_s?}] (empty: none)."""
        source = self.models_note if self.models_note is not None else self.welcome
        return list(source.get("training", []))

    @property
    def policies(self) -> list[str]:
        return list(self.welcome.get("policies", []))

    @property
    def default_policy(self) -> str | None:
        return self.welcome.get("default_policy")

    async def __aenter__(self) -> "OmokageClient":
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()

    async def close(self) -> None:
        await self.ws.close()
        self._reader.cancel()

    # -- plumbing -------------------------------------------------------------------------------
    async def _read_loop(self) -> None:
        """The one permanent reader: routes replies to their request by rid."""
        try:
            async for frame in self.ws:
                msg = msgpack.unpackb(frame, raw=False)
                if self.trace is not None:
                    self.trace("<-", msg)
                if msg.get("type") == "models" and "rid" not in msg:  # v1.2: served models changed
                    self.models_note = msg
                if msg.get("type") == "sketch.preview":   # v1.6: a sharper preview of a result (no rid)
                    self.last_sketch_preview = msg
                    self.sketch_updates.put_nowait(msg)
                    continue
                if msg.get("type") == "sketch.result" or msg.get("rid") in self._sketch_rids:
                    if msg.get("type") == "sketch.result":
                        self.last_sketch = msg
                        # a result answers every sketch message up to its rid (errors for them came first)
                        self._sketch_rids = {r for r in self._sketch_rids if r > (msg.get("rid") or 0)}
                    self._sketch_rids.discard(msg.get("rid"))
                    self.sketch_updates.put_nowait(msg)
                    continue
                if msg.get("type") == "candidates" and "rid" not in msg:   # v1.7: a resumed selection's grid
                    self.resumed_grid = _candidates(msg)
                    self._resumed.set()
                    continue
                queue = self._pending.get(msg.get("rid"))
                if queue is not None:
                    queue.put_nowait(msg)
                else:
                    self.unsolicited.put_nowait(msg)
        except Exception:
            pass
        finally:
            for queue in self._pending.values():
                queue.put_nowait(None)  # wake waiters: the connection is gone
            self.sketch_updates.put_nowait(None)

    async def _send(self, message: dict[str, Any]) -> None:
        if self.trace is not None:
            self.trace("->", message)
        try:
            await self.ws.send(msgpack.packb(message, use_bin_type=True))
        except AttributeError as exc:
            # websockets can trip over its own transport when the server aborted the connection in the same
            # instant (transport._loop is None); to the caller that is a lost connection, not a bug
            raise ConnectionError(f"connection lost while sending ({exc})") from None

    async def send_raw(self, frame: bytes | str) -> None:
        await self.ws.send(frame)

    async def _next(self, queue: asyncio.Queue, timeout: float) -> dict[str, Any]:
        msg = await asyncio.wait_for(queue.get(), timeout)
        if msg is None:
            raise ConnectionError("connection closed by the server")
        return msg

    async def _exchange(self, message: dict[str, Any], replies: int, timeout: float) -> list[dict[str, Any]]:
        """Send `message` with a fresh rid and collect `replies` replies to it (OmokageError on `error`)."""
        rid = next(self._rids)
        queue: asyncio.Queue = asyncio.Queue()
        self._pending[rid] = queue
        try:
            await self._send({"type": message["type"], "rid": rid, **{k: v for k, v in message.items() if k != "type"}})
            out = []
            while len(out) < replies:
                msg = await self._next(queue, timeout)
                if msg["type"] == "error":
                    raise OmokageError(msg["code"], msg["message"])
                out.append(msg)
            return out
        finally:
            self._pending.pop(rid, None)

    async def request(self, mtype: str, *, timeout: float = 30, **fields) -> dict[str, Any]:
        """Send one request and return its single reply (raises OmokageError on `error`)."""
        return (await self._exchange({"type": mtype, **fields}, 1, timeout))[0]

    # -- protocol -------------------------------------------------------------------------------
    async def start(self, algorithm: str = "pca", init: str | None = None, image: bytes | None = None,
                    seed: int | None = None, policy: str | None = None) -> Candidates:
        """A new selection; `policy` is one of `self.policies` (None: the server's default)."""
        fields: dict[str, Any] = {"algorithm": algorithm, "init": init or ("image" if image is not None else "random")}
        if image is not None:
            fields["image"] = image
        if seed is not None:
            fields["seed"] = seed
        if policy is not None:
            fields["policy"] = policy
        return _candidates(await self.request("start", **fields))

    # -- v1.3 sketch: send without waiting (a live stroke is many messages), then wait for the result that includes them
    @property
    def sketch_limits(self) -> dict[str, Any] | None:
        """v1.3 `welcome.sketch` (resolution, tools, widths, limits), or None when the server has no sketch model."""
        return self.welcome.get("sketch")

    async def sketch_send(self, mtype: str, **fields) -> int:
        """Send `sketch.begin`, `sketch.stroke`, `sketch.undo` or `sketch.clear`; returns its rid (see `sketch_result`)."""
        rid = next(self._rids)
        self._sketch_rids.add(rid)
        await self._send({"type": mtype, "rid": rid, **fields})
        return rid

    async def sketch_begin(self) -> int:
        """Open a new, empty drawing (`sketch.begin`); returns its rid: `await c.sketch_result(rid)` is its result."""
        return await self.sketch_send("sketch.begin")

    async def sketch_undo(self) -> int:
        return await self.sketch_send("sketch.undo")

    async def sketch_clear(self) -> int:
        return await self.sketch_send("sketch.clear")

    async def stroke(self, points: list[float], colour=(20, 20, 20), width: float = 0.012, tool: str = "line",
                     append: bool = False) -> int:
        """One stroke (or, with `append`, more points of the last one): points are x0, y0, x1, y1, ... in 0..1 of
        the canvas, tool "line" or "paint"; sent without waiting, returns its rid (see `sketch_result`)."""
        fields: dict[str, Any] = {"points": [float(p) for p in points], "colour": [int(c) for c in colour],
                                  "width": float(width)}
        if tool != "line":
            fields["tool"] = tool
        if append:
            fields["append"] = True
        return await self.sketch_send("sketch.stroke", **fields)

    async def sketch_result(self, rid: int, timeout: float = 30) -> dict[str, Any]:
        """The first `sketch.result` that includes the sketch message `rid` (results answer the newest message they
        include, and rids grow); OmokageError if that message was refused."""
        while True:
            msg = await self._next(self.sketch_updates, timeout)
            if msg["type"] == "error":
                if msg.get("rid") == rid:
                    raise OmokageError(msg["code"], msg["message"])
                continue
            if msg.get("rid") is not None and msg["rid"] >= rid:
                return msg

    async def sketch_preview(self, revision: int, timeout: float = 30) -> dict[str, Any] | None:
        """v1.6: the `sketch.preview` of drawing `revision`, or None when a later result came first (the server sends
        no sharper preview of a result it has a newer one for). Reads `sketch_updates` like `sketch_result`: a newer
        result it meets is taken off the queue (it is in `last_sketch`). Revisions restart at 0 with each
        `sketch.begin`: ask only about the current drawing."""
        while True:
            msg = await self._next(self.sketch_updates, timeout)
            if msg["type"] == "sketch.preview" and msg["revision"] == revision:
                return msg
            if msg["type"] in ("sketch.result", "sketch.preview") and msg["revision"] > revision:
                return None

    async def choose(self, item_id: int) -> Candidates:
        return _candidates(await self.request("choose", id=item_id))

    async def skip(self) -> Candidates:
        """None of these: the next grid of unseen faces (no chosen face first)."""
        return _candidates(await self.request("skip"))

    async def back(self) -> Candidates:
        """v1.7: undo the last choose or skip: the grid before it comes back, as it was, and the belief forgets the
        pick (OmokageError `wrong_state` on the first grid or in a study trial)."""
        return _candidates(await self.request("back"))

    async def rate(self, item_id: int, rating: int) -> dict[str, Any]:
        """An explicit rating 1..5 of a face shown in this selection; returns the `rated` reply."""
        return await self.request("rate", id=item_id, rating=rating)

    async def decide(self, item_id: int) -> dict[str, Any]:
        return await self.request("decide", id=item_id)

    async def fetch_textures(self, hashes: list[str], timeout: float = 30) -> dict[str, dict[str, Any]]:
        """Textures by hash, from the cache or the server (only the missing ones are requested)."""
        missing = list(dict.fromkeys(h for h in hashes if h not in self.textures))
        per_request = int(self.welcome.get("limits", {}).get("max_hashes_per_request", 64))
        for start in range(0, len(missing), per_request):
            chunk = missing[start:start + per_request]
            for msg in await self._exchange({"type": "texture.get", "hashes": chunk}, len(chunk), timeout):
                self.textures[msg["hash"]] = msg
        return {h: self.textures[h] for h in hashes}

    # -- v1.2 studies ---------------------------------------------------------------------------
    @property
    def study(self) -> dict[str, Any] | None:
        """`welcome.study` when this client is a study participant: {name, title, trials, completed, next}."""
        return self.welcome.get("study")

    async def study_next(self, image: bytes | None = None) -> "Candidates | dict[str, Any]":
        """The participant's next step: `Candidates` (with `.trial`) for a trial, begun or resumed; else the
        `questionnaire` message (answer it with `answers`) or the `study.done` message."""
        fields: dict[str, Any] = {} if image is None else {"image": image}
        reply = await self.request("study.next", **fields)
        return _candidates(reply) if reply["type"] == "candidates" else reply

    async def answers(self, questionnaire: str, values: dict[str, int | str]) -> dict[str, Any]:
        """Answer a questionnaire: {item id: value} (Likert 1..5, a choice's label for best/worst, or text)."""
        return await self.request("answers", questionnaire=questionnaire,
                                  answers=[{"item": k, "value": v} for k, v in values.items()])

    async def ping(self) -> tuple[float, float]:
        """(round trip in seconds, estimated server clock minus local clock in seconds)."""
        t0 = time.time()
        reply = await self.request("ping", t=t0)
        t1 = time.time()
        return t1 - t0, reply["server_time"] - (t0 + t1) / 2

    # -- v1.2 gaze (docs/gaze.md) -------------------------------------------------------------------
    @property
    def gaze_limits(self) -> dict[str, Any] | None:
        """welcome.gaze: {max_rate_hz, max_samples_per_batch}, or None from a server without gaze."""
        return self.welcome.get("gaze")

    async def layout(self, panels: list[dict[str, Any]]) -> None:
        """Where the grid's panels are ({position, rotation, size} each; panel k shows items[k]). No reply: an
        invalid layout comes back as an unsolicited `error` (in `self.unsolicited`)."""
        await self._send({"type": "layout", "panels": panels})

    async def gaze(self, samples: list[list[Any]]) -> None:
        """Send a batch of samples [t, source, ox, oy, oz, dx, dy, dz, confidence(, panel, u, v)], `t` on the
        server's clock (time.time() + the offset `ping` returns). Fire and forget: dropped samples come back as
        unsolicited `error`s with `dropped`. Send the pending batch before choose / skip / decide."""
        await self._send({"type": "gaze.batch", "samples": samples})

    # -- v1.4 gaze calibration (docs/protocol.md#calibration-v14) -------------------------------------------------------
    @property
    def calibration_patterns(self) -> list[str]:
        """welcome.gaze.calibration: the patterns `calibrate_begin` may name ([] from a server that cannot calibrate,
        or to a client that said protocol_minor < 4)."""
        return list((self.welcome.get("gaze") or {}).get("calibration") or [])

    async def calibrate_begin(self, pattern: str | None = None, source: str | None = None) -> dict[str, Any]:
        """Start a calibration: the `calibration` reply {pattern, targets: [[yaw, pitch]], distance_m, settle_s,
        dwell_s}. Show the targets one at a time while streaming gaze(), then call calibrate_end."""
        fields = {k: v for k, v in (("pattern", pattern), ("source", source)) if v is not None}
        return await self.request("calibrate.begin", **fields)

    async def calibrate_end(self, shown: list[list[float]]) -> dict[str, Any]:
        """Say when each target was shown ([[index, t_start, t_end]], server clock): the `calibrated` reply
        {source, targets, accuracy_deg, precision_deg, saved}; OmokageError `calibration_failed` when it did not
        fit (the previous correction stays)."""
        return await self.request("calibrate.end", shown=shown)

    async def calibrate_cancel(self) -> dict[str, Any]:
        """v1.5: abandon the running calibration (the correction in force stays): the `calibration.cancelled` reply
        {samples: the samples dropped}."""
        return await self.request("calibrate.cancel")

    @property
    def gaze_profile(self) -> str | None:
        """v1.5 welcome.gaze.profile: what corrects this session's gaze from the start (`participant`, `device` or
        `none`); None from an older server or to an older client."""
        return (self.welcome.get("gaze") or {}).get("profile")

    # -- v1.5 the ideal face (docs/protocol.md#ideal-face-v15) ------------------------------------------------------
    @property
    def ideal_image_size(self) -> int:
        """welcome.ideal.image_size: the side of an ideal face's image; 0 when the server cannot generate one."""
        return int((self.welcome.get("ideal") or {}).get("image_size") or 0)

    async def ideal(self, near: int | None = None, timeout: float = 30) -> dict[str, Any]:
        """The face the session's belief likes best near `near` (a face shown in this selection; None: the last one
        chosen), generated: the `ideal.result` reply {near, items: [{id, distance, texture, title, url}], preview}."""
        fields = {"near": int(near)} if near is not None else {}
        return await self.request("ideal", timeout=timeout, **fields)


def _candidates(msg: dict[str, Any]) -> Candidates:
    return Candidates(msg["step"], msg["algorithm"], [CandidateItem.from_wire(i) for i in msg["items"]],
                      msg.get("reconstruction"), msg.get("policy"), msg.get("trial"))
