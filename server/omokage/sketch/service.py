"""Drawings → results, many sessions at once: the read-only compute the server runs off its event loop.

`SketchService.run(drawings)` takes the drawings of every session that changed since the last tick and returns, for
each, the faces that fit it best, the latent it projects to, and a preview image decoded from that latent: one batch
of matrix products for the likelihoods, one batched k × k solve for the latents, one decoder call for the previews.
"""

from __future__ import annotations

import contextlib
import hashlib
from dataclasses import dataclass
from typing import Protocol, Sequence

import cv2
import numpy as np

from omokage.catalog.store import Texture
from omokage.imageio import area_matrix
from omokage.sketch.canvas import Observations, Raster
from omokage.sketch.model import SketchModel

# pixels: a live preview on a small panel. 96 px cost stroke-to-result p50 10 ms / p99 56 ms at 50 clients x 30 Hz
# here, 64 px 5 / 31 ms (decoding, encoding and sending it is most of a result's cost); PCA's preview is blurry at any
# size. `omokage serve --preview-size` changes it
PREVIEW_SIZE = 64
PREVIEW_QUALITY = 85


class Decoder(Protocol):
    """A generator backend (omokage.generators): latents (B, k) → images (B, S, S, 3) float in [0, 1]."""

    name: str

    def decode(self, z: np.ndarray) -> np.ndarray: ...


class LinearPreview:
    """PCA's own decoder at the preview size: the components area-downsampled once, then one (B, k) × (k, P·P·3)
    product per batch (the numpy backend)."""

    name = "numpy"

    def __init__(self, model: SketchModel, size: int = PREVIEW_SIZE):
        pca = model.latent_
        side = int(round((pca.mean_.shape[0] / 3) ** 0.5))
        size = min(size, side)
        A = area_matrix(side, size)

        def shrink(rows):   # (m, side·side·3) → (m, size·size·3)
            planes = rows.reshape(-1, side, side, 3)
            return np.einsum("ph,mhwc,qw->mpqc", A, planes, A, optimize=True).reshape(len(rows), -1)

        self.size = size
        self.components = np.ascontiguousarray(shrink(pca.components_), dtype=np.float32)
        self.mean = shrink(pca.mean_[None])[0].astype(np.float32)
        # in 0-255 with the rounding's 0.5 folded in: `decode_uint8` is one product, one clip and one cast
        self._components255 = self.components * 255.0
        self._mean255 = self.mean * 255.0 + 0.5

    def decode(self, z: np.ndarray) -> np.ndarray:
        out = np.asarray(z, dtype=np.float32) @ self.components + self.mean
        return np.clip(out, 0.0, 1.0).reshape(len(out), self.size, self.size, 3)

    def decode_uint8(self, z: np.ndarray) -> np.ndarray:
        """`decode` as (B, P, P, 3) uint8, rounded, as `SketchService` sends it (up to float rounding)."""
        out = np.asarray(z, dtype=np.float32) @ self._components255
        out += self._mean255
        np.clip(out, 0.0, 255.0, out=out)
        return out.astype(np.uint8).reshape(len(out), self.size, self.size, 3)


PREVIEW_BACKENDS = ("auto", "numpy", "onnxruntime", "tensorrt", "torch-cuda")


def preview_backends(models_dir) -> tuple[list[str], dict[str, str]]:
    """Which preview backends can run with `models_dir` here: (the usable ones, {unusable one: why}). numpy (PCA's own
    decoder) always can; the others serve the `gen` model's decoder (omokage.generators)."""
    from omokage.features import ModelRepositoryError, latest_version_dir
    ok, why = ["numpy"], {}
    try:
        latest_version_dir(models_dir, "gen")
    except ModelRepositoryError:
        for b in PREVIEW_BACKENDS[2:]:
            why[b] = f"no `gen` model in {models_dir}; fit one with `omokage fit CATALOG --models gen --out {models_dir}`"
        return ok, why
    from omokage.generators import available_backends
    for name, reason in available_backends().items():
        if name == "numpy" or name not in PREVIEW_BACKENDS:
            continue
        if reason is None:
            ok.append(name)
        else:
            why[name] = reason
    return ok, why


