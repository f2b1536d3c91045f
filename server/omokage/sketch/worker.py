"""The sketch worker process: `SketchService.run` in a child process of its own, fed over a pipe.

Why a process, not a thread: a live drawing's update is a dozen small numpy calls (the changed entries' rows, a
30 x 30 solve, a 64 px decode and JPEG encode: ~0.3 ms in all), each too short to give up the GIL. On a thread beside
the event loop the two took turns for the GIL (it hands over at most every 5 ms under contention), and at 50 clients
x 30 Hz a stroke's p99 was 20-45 ms on 2 cores. In a child process the projection has no GIL to share; the event
loop only copies each drawing's rasters (5 KB at R = 32: `SketchCanvas.snapshot`, cheaper than the observations it
used to make there) into a frame and reads the answer from a pipe, both through the loop itself (no thread hand-off).

The child is sent the fitted sketch model once, at its start (its arrays, ~25 MB for 1,500 faces: the very model
the server loaded, not whatever the models folder holds by then; a GPU preview decoder's `gen` model travels the same
way, in its `worker_spec`), and keeps each drawing's running sums
(`LiveDrawing`) under a key the server gives the drawing. A frame carries whole rasters, not strokes, so the child
never holds the truth: a drawing it does not know (new, forgotten, or after a restart) is computed afresh, the same
numbers to float rounding.

Frames are a 4-byte big-endian length and a msgpack body (omokage.store.writer's framing):

    parent -> child   ["model", spec]                              once, first: `_model_spec`
    child -> parent   ["ready", pid]                               or ["error", type, message]: it could not
                                                                   make the service (then it exits)
    parent -> child   [batch_no, forget, drawings]                 forget: keys of drawings gone (their sums freed);
                                                                   drawings: [key, revision, R, ink, paint, painted]
    parent -> child   ["stop"]                                     the server is closing (or the end of the input)
    child -> parent   [batch_no, results, compute_s, held]         results, one per drawing: [revision,
                                                                   [[id, p], ...], latent f32, jpeg, sha256, size,
                                                                   L f32], or [error type, message] for a drawing
                                                                   that failed; held: drawings whose sums it keeps

A batch that fails as a whole is retried drawing by drawing in the child (one bad drawing fails alone). When the
child dies (kill -9, a crash) or does not answer within `reply_timeout`, the batch it owed fails
(`SketchWorkerError`) and the next batch starts a new child. A child that never says `ready` (it could not make what
it was sent: a GPU decoder on a GPU it cannot use, say) raises `SketchWorkerStartError`: starting another would fail
the same way, so the server projects in a thread of its own instead (`SketchBatcher`). At the end of its input (the
server closed the pipe, or died) the child exits.

Started by `SketchWorker` as `python -c "from omokage.sketch.worker import main; raise SystemExit(main())"`.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import os
import signal
import subprocess
import sys
import time
from typing import Any, Sequence

import msgpack
import numpy as np

from omokage.sketch.canvas import Raster
from omokage.store.writer import HEADER, MAX_FRAME, frame_bytes   # the store writer's framing, shared

log = logging.getLogger("omokage.sketch")

MAX_LIVES = 4096          # drawings whose running sums the child keeps (~40 KB each); the least recently updated go


class SketchWorkerError(RuntimeError):
    """The worker process ended, hung or answered out of step before it answered a batch."""


class SketchWorkerStartError(SketchWorkerError):
    """The worker process ended or hung before it said it was ready: it could not make the service it was sent."""


class DrawingError(RuntimeError):
    """One drawing the worker could not project; `kind` is the type of the error it raised there."""

    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind = kind


def supports(service) -> bool:
    """Whether `service` can run in a worker process: its previews must come from PCA's own decoder (the numpy
    backend), which the child rebuilds from the model, or from a decoder that says how to make it again there
    (`worker_spec`: a backend of the `gen` model, whose fitted arrays the spec carries)."""
    from omokage.sketch.service import LinearPreview
    return type(service.decoder) is LinearPreview or getattr(service.decoder, "worker_spec", None) is not None


# --- the model, as the child receives it ----------------------------------------------------------------------------

def _array(a: np.ndarray) -> list:
    a = np.ascontiguousarray(a)
    return [a.dtype.str, list(a.shape), a.tobytes()]


def fitted_spec(model) -> dict[str, Any]:
    """A fitted model (omokage.features) as msgpack-ready data: `fitted_from_spec` makes it again in another process,
    the same model to the bit, whatever its folder in the model repository holds by then."""
    return {"name": model.name, "params": model.get_params(), "n_features_in": int(model.n_features_in_),
            "n_features_out": int(model._n_features_out),
            "arrays": {k: _array(v) for k, v in model._fitted_arrays().items()}, "scalars": model._fitted_scalars(),
            "files": dict(model._extra_files())}


def fitted_from_spec(spec: dict[str, Any]):
    from omokage.features import MODEL_CLASSES
    model = MODEL_CLASSES[spec["name"]](**spec["params"])
    model.n_features_in_ = spec["n_features_in"]
    model._n_features_out = spec["n_features_out"]
    # copies, writable as a loaded model's are (torch warns about a tensor over read-only memory: torch_net)
    model._restore({k: np.frombuffer(data, np.dtype(dt)).reshape(shape).copy()
                    for k, (dt, shape, data) in spec["arrays"].items()}, spec["scalars"])
    if spec["files"]:
        model._restore_files(spec["files"])
    return model


def _model_spec(service) -> dict[str, Any]:
    m = service.model
    return {"params": m.get_params(), "n_features_in": int(m.n_features_in_),
            "n_features_out": int(m._n_features_out),
            "arrays": {k: _array(v) for k, v in m._fitted_arrays().items()}, "scalars": m._fitted_scalars(),
            "preview_size": int(service.preview_size), "count": int(service.count),
            **({"decoder_size": int(service.decoder.size)} if getattr(service.decoder, "worker_spec", None) is None
               else {"decoder": service.decoder.worker_spec})}


def _service_from_spec(spec: dict[str, Any]):
    from omokage.sketch.model import SketchModel
    from omokage.sketch.service import LinearPreview, SketchService
    model = SketchModel(**spec["params"])
    model.n_features_in_ = spec["n_features_in"]
    model._n_features_out = spec["n_features_out"]
    model._restore({k: np.frombuffer(data, np.dtype(dt)).reshape(shape)
                    for k, (dt, shape, data) in spec["arrays"].items()}, spec["scalars"])
    if spec.get("decoder"):
        # a GPU decoder, made here from the gen model the server loaded (its arrays, in the spec): this process then
        # owns its own CUDA context and graphs, and the server's event loop shares no GIL with the decoding
        from omokage.sketch.service import make_gen_decoder
        d = spec["decoder"]
        decoder, _ = make_gen_decoder(d["backend"], fitted_from_spec(d["model"]), d.get("options", {}))
    else:
        decoder = LinearPreview(model, spec["decoder_size"])
    return SketchService(model, decoder, spec["preview_size"], spec["count"])


# --- the server's side ----------------------------------------------------------------------------------------------

class SketchWorker:
    """The server's handle on the worker process: `await run(drawings)` on its event loop. Not thread-safe; one
    batch at a time (the `SketchBatcher` awaits each before the next)."""

    def __init__(self, service, reply_timeout: float = 30.0, start_timeout: float = 120.0):
        self.service = service
        self.reply_timeout = reply_timeout
        self.start_timeout = start_timeout
        self.proc: subprocess.Popen | None = None
        self._pipes = None          # (reader, writer, read transport) once connected to this loop
        self._batch_no = 0
        self.starts = 0
        self.failures = 0           # batches failed because the process ended or hung
        self.compute_s = 0.0        # the child's own time on batches (the rest of a round trip is the pipe and loop)
        self.held = 0               # drawings whose running sums the child keeps
        self._spawn()               # now: it imports numpy and OpenCV while the server starts

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def _spawn(self) -> None:
        from omokage.childproc import child_env
        env = child_env()
        env.setdefault("OMP_NUM_THREADS", "1")   # many tiny products: threads would only contend with the loop
        env.setdefault("OPENBLAS_NUM_THREADS", "1")
        env.setdefault("MKL_NUM_THREADS", "1")
        cmd = [sys.executable, "-c", "from omokage.sketch.worker import main; raise SystemExit(main())"]
        # its own session: a Ctrl+C in the terminal reaches the server, which closes its input, not the worker
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env,
                                     start_new_session=True)
        self._pipes = None
        self.held = 0
        self.starts += 1

    async def _connect(self):
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader(limit=MAX_FRAME)
        rt, _ = await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), self.proc.stdout)
        wt, wp = await loop.connect_write_pipe(asyncio.streams.FlowControlMixin, self.proc.stdin)
        writer = asyncio.StreamWriter(wt, wp, reader, loop)
        self._pipes = (reader, writer, rt)
        await self._send(["model", _model_spec(self.service)])
        hello = await asyncio.wait_for(_read_frame(reader), self.start_timeout)
        if isinstance(hello, list) and len(hello) == 3 and hello[0] == "error":
            raise SketchWorkerStartError(f"it could not make the sketch service it was sent: {hello[1]}: {hello[2]}")
        if not (isinstance(hello, list) and hello[:1] == ["ready"]):
            raise SketchWorkerStartError(f"it did not start (it said {hello!r:.80}; its error is in the server's log "
                                         "above)")

    async def _send(self, value) -> None:
        writer = self._pipes[1]
        writer.write(frame_bytes(value))
        await writer.drain()

    async def run(self, drawings: Sequence[tuple[int | None, Raster]],
                  forget: Sequence[int] = ()) -> list[Any]:
        """Results of `drawings` ((key, snapshot) pairs; a key names a drawing whose running sums the child keeps,
        None: computed afresh), in order: a `SketchResult`, or a `DrawingError` for one that failed alone. Raises
        `SketchWorkerError` when the process ends or hangs (the next call starts a new one), and
        `SketchWorkerStartError` when it ends or hangs before it says it is ready."""
        from omokage.catalog.store import Texture
        from omokage.sketch.service import SketchResult
        if self.proc is None or self.proc.poll() is not None:
            self._end(kill=True)
            self._spawn()
        self._batch_no += 1
        starting = self._pipes is None
        try:
            if starting:
                await self._connect()
                starting = False
            await self._send([self._batch_no, list(forget),
                              [[key, r.revision, r.resolution, r.ink.tobytes(), r.paint.tobytes(), r.painted.tobytes()]
                               for key, r in drawings]])
            reply = await asyncio.wait_for(_read_frame(self._pipes[0]), self.reply_timeout)
            if reply is None:
                raise SketchWorkerError("it closed its pipe")
            batch_no, results, compute_s, self.held = reply
            if batch_no != self._batch_no or len(results) != len(drawings):
                raise SketchWorkerError(f"it answered batch {batch_no} for {self._batch_no}")
        except (OSError, EOFError, ValueError, TypeError, asyncio.IncompleteReadError, TimeoutError,
                SketchWorkerError) as exc:
            code = self.proc.poll() if self.proc is not None else None
            self.failures += 1
            self._end(kill=True)
            why = "no answer" if isinstance(exc, TimeoutError) else f"{type(exc).__name__}: {exc}"
            if starting:
                raise SketchWorkerStartError(f"the sketch worker process did not start ({why}; exit code {code})") \
                    from None
            raise SketchWorkerError(f"the sketch worker process ended ({why}; exit code {code}) before it answered "
                                    "this batch; the next one starts a new worker") from None
        except BaseException:
            # cancelled mid-batch (the server is closing): the pipe may hold half a frame, so this process is done
            self._end(kill=True)
            raise
        self.compute_s += compute_s
        out = []
        for r in results:
            if len(r) == 2:
                out.append(DrawingError(r[0], r[1]))
                continue
            revision, ranked, latent, jpeg, sha, size, L = r
            out.append(SketchResult(revision, tuple((int(i), float(p)) for i, p in ranked),
                                    np.frombuffer(latent, np.float32).copy(), Texture(sha, "jpeg", size, size, jpeg),
                                    np.frombuffer(L, np.float32).copy()))
        return out

    def _end(self, kill: bool = False, timeout: float = 5.0) -> None:
        """Stop the child: killed, or told to finish (a `stop` frame, or the end of its input when no pipe was
        connected), then waited for."""
        proc, pipes, self.proc, self._pipes = self.proc, self._pipes, None, None
        if proc is None:
            return
        if kill:
            proc.kill()
        if pipes is not None:
            # the transports own the pipes now (they close them, on the loop's next turn: too late for the wait
            # below), so the child is told to stop in a frame, written at once while the pipe has room
            if not kill:
                try:
                    pipes[1].write(frame_bytes(["stop"]))
                except (OSError, RuntimeError):
                    pass
            pipes[1].close()
            pipes[2].close()
        else:
            for f in (proc.stdin, proc.stdout):
                try:
                    f.close()
                except OSError:
                    pass
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            log.error("the sketch worker process did not exit; killed", extra={"fields": {"pid": proc.pid}})
            proc.kill()
            proc.wait()

    def close(self) -> None:
        self._end()

    def stats(self) -> dict[str, Any]:
        return {"worker": "process", "worker_pid": self.pid, "worker_starts": self.starts,
                "worker_failures": self.failures, "worker_compute_s": round(self.compute_s, 3),
                "worker_drawings": self.held}


async def _read_frame(reader: asyncio.StreamReader):
    head = await reader.readexactly(HEADER.size)
    (size,) = HEADER.unpack(head)
    if size > MAX_FRAME:
        raise ValueError(f"a frame of {size} bytes: the pipe is out of step")
    return msgpack.unpackb(await reader.readexactly(size), raw=False, strict_map_key=False)


# --- the child process ----------------------------------------------------------------------------------------------

def _describe(exc: BaseException) -> list[str]:
    return [type(exc).__name__, str(exc)[:500]]


def _raster(revision, resolution, ink, paint, painted) -> Raster:
    r = int(resolution)
    return Raster(np.frombuffer(ink, np.uint8).reshape(r, r), np.frombuffer(paint, np.uint8).reshape(r, r, 3),
                  np.frombuffer(painted, np.uint8).reshape(r, r), r, int(revision))


def _encode(result) -> list:
    p = result.preview
    return [result.revision, [[i, p_] for i, p_ in result.ranked], np.asarray(result.latent, np.float32).tobytes(),
            p.data, p.hash, p.width, np.asarray(result.log_likelihood, np.float32).tobytes()]


def run_batch(service, lives: collections.OrderedDict, drawings: list) -> list:
    """The child's side of one batch: each drawing's result (encoded) or its error, in order."""
    from omokage.features.sketch import LiveDrawing
    out: list = [None] * len(drawings)
    todo, rasters, states = [], [], []
    for n, (key, revision, resolution, ink, paint, painted) in enumerate(drawings):
        try:
            raster = _raster(revision, resolution, ink, paint, painted)
        except Exception as exc:
            out[n] = _describe(exc)
            continue
        if key is None:
            live = LiveDrawing(service.model)
        else:
            live = lives.pop(key, None) or LiveDrawing(service.model)
            lives[key] = live                     # the most recently updated last
            while len(lives) > MAX_LIVES:
                lives.popitem(last=False)
        todo.append(n)
        rasters.append(raster)
        states.append(live)
    try:
        results = service.run(rasters, states)
    except Exception:
        logging.getLogger("omokage.sketch").exception("a sketch batch failed; retrying its drawings one by one")
        results = []
        for raster, live in zip(rasters, states):
            live.reset()                          # it may be half updated: rebuilt from scratch
            try:
                results.append(service.run([raster], [live])[0])
            except Exception as exc:
                live.reset()
                results.append(exc)
    for n, result in zip(todo, results):
        out[n] = _describe(result) if isinstance(result, Exception) else _encode(result)
    return out


def main(argv: list[str] | None = None) -> int:
    from omokage.store.writer import read_frame, write_frame
    # it lives exactly as long as its input: the server closes it (or dies) and the child exits; a signal meant for
    # the server (Ctrl+C, a service manager's SIGTERM to the group) must not end it under a batch
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="sketch worker: %(levelname)s %(message)s")
    inp, out = sys.stdin.buffer, sys.stdout.buffer
    sys.stdout = sys.stderr   # nothing but frames goes to the parent's pipe
    first = read_frame(inp)
    if first is None:
        return 0
    if not (isinstance(first, list) and first[:1] == ["model"]):
        print("sketch worker: the first frame must be the model (started by omokage's SketchWorker)", file=sys.stderr)
        return 2
    try:
        service = _service_from_spec(first[1])
    except Exception as exc:
        # said to the server, which then projects without this process (starting another would fail the same way)
        log.exception("could not make the sketch service it was sent")
        write_frame(out, ["error", *_describe(exc)])
        return 1
    del first
    write_frame(out, ["ready", os.getpid()])
    lives: collections.OrderedDict = collections.OrderedDict()
    while True:
        frame = read_frame(inp)
        if frame is None or frame == ["stop"]:
            return 0
        batch_no, forget, drawings = frame
        started = time.perf_counter()
        for key in forget:
            lives.pop(key, None)
        results = run_batch(service, lives, drawings)
        write_frame(out, [batch_no, results, time.perf_counter() - started, len(lives)])