def make_preview_decoder(model: SketchModel, models_dir, backend: str = "auto",
                         preview_size: int = PREVIEW_SIZE) -> Decoder:
    """The decoder of a sketch's previews. `numpy`: PCA's own (blurry, always there). Otherwise the `gen` model's
    sharper decoder on that backend; `auto`: a GPU backend (tensorrt, then torch-cuda) when a `gen` model is fitted
    and a GPU is there, else numpy. The gen model must
    share the sketch model's PCA latent (both fitted on this catalog with the same settings)."""
    from omokage.errors import UserError
    if backend not in PREVIEW_BACKENDS:
        raise UserError(f"unknown preview backend {backend!r}; choose from {', '.join(PREVIEW_BACKENDS)}")
    ok, why = preview_backends(models_dir)
    if backend == "auto":
        # the gen decoder costs ~4 ms an image on a CPU core (benchmarks/results/generator.md) against ~0.1 ms for
        # PCA's: live previews take it only from a GPU; on a CPU, ask for onnxruntime explicitly
        backend = next((b for b in ("tensorrt", "torch-cuda") if b in ok), "numpy")
    if backend == "numpy":
        return LinearPreview(model, preview_size)
    if backend not in ok:
        raise UserError(f"preview backend {backend} cannot run here: {why.get(backend)}")
    from omokage.features import latest_version_dir, load_model_dir
    gen_dir = latest_version_dir(models_dir, "gen")
    gen, _, _ = load_model_dir(gen_dir)
    pca = gen.pca_model()
    if pca.components_.shape != model.latent_.components_.shape or \
            not np.allclose(pca.components_, model.latent_.components_, atol=1e-4):
        raise UserError(f"{gen_dir} and the sketch model were fitted with different PCAs; refit both on this catalog: "
                        f"`omokage fit CATALOG --models sketch,gen --out {models_dir}`")
    # made from the model checked above (not the folder again: it may change meanwhile). torch-cuda: CUDA graphs,
    # recorded now for every batch size bucket (a third of eager's latency at batch 1 on an H200, docs/generators.md);
    # TensorRT caches its plans in the version folder
    decoder, options = make_gen_decoder(backend, gen, {"cuda_graphs": True} if backend == "torch-cuda" else
                                        {"cache_dir": str(gen_dir)} if backend == "tensorrt" else {})
    from omokage.sketch.worker import fitted_spec
    # how the sketch worker process makes this decoder again for itself (omokage.sketch.worker): the live loop's
    # projection and decoding then run there, off the server's GIL. It carries the model itself, so the child decodes
    # with the very model checked here, whatever the folder holds when it starts (or starts again after a crash)
    decoder.worker_spec = {"backend": backend, "options": options, "model_dir": str(gen_dir),
                           "model": fitted_spec(gen)}
    return decoder


def make_gen_decoder(backend: str, gen, options: dict | None = None):
    """(the `gen` model's decoder on `backend` with `options`, the options it was made with). torch-cuda with
    `cuda_graphs` records its graphs now; where recording fails on this GPU or driver it decodes eagerly instead (said
    in the log). The server and the sketch worker process both make their decoders here."""
    from omokage.generators.backends import BackendUnavailable, make_decoder
    options = dict(options or {})
    try:
        return make_decoder(backend, gen, **options), options
    except BackendUnavailable:
        raise
    except Exception as exc:  # noqa: BLE001 - the eager decoder still serves
        if backend != "torch-cuda" or not options.get("cuda_graphs"):
            raise
        import logging
        logging.getLogger("omokage.sketch").warning("torch-cuda previews: CUDA graphs failed (%s: %s); decoding "
                                                    "eagerly", type(exc).__name__, exc)
        options.pop("cuda_graphs")
        return make_decoder(backend, gen, **options), options


@dataclass(frozen=True)
class SketchResult:
    revision: int
    ranked: tuple[tuple[int, float], ...]   # (face id, probability under the drawing alone), best first
    latent: np.ndarray                       # the drawing's posterior-mean PCA latent
    preview: Texture
    log_likelihood: np.ndarray               # (n_items,): the drawing's evidence, for a selection started from it


def encode_preview(rgb: np.ndarray, quality: int = PREVIEW_QUALITY) -> Texture:
    """A JPEG of an (S, S, 3) uint8 image with OpenCV (several times faster than Pillow's optimised encoder, which
    matters at 30 updates a second per user)."""
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise RuntimeError("could not encode a preview")
    data = buf.tobytes()
    return Texture(hashlib.sha256(data).hexdigest(), "jpeg", rgb.shape[1], rgb.shape[0], data)


class SketchService:
    """`decoder` makes the preview of every live result. `sharp` (v1.6), a generator too slow for the live loop (the
    `gen` decoder in ONNX Runtime on a CPU, ~3 ms an image against PCA's ~0.01): results then carry PCA's quick
    preview, and `sharpen` decodes the newest latent of each drawing again with it, afterwards, as the server's
    spare time allows (`sketch.preview`)."""

    def __init__(self, model: SketchModel, decoder: Decoder | None = None, preview_size: int = PREVIEW_SIZE,
                 count: int = 9, sharp: Decoder | None = None):
        self.model = model
        side = int(round((model.n_features_in_ / 3) ** 0.5))
        self.preview_size = min(preview_size, side)     # never larger than the catalog's faces
        self.decoder = decoder if decoder is not None else LinearPreview(model, self.preview_size)
        self.sharp = sharp
        self.count = count
        model.transposed_maps()   # made now, not on the first user's first stroke
        model.transposed_bases()

    @property
    def resolution(self) -> int:
        return int(self.model.resolution)

    def new_live(self):
        """The running state of one live drawing (`LiveDrawing`): `run` updates it by what changed since its last
        drawing instead of recomputing every observed entry."""
        from omokage.features.sketch import LiveDrawing
        return LiveDrawing(self.model)

    def run(self, drawings: Sequence[Observations | Raster], lives: Sequence | None = None) -> list[SketchResult]:
        """Results for `drawings` (observations, or canvas snapshots turned into them here); with `lives` (one
        `LiveDrawing` per drawing, each the state of that drawing's previous update), each is brought up to date
        incrementally, else all are computed afresh as one batch."""
        if not drawings:
            return []
        drawings = [d.observations() if isinstance(d, Raster) else d for d in drawings]
        if lives is not None:
            updated = [live.update(d) for live, d in zip(lives, drawings)]
            L = np.stack([u[0] for u in updated])
            grams = np.stack([u[1][0] for u in updated])
            rhs = np.stack([u[1][1] for u in updated])
            Z = np.linalg.solve(grams, rhs[..., None])[..., 0].astype(np.float32)   # one batched k x k solve
        else:
            L = self.model.log_likelihood(drawings)          # (B, n)
            Z = self.model.project(drawings)                  # (B, k)
        images = self._previews(Z)
        # the first `count` faces of every drawing and their probabilities, for the batch at once
        rows = L.astype(np.float64)
        k = min(self.count, rows.shape[1])
        top = np.argpartition(-rows, k - 1, axis=1)[:, :k]
        order = np.argsort(-np.take_along_axis(rows, top, axis=1), axis=1, kind="stable")
        top = np.take_along_axis(top, order, axis=1)
        p = np.exp(rows - rows.max(axis=1, keepdims=True))
        p = np.take_along_axis(p, top, axis=1) / p.sum(axis=1, keepdims=True)
        results = []
        for b, obs in enumerate(drawings):
            # nothing drawn: every face is as likely (none ranked); the preview is the average face
            ranked: tuple = () if obs.empty else tuple(zip(top[b].tolist(), p[b].tolist()))
            results.append(SketchResult(obs.revision, ranked, Z[b], encode_preview(images[b]), L[b]))
        return results

    def sharpen(self, Z: np.ndarray) -> list[Texture]:
        """The `sharp` decoder's previews of latents (B, k) (each a drawing's `SketchResult.latent`), as JPEGs."""
        if self.sharp is None:
            raise RuntimeError("this sketch service has no sharp decoder")
        images = self._previews(np.asarray(Z, dtype=np.float32).reshape(len(Z), -1), self.sharp)
        return [encode_preview(im) for im in images]

    def _previews(self, Z: np.ndarray, decoder: Decoder | None = None) -> np.ndarray:
        return decoded_previews(decoder if decoder is not None else self.decoder, Z, self.preview_size)


def decoded_previews(decoder: Decoder, Z: np.ndarray, size: int) -> np.ndarray:
    """(B, P, P, 3) uint8 previews at `size` pixels, whatever size the decoder produces."""
    if isinstance(decoder, LinearPreview) and decoder.size == size:
        return decoder.decode_uint8(Z)
    out = decoder.decode(Z)
    if out.shape[1] != size and out.shape[1] > size:
        A = area_matrix(out.shape[1], size)
        out = np.einsum("ph,bhwc,qw->bpqc", A, out, A, optimize=True)
    return (np.clip(out, 0, 1) * 255 + 0.5).astype(np.uint8)


class SharpenUnavailable(RuntimeError):
    """The sharpening process keeps failing; it is not restarted before `retry_at` (time.monotonic())."""


class SharpenProcess:
    """v1.6: the sharper previews decoded in a process of its own that runs in the CPU's spare time only (Linux's
    SCHED_IDLE, set before it imports anything, so every thread it makes inherits it; elsewhere the lowest nice value),
    so they never take a core from the event loop or the live projection. A thread at a low OS priority was tried first
    and not kept: while it held the GIL it could stall the event loop.

    `submit(Z)` returns a `concurrent.futures.Future` of the JPEG textures of latents Z (B, k); one batch at a time, on
    a thread that only waits on the pipe. The child (`python -c ...`, as the sketch worker: no fork of a server's
    threads, no re-import of the caller's main module) is started when this is made, and again after it died or hung
    (no answer within `reply_timeout`: killed); after failures in a row it waits 1, 2, 4 ... 60 s before the next start
    (`SharpenUnavailable` meanwhile), so a model that cannot load does not restart it in a loop. Frames as
    omokage.store.writer's: [source, latent_dim, side, preview_size] once, then Z as [rows, cols, float32 bytes] answered
    by [[sha256, jpeg, size], ...].
    """

    def __init__(self, decoder, preview_size: int, reply_timeout: float = 10.0):
        import concurrent.futures
        self._spec = [decoder.source if isinstance(decoder.source, bytes) else str(decoder.source),
                      int(decoder.latent_dim), int(decoder.side), int(preview_size)]
        self.reply_timeout = reply_timeout
        self._proc = None
        self._closing = False
        self.starts = 0
        self.failures = 0            # in a row; 0 after a batch that came back
        self._retry_at = 0.0
        self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="omokage-sharpen")
        self._pool.submit(self._prestart)   # start it now (it loads ONNX Runtime), not on the first user's stroke

    def _prestart(self) -> None:
        try:
            self._ensure()
        except OSError:           # it died or hung before it read its model: counted like a failed batch
            self._failed()

    def _ensure(self):
        import subprocess
        import sys
        import time

        from omokage.childproc import child_env
        from omokage.store.writer import write_frame
        if self._proc is not None and self._proc.poll() is None:
            return self._proc
        self.close_process()
        if self._closing:
            raise SharpenUnavailable("the sharper previews' process is shutting down")
        if time.monotonic() < self._retry_at:
            raise SharpenUnavailable(f"the sharper previews' process failed {self.failures} time(s) in a row; not "
                                     f"restarted for {self._retry_at - time.monotonic():.0f} s")
        # one core at most, and only a spare one
        env = child_env(OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")
        self._proc = subprocess.Popen([sys.executable, "-c", _SHARPEN_MAIN], stdin=subprocess.PIPE,
                                      stdout=subprocess.PIPE, env=env, start_new_session=True)
        self.starts += 1
        if self._closing:           # close() ran while it started: it saw no child to kill
            self._proc.kill()
            self.close_process()
            raise SharpenUnavailable("the sharper previews' process is shutting down")
        # the spec (the model's bytes: more than a pipe holds) is read once the child has imported: a child that hangs
        # before that is killed like one that hangs on a batch, so this write ends
        with _Watchdog(self._proc, self.reply_timeout):
            write_frame(self._proc.stdin, self._spec)
        return self._proc

    def _run(self, Z: np.ndarray) -> list[Texture]:
        from omokage.store.writer import read_frame, write_frame
        reply = None
        try:
            proc = self._ensure()     # (a child that died at once breaks the pipe here: a failure like any other)
        except OSError:
            proc = None
        if proc is not None:
            try:
                with _Watchdog(proc, self.reply_timeout):     # a hung child: killed, so the read ends
                    write_frame(proc.stdin, [int(Z.shape[0]), int(Z.shape[1]), Z.tobytes()])
                    reply = read_frame(proc.stdout)
            except (OSError, ValueError):
                reply = None
        if not isinstance(reply, list) or len(reply) != len(Z):
            self._failed()
            raise RuntimeError("the sharper previews' process ended or hung before it answered; a new one starts")
        self.failures = 0
        return [Texture(sha, "jpeg", size, size, jpeg) for sha, jpeg, size in reply]

    def _failed(self) -> None:
        import time
        self.close_process()
        self.failures += 1
        self._retry_at = time.monotonic() + min(60.0, 2.0 ** (self.failures - 1))

    def submit(self, Z: np.ndarray):
        return self._pool.submit(self._run, np.ascontiguousarray(Z, dtype=np.float32))

    @property
    def pid(self) -> int | None:
        proc = self._proc
        return proc.pid if proc is not None else None

    def close_process(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        try:
            proc.stdin.close()     # the end of its input: it exits
        except OSError:
            pass
        try:
            proc.wait(2)
        except Exception:
            proc.kill()
            proc.wait()
        proc.stdout.close()

    def close(self) -> None:
        """Kill the child first (it keeps nothing; a batch it is decoding ends with it, and a pipe write the thread
        is blocked in fails), then the thread that waits on its pipe; no new child starts meanwhile."""
        self._closing = True
        proc = self._proc
        if proc is not None:
            with contextlib.suppress(OSError):
                proc.kill()
        self._pool.shutdown(wait=True, cancel_futures=True)
        self.close_process()


class _Watchdog:
    """Kills `proc` when the block takes longer than `timeout` seconds, unless the child is still working: using CPU,
    or waiting for a core it is not given (it runs at SCHED_IDLE, so a saturated machine starves it; that is not a
    hang). Then it looks again after another `timeout`, up to `patience` times: a child busy that long is killed too.
    Without /proc (not Linux), the first timeout kills."""

    def __init__(self, proc, timeout: float, patience: int = 6):
        import threading
        self.proc, self.timeout, self.left = proc, timeout, patience
        self._cpu = _cpu_ticks(proc.pid)
        self._lock = threading.Lock()
        self._timer = None
        self._done = False

    def __enter__(self):
        self._arm()
        return self

    def __exit__(self, *exc):
        with self._lock:
            self._done = True
            if self._timer is not None:
                self._timer.cancel()
        return False

    def _arm(self) -> None:
        import threading
        self._timer = threading.Timer(self.timeout, self._check)
        self._timer.daemon = True
        self._timer.start()

    def _check(self) -> None:
        with self._lock:
            if self._done:
                return
            state, cpu = _proc_state(self.proc.pid), _cpu_ticks(self.proc.pid)
            working = cpu is not None and (cpu != self._cpu or state == "R")
            self._cpu = cpu
            self.left -= 1
            if working and self.left > 0:
                self._arm()
                return
            with contextlib.suppress(OSError):   # under the lock: not after the block has finished
                self.proc.kill()


def _proc_fields(pid: int) -> list[str] | None:
    """/proc/PID/stat's fields after the command's name (state first), or None where there is no /proc."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            text = f.read().decode("ascii", "replace")
    except OSError:
        return None
    return text[text.rfind(")") + 2:].split()


def _proc_state(pid: int) -> str | None:
    fields = _proc_fields(pid)
    return fields[0] if fields else None


def _cpu_ticks(pid: int) -> int | None:
    fields = _proc_fields(pid)
    return int(fields[11]) + int(fields[12]) if fields and len(fields) > 12 else None   # utime + stime


# the child's first statement lowers its priority, before it imports anything (numpy and OpenCV make threads there)
_SHARPEN_MAIN = ("import os\n"
                 "try:\n    os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))\n"
                 "except (AttributeError, OSError):\n"
                 "    try:\n        os.nice(19)\n    except (AttributeError, OSError):\n        pass\n"
                 "from omokage.sketch.service import sharpen_main\n"
                 "raise SystemExit(sharpen_main())\n")


def sharpen_main() -> int:
    """The sharper previews' process (`SharpenProcess`, which lowered its priority first): frames in on stdin, out on
    stdout, until the end of its input."""
    import sys

    from omokage.store.writer import read_frame, write_frame
    inp, out = sys.stdin.buffer, sys.stdout.buffer
    spec = read_frame(inp)
    if spec is None:
        return 0
    from omokage.generators.backends import OnnxRuntimeBackend
    source, latent_dim, side, size = spec
    decoder = OnnxRuntimeBackend(source, latent_dim, side, threads=1)
    while True:
        frame = read_frame(inp)
        if frame is None:
            return 0
        rows, cols, data = frame
        Z = np.frombuffer(data, np.float32).reshape(rows, cols)
        textures = [encode_preview(im) for im in decoded_previews(decoder, Z, size)]
        write_frame(out, [[t.hash, t.data, t.width] for t in textures])
