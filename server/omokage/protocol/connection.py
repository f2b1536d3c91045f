"""One client connection as a sans-I/O state machine (in the style of h11 and websockets).

Feed it frames with `receive(frame, now)`; it returns actions for the caller to carry out:
`Send` a message, `Close` the connection, `Offload` CPU-heavy work (decoding and projecting an
uploaded image) and feed the result back with `projection_done` / `projection_failed`, and `Log`
a structured record. It never touches a socket, a thread or a clock, so the server, the tests and
the simulated users all drive the same code.
"""

from __future__ import annotations

import dataclasses
import hmac
import math
from dataclasses import dataclass
from typing import Any, Mapping, Protocol, Sequence

import numpy as np

from omokage import __version__
from omokage.catalog.store import Item, Texture
from omokage.errors import UserError
from omokage.gaze import MAX_SAMPLES_PER_BATCH, GazeTracker, LayoutError, parse_layout
from omokage.gaze.calibration import CalibrationError, Profile, targets_from_samples
from omokage.gaze.calibration import fit as fit_calibration
from omokage.gaze.samples import SOURCES as SOURCE_CODES
from omokage.protocol.messages import (PROTOCOL_MINOR, PROTOCOL_VERSION, Decoded, ProtocolError, decode_frame, encode,
                                       error, readable_rid, server_message, texture_map, validate)
from omokage.protocol.restore import MAX_LOGGED_FLOATS, blob_key, resume_key
from omokage.protocol.resume import SessionKeeper
from omokage.ratelimit import TokenBucket
from omokage.selection import (DEFAULT_POLICY, SERVED_POLICIES, FeatureSpace, SelectionSession, SessionError,
                               SessionState, make_policy)
from omokage.selection.belief import GAZE_UNIT_S, SketchTerm
from omokage.sketch.canvas import (MAX_POINTS_PER_CANVAS, MAX_POINTS_PER_MESSAGE, MAX_POINTS_PER_STROKE, MAX_STROKES,
                                   MAX_WIDTH, MIN_WIDTH, TOOLS, Raster, SketchCanvas, SketchError, check_stroke)

# A `start` without `policy` from a client that did not say it speaks v1.1 gets the v1.0 grids: the chosen face and
# its nearest unseen neighbours, as protocol v1.0 documents them.
V1_0_POLICY = "study"


@dataclass(frozen=True)
class Limits:
    max_frame_bytes: int = 4 * 1024 * 1024
    max_image_bytes: int = 3 * 1024 * 1024
    max_image_pixels: int = 16_000_000
    max_messages_per_second: float = 200.0
    burst: int = 400
    max_hashes_per_request: int = 64
    max_failed_hellos: int = 3

    def to_wire(self, grid_size: int) -> dict[str, Any]:
        return {"max_frame_bytes": self.max_frame_bytes, "max_image_bytes": self.max_image_bytes,
                "max_image_pixels": self.max_image_pixels,
                "max_messages_per_second": float(self.max_messages_per_second),
                "max_hashes_per_request": self.max_hashes_per_request, "grid_size": grid_size}


class Backend(Protocol):
    """What a connection reads from the shared engine (read-only)."""

    items: Sequence[Item]
    textures: Mapping[str, Texture]
    image_size: int
    algorithms: Sequence[str]
    # v1.2: models being fitted in the background, each {"algorithm", "progress" (0..1), optional "eta_s"};
    # empty when nothing trains
    training: Sequence[Mapping[str, Any]]

    # v1.3: the sketch model's resolution, or None when the server has no sketch model (no `sketch.*`)
    sketch_resolution: int | None
    sketch_preview_size: int
    # v1.6: results carry a quick preview and a sharper one follows as `sketch.preview`
    sketch_sharpens: bool

    # v1.5: the size of an ideal face's image (the catalog's), or 0 when the server cannot generate one
    ideal_image_size: int
    # the catalog's fingerprint (Catalog.fingerprint): each selection's `start` event names it, so `fit user-model`
    # never reads one catalog's item ids as another's
    catalog_fingerprint: str | None

    def new_live_drawing(self) -> Any:
        """v1.3: the running state of a new drawing (None: every update is computed afresh)."""

    def space(self, algorithm: str) -> FeatureSpace: ...

    def policy_params(self, algorithm: str) -> dict[str, Any]:
        """Parameters for `make_policy` in this space (a fitted user model's temperature), or {}."""


# --- actions -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Send:
    message: dict[str, Any]

    @property
    def frame(self) -> bytes:
        return encode(self.message)


@dataclass(frozen=True)
class Supersede:
    """v1.7: close another connection, whose selection this one resumed (its client is gone or half-open)."""
    connection: "ServerConnection"


@dataclass(frozen=True)
class Close:
    code: int
    reason: str


@dataclass(frozen=True)
class ProjectionJob:
    ticket: int
    rid: int | None
    algorithm: str
    image: bytes
    seed: int | None
    policy: str = DEFAULT_POLICY


@dataclass(frozen=True)
class SketchStart:
    """A `start` with `init: sketch` sent while the drawing's newest change was still being projected: it is answered
    when a result of that drawing (`revision`, or a later one) comes back, so it starts from what was drawn."""
    rid: int | None
    algorithm: str
    seed: int | None
    policy: str
    revision: int


@dataclass(frozen=True)
class SketchJob:
    """A drawing to project (v1.3): its snapshot (the canvas's rasters: observations are made off the loop), and the
    rid of the newest message it includes."""

    ticket: int
    rid: int | None
    drawing: Raster
    strokes: int
    canvas: int = 0          # which drawing (a count of sketch.begin): a result for an earlier one is not shown
    live: Any = None         # the drawing's running state for incremental updates (the backend's), or None


@dataclass(frozen=True)
class SharpenJob:
    """v1.6: decode a drawing's result again with the server's sharper (slower) generator, for `sketch.preview`. The
    caller keeps only the newest job of each connection: a sharper preview of a drawing already redrawn is useless."""

    revision: int
    latent: Any               # the result's latent (numpy, (k,))
    canvas: int               # which drawing (a count of sketch.begin)


@dataclass(frozen=True)
class IdealJob:
    """v1.5 `ideal`: a snapshot of the session's evidence (its policy's belief, or the choices, skips and ratings to
    rebuild one from), the favourite the client named, and the faces already shown (never offered again); the caller
    builds the belief and runs the search off its loop (`Engine.ideal`)."""

    ticket: int
    rid: int | None
    algorithm: str             # the selection's space: a belief rebuilt from its events lives there
    evidence: Any              # omokage.selection.ideal.SessionEvidence
    near: int | None           # the favourite the client named; None: the worker takes the session's
    shown: tuple[int, ...]
    seed: int
    count: int = 9             # faces to list: the grid's size (welcome.limits.grid_size)


@dataclass(frozen=True)
class BackJob:
    """v1.7: a `back` whose replay would stall every session on the loop (a large catalog or a long selection):
    the session rebuilt on a worker from its inputs as they were when asked
    (`SelectionSession.rebuilt_without_last_pick` touches nothing else), then adopted by `back_done` if the selection
    has not moved on meanwhile."""
    rid: int | None
    session: SelectionSession
    inputs: tuple


# A replay (a back, a restore) costs about its inputs × (the catalog's faces + REPLAY_INPUT_FACES) (bench policy,
# thompson after 8 steps: 2.3 ms at 1.5k faces, 6.6 at 10k, 58 at 100k). Each input also costs a fixed part, about
# what 2,000 faces cost (a rating 0.17 ms on a 160-face catalog): without it 2,000 ratings on a small catalog counted
# as little work and their 0.35 s replay ran on the loop. From BACK_OFFLOAD_WORK (~25-30 ms of replay, not ~3 ms: a
# pick and 147 ratings on the 160-face test catalog replay in 29 ms; a quarter of RESTORE_MAX_WORK's ~0.1 s) a back
# runs on the worker pool, so a long selection (or a client that rates a face 2,000 times and then goes back and
# forth) never holds up the other sessions on the loop
REPLAY_INPUT_FACES = 2_000
BACK_OFFLOAD_WORK = 16 * 20_000
# v1.7: a selection a previous run left in its log is replayed when its client comes back, on the loop, once; one
# longer than this (~0.1 s of replay) is not taken up after a restart (the client starts again)
RESTORE_MAX_WORK = 4 * BACK_OFFLOAD_WORK


def replay_work(inputs: int, faces: int) -> int:
    """What replaying a selection's `inputs` on a catalog of `faces` costs, in the units of BACK_OFFLOAD_WORK."""
    return inputs * (faces + REPLAY_INPUT_FACES)


@dataclass(frozen=True)
class Offload:
    """Work for the caller to run off its loop: an uploaded image (`ProjectionJob`) or, v1.5, an ideal face
    (`IdealJob`), each awaited before the next message is read, or a drawing (`SketchJob`; batched with other sessions'
    drawings, not awaited: strokes keep arriving and are coalesced meanwhile), or v1.6 a result's sharper preview
    (`SharpenJob`; not awaited, and only each connection's newest is decoded), or v1.7 a long `back` (`BackJob`,
    awaited)."""

    job: ProjectionJob | SketchJob | IdealJob | SharpenJob | BackJob


@dataclass(frozen=True)
class Log:
    record: dict[str, Any]
    # the reply acknowledges it (committed before the reply is sent); False: a note nothing waits for (a refused
    # hello), written without holding the reply back or failing it when the log cannot be written
    acknowledged: bool = True
    # (key, bytes) the record names but does not carry (omokage.store.blobs: a raw-pixel start's query), to be on
    # disk before the record is; a server without a log drops them with it
    blobs: tuple[tuple[str, bytes], ...] = ()


Action = Send | Close | Offload | Log | Supersede


class HelloGuard(Protocol):
    """Failed-hello accounting shared by every connection from one client address (the server keeps one
    per address), so wrong tokens cannot be tried at the rate of new connections."""

    def retry_after(self, now: float) -> float:
        """Seconds until a hello from this address is checked again; 0 when it may be tried now."""

    def failed(self, now: float) -> None: ...


def _logged_profile(source: Any, d: Any) -> Profile | None:
    """A calibration's `profile` as its `calibration` record logged it, for a selection restored after a restart; None
    when the log holds it damaged: an unknown source, A not 2x2 or b not 2 finite numbers, or a correction that does
    not map every direction to a direction."""
    if source not in SOURCE_CODES or not isinstance(d, dict) or d.get("source", source) != source:
        return None
    try:
        fitted = Profile.from_dict(d)
        if any(isinstance(x, bool) for x in [*d["A"][0], *d["A"][1], *d["b"]]):
            return None
        with np.errstate(all="ignore"):
            if not np.isfinite(fitted.apply(_PROBES)).all():
                return None
    except (CalibrationError, TypeError, ValueError, OverflowError):
        return None

    def figure(x):
        return float(x) if isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) else None
    targets = d.get("targets")
    return Profile(fitted.A, fitted.b, accuracy_deg=figure(d.get("accuracy_deg")),
                   precision_deg=figure(d.get("precision_deg")),
                   targets=targets if isinstance(targets, int) and not isinstance(targets, bool) else 0, source=source)


# directions a restored calibration must map to directions: ahead, the edges of sight, behind, straight up and down
_PROBES = np.array([[0.0, 0.0, -1.0], [1.0, 0.0, 0.0], [-1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, 1.0, 0.0],
                    [0.0, -1.0, 0.0], [0.5, 0.5, -0.7071]])


class ServerConnection:
    def __init__(self, backend: Backend, session_id: str, *, limits: Limits = Limits(), token: str | None = None,
                 grid_size: int = 9, hello_guard: HelloGuard | None = None, study=None,
                 calibration: Mapping[str, dict] | None = None, device_profiles: Mapping[str, Profile] | None = None,
                 keeper: SessionKeeper | None = None):
        if token is not None and not token:
            raise ValueError("an empty token would accept a hello without one; pass None for no token")
        self.backend = backend
        self.session_id = session_id
        self.limits = limits
        self.token = token
        self.hello_guard = hello_guard
        self.grid_size = grid_size
        self.greeted = False
        self.closed = False
        # v1.7: the server's SessionKeeper, and this connection's token in it (a selection a reconnect goes on with)
        self.keeper = keeper
        self.resume_token: str | None = None
        self._resume_key: str | None = None   # what the log keeps of the token (omokage.protocol.restore.resume_key)
        self._unheard = False      # v1.7: resumed, and nothing heard from the client since its welcome
        self._resumed_from: str | None = None
        self.session: SelectionSession | None = None
        self.failed_hellos = 0
        self._token_passed = False       # a `hello` with the right token came (its other fields may still be wrong)
        self.client_minor = 0  # the minor version the client's hello announced (0: a v1.0 client)
        self.pending: ProjectionJob | None = None
        self._tickets = 0
        self._bucket = TokenBucket(limits.max_messages_per_second, limits.burst)
        self._reconstruction: Texture | None = None  # the latest, re-fetchable on this connection
        self._start_reconstruction: Texture | None = None  # the current selection's (its image start's), for a resume
        self.messages_in = 0
        self.errors_out = 0
        self.last_message: dict[str, Any] | None = None  # the latest validated message (the store logs it)
        self.refused_over_rate = False  # the latest message was refused over the message rate (the store tallies it)
        # v1.2 studies: the server's StudyRunner, this connection's participant, and the trial its selection belongs to
        self.study = study
        self.participant = None
        self.trial = None
        self._pending_trial = None   # a trial waiting for its start image to be projected
        # v1.2 gaze (docs/gaze.md): the layout, the rate budget and the samples of the grid on screen
        self.gaze = GazeTracker()
        # v1.4 calibration: the patterns the server offers (calibration/*.json, by name) and the one running
        self.calibration_patterns = dict(calibration or {})
        self._calibrating: tuple[str, str] | None = None     # (pattern, source) between calibrate.begin and .end
        # v1.5: default corrections per headset model (calibration/devices/*.json), applied by `hello.device`
        self.device_profiles = dict(device_profiles or {})
        self.device: str | None = None
        # what corrects this session's gaze: none, device or participant (welcome.gaze.profile, at hello), then
        # calibration once this session calibrated (not on the wire: the client saw its own calibrated reply)
        self.gaze_profile_source = "none"
        self._ideal_pending = False
        # v1.3 sketch: the drawing, whether a projection of it is out, and whether it changed since (coalescing: at
        # most one projection in flight; when it returns, only the newest drawing is projected)
        self.canvas: SketchCanvas | None = None
        self.last_sketch = None            # the latest SketchResult (a selection can start from it)
        self._sketch_start: SketchStart | None = None   # a `start init=sketch` waiting for its drawing's projection
        self._sketch_busy = False
        self._sketch_dirty = False
        self._sketch_rid: int | None = None
        self._canvases = 0                 # sketch.begin count: tags jobs with the drawing they project
        self._stroke_refused = False       # the last new stroke was refused: its appended pieces are refused too
        self._live = None                  # the drawing's running state, handed to the worker with each job

    @property
    def trial_id(self) -> int | None:
        return self.trial.id if self.trial is not None else None

    # -- entry points ---------------------------------------------------------------------------
    def receive(self, frame: bytes | str | Decoded, now: float) -> list[Action]:
        """One frame's bytes, or a Decoded when the caller decoded it ahead of time (off its event loop)."""
        if self.closed:
            return []
        self.messages_in += 1
        self.last_message = None
        self.refused_over_rate = False    # this message: refused over the connection's message rate, never taken
        rid = None
        msg = None
        try:
            msg = frame.unwrap() if isinstance(frame, Decoded) else decode_frame(frame, self.limits.max_frame_bytes)
            rid = readable_rid(msg)
            # checked after decoding so that the refusal names its request: a client waiting on a rid
            # must get an answer, not a timeout
            if not self._bucket.take(now):
                self.refused_over_rate = True
                raise ProtocolError("overloaded", f"over {self.limits.max_messages_per_second:g} messages per "
                                                  "second on this connection; slow down", rid)
            if not self.greeted or msg.get("type") == "hello":
                gate = self._before_hello(msg, rid, now)
                if gate:
                    return gate
            msg = validate(msg)
            rid = msg.get("rid")
            self.last_message = msg
            return self._dispatch(msg, now)
        except ProtocolError as exc:
            if isinstance(msg, dict) and msg.get("type") == "sketch.stroke" and (
                    msg.get("append") is not True or exc.code != "overloaded"):
                # a stroke refused before the canvas saw it: its pieces must not go onto the stroke before it; a piece
                # refused (too many points): the pieces after it must not join the stroke across it. A piece only
                # dropped over the message rate is a gap in a live stroke, bridged like a lost sample: it goes on
                self._stroke_refused = True
            if (not self.greeted and exc.code in ("unknown_type", "bad_field")
                    and not (isinstance(msg, dict) and msg.get("type") == "hello")):
                # anything but hello before hello (what decoding refused too): before the token a client learns nothing
                # of the protocol (an unknown type's error lists every message)
                exc = self._hello_first(exc.rid)
            return self._error(exc)
        except SessionError as exc:
            return self._error(ProtocolError(exc.code if exc.code in ("wrong_state", "not_found") else "bad_field",
                                             str(exc), rid))
        except Exception as exc:  # a bug must not take the connection down
            return [Log({"event": "internal_error", "session_id": self.session_id, "error": repr(exc)}),
                    *self._error(ProtocolError("internal", "internal server error; the connection is still usable",
                                               rid))]

    def models_changed(self) -> list[Action]:
        """v1.2: the served models or the training progress changed; tell a client that can read it."""
        if self.closed or not self.greeted or self.client_minor < 2:
            return []
        b = self.backend
        return [Send(server_message("models", None, algorithms=list(b.algorithms),
                                    training=[dict(t) for t in b.training]))]

    def projection_done(self, job: ProjectionJob, vector: np.ndarray, reconstruction: Texture,
                        now: float) -> list[Action]:
        self.pending = None
        if self.closed and self._pending_trial is None:
            # its client left, or resumed elsewhere (v1.7): a selection started now would be logged for nobody
            return []
        self._reconstruction = reconstruction  # earlier ones are dropped: memory stays bounded
        trial, self._pending_trial = self._pending_trial, None
        if trial is not None:
            p = self.participant
            if self.closed or p is None or not self.study.owns(p, self.session_id) or trial.started \
                    or self.study.current(p) is not trial:
                # while the image was projected the participant connected again and went on there (or began this
                # trial there): beginning it here too would overwrite the start their picks replay from
                return self._error(ProtocolError("wrong_state", "your participant code connected again on another "
                                                                "connection while this image was projected; continue "
                                                                "there", job.rid))
            return self._begin_trial(trial, job.rid, now, query=vector, reconstruction=reconstruction)
        return self._start(job.algorithm, job.seed, job.rid, now, query=vector, reconstruction=reconstruction,
                           policy=job.policy)

    def sketch_done(self, job: SketchJob, result, now: float) -> list[Action]:
        """A drawing's projection came back (a `omokage.sketch.SketchResult`): send it, and project the newest drawing
        if strokes arrived meanwhile."""
        self._sketch_busy = False
        if self.closed or self.canvas is None:
            return []
        if job.canvas != self._canvases:
            # the drawing it shows was replaced by a `sketch.begin` meanwhile: project the new one instead
            self._sketch_dirty = False
            return [self._sketch_job(self._sketch_rid)]
        self.last_sketch = result
        items = self.backend.items
        listed = [{"id": i, "texture": items[i].texture, "title": items[i].title, "url": items[i].url,
                   "probability": p} for i, p in result.ranked]
        actions: list[Action] = [Send(server_message("sketch.result", job.rid, revision=result.revision,
                                                     strokes=job.strokes, items=listed,
                                                     preview=texture_map(result.preview)))]
        if self.client_minor >= 6 and self.backend.sketch_sharpens and not self._sketch_dirty:
            # (strokes that came meanwhile make this result stale at once: its sharper preview would be dropped)
            actions.append(Offload(SharpenJob(result.revision, result.latent, job.canvas)))
        pending = self._sketch_start
        if pending is not None and result.revision >= pending.revision:
            self._sketch_start = None
            actions.extend(self._start_from_sketch(pending.algorithm, pending.seed, pending.rid, now, pending.policy))
        if self._sketch_dirty:
            self._sketch_dirty = False
            actions.append(self._sketch_job(self._sketch_rid))
        return actions

    def wants_sharpen(self, job: SharpenJob) -> bool:
        """v1.6: whether the drawing is still the one `job`'s result showed (a later stroke, an undo or clear, a new
        drawing or a closed connection makes its sharper preview useless: a newer result is coming or came). Asked
        before decoding it, and again before sending it."""
        return not self.closed and self.canvas is not None and job.canvas == self._canvases \
            and self.canvas.revision == job.revision

    def sketch_sharpened(self, job: SharpenJob, preview: Texture) -> list[Action]:
        """v1.6: the sharper preview of a result, if its drawing has not changed since (`wants_sharpen`)."""
        if not self.wants_sharpen(job):
            return []
        return [Send(server_message("sketch.preview", None, revision=job.revision, preview=texture_map(preview)))]

    def sketch_failed(self, job: SketchJob, code: str, message: str) -> list[Action]:
        """A drawing's projection failed: say so, and project the newest drawing if strokes arrived meanwhile (their
        client waits on a result too)."""
        self._sketch_busy = False
        actions = self._error(ProtocolError(code, message, job.rid))
        if self._sketch_dirty and not self.closed and self.canvas is not None:
            self._sketch_dirty = False
            actions.append(self._sketch_job(self._sketch_rid))
        elif self._sketch_start is not None:   # nothing more is projected: the waiting start cannot be answered
            actions.extend(self._drop_sketch_start(code, f"start.init `sketch`: {message}"))
        return actions

    def _drop_sketch_start(self, code: str, message: str) -> list[Action]:
        """Answer a waiting `start init=sketch` with an error (the drawing it waited for is gone, or failed, or a newer
        `start` replaced it)."""
        pending, self._sketch_start = self._sketch_start, None
        return self._error(ProtocolError(code, message, pending.rid)) if pending is not None else []

    def disconnected(self) -> None:
        """The link is gone. What a resume carries over (the selection, the gaze corrections) stays for the keeper;
        the drawing and its worker-side state are let go at once, as before v1.7 (a resume does not restore them), so a
        lost selection waiting for its client holds no canvas and no projection state."""
        self.closed = True
        self.canvas = self._live = self.last_sketch = self._sketch_start = None
        self.last_message = self.pending = self._pending_trial = None   # an upload's bytes, a job's image
        self._reconstruction = None
        if self.gaze.calibrating:
            self.gaze.end_calibration()
        self.gaze.stop()    # the grid's samples: a resumed grid's gaze starts afresh on the new connection

    @property
    def resumable(self) -> bool:
        """v1.7: whether a reconnect could go on with this connection's selection (started, not decided)."""
        s = self.session
        return s is not None and s.decision is None and s.current is not None and self.study is None

    def unrecorded(self) -> None:
        """The records of this connection's last step could not be committed (the server then closes it). In a study
        the participant's state in memory (a pick, a finished trial, answers) is ahead of the store: the study reads it
        again from the store when they reconnect."""
        if self.study is not None and self.participant is not None:
            self.study.unrecorded(self.participant)
        self.session = None   # ahead of the log: a resume must not bring back a step the disk never had (v1.7)

    def projection_failed(self, job: ProjectionJob, code: str, message: str) -> list[Action]:
        self.pending = None
        self._pending_trial = None
        return self._error(ProtocolError(code, message, job.rid))

    # -- dispatch -------------------------------------------------------------------------------
    def _dispatch(self, msg: dict[str, Any], now: float) -> list[Action]:
        mtype, rid = msg["type"], msg.get("rid")
        if mtype == "hello":
            return self._hello(msg, rid, now)
        if self._unheard:   # the client got its welcome (and its new token): the one it presented is spent now
            self._unheard = False
            self.keeper.heard(self.resume_token)
        if mtype == "ping":
            return [Send(server_message("pong", rid, t=msg["t"], server_time=float(now)))]
        if mtype == "start":
            if self.study is not None:
                raise ProtocolError("wrong_state", f"this server runs the study {self.study.name!r}: send `study.next` "
                                                   "for your next trial (the study chooses model and policy)", rid)
            return self._start_request(msg, rid, now)
        if mtype == "study.next":
            return self._study_next(msg, rid, now)
        if mtype == "answers":
            return self._answers(msg, rid, now)
        if mtype == "choose":
            return self._choose(msg["id"], rid, now)
        if mtype == "skip":
            return self._skip(rid, now)
        if mtype == "back":
            return self._back(rid, now)
        if mtype == "rate":
            return self._rate(msg["id"], msg["rating"], rid, now)
        if mtype == "decide":
            return self._decide(msg["id"], rid, now)
        if mtype == "texture.get":
            return self._textures(msg["hashes"], rid)
        if mtype == "gaze.batch":
            return self._gaze_batch(msg["samples"], rid, now)
        if mtype == "layout":
            return self._layout(msg["panels"], rid, now)
        if mtype.startswith("sketch."):
            return self._sketch(mtype, msg, rid)
        if mtype == "calibrate.begin":
            return self._calibrate_begin(msg, rid, now)
        if mtype == "calibrate.end":
            return self._calibrate_end(msg["shown"], rid, now)
        if mtype == "calibrate.cancel":
            return self._calibrate_cancel(rid, now)
        if mtype == "ideal":
            return self._ideal(msg.get("near"), rid)
        raise ProtocolError("unknown_type", f"unknown message type {mtype!r}", rid)  # unreachable: decode checks

    def _hello_locked_out(self, rid, now) -> list[Action]:
        """Refuse at once an address that failed too many hellos lately (HelloGuard); [] when it may try."""
        wait = self.hello_guard.retry_after(now) if self.hello_guard is not None else 0.0
        if wait <= 0:
            return []
        self.closed = True
        return [*self._error(ProtocolError("unauthorized", "too many failed hellos from this address; "
                                                           f"retry in {math.ceil(wait)} s", rid)),
                Close(1008, "too many failed hellos from this address")]

    def _hello_failed(self, why: str, rid, now) -> list[Action]:
        """A wrong token or participant code: `unauthorized`, counted here and for the address."""
        self.failed_hellos += 1
        if self.hello_guard is not None:
            self.hello_guard.failed(now)
        # in the server's log and the store, so whoever runs it sees someone typing a wrong code (never the code
        # or token itself: those are guesses at a secret)
        actions = [Log({"event": "hello_refused", "session_id": self.session_id, "at": now, "reason": why},
                       acknowledged=False)]
        actions += self._error(ProtocolError("unauthorized", why, rid))
        if self.failed_hellos >= self.limits.max_failed_hellos:
            self.closed = True
            actions.append(Close(1008, "too many failed hellos"))
        return actions

    def _before_hello(self, msg: dict[str, Any], rid, now) -> list[Action]:
        """Before a message is checked against its schema: a second `hello` is wrong_state, anything before `hello` is
        wrong_state (unauthorized on a server with a token), and a `hello`'s token is checked first. A client without
        the token learns nothing, not even what the protocol's messages look like. [] when the message may go on."""
        if msg.get("type") == "hello":
            if self.greeted:
                raise ProtocolError("wrong_state", "`hello` was already accepted on this connection", rid)
            if self.token is not None:
                locked_out = self._hello_locked_out(rid, now)
                if locked_out:
                    return locked_out
                if not hmac.compare_digest(str(msg.get("token", "")).encode("utf-8", "surrogatepass"),
                                           self.token.encode()):
                    try:   # the store records a well-formed hello as a hello (without its token), refused or not
                        self.last_message = validate(msg)
                    except ProtocolError:
                        pass
                    return self._hello_failed("missing or wrong token", rid, now)
                self._token_passed = True
            return []
        raise self._hello_first(rid)

    def _hello_first(self, rid) -> ProtocolError:
        """The answer to anything but `hello` before a `hello` was accepted."""
        if self.token is not None and not self._token_passed:
            return ProtocolError("unauthorized", "send `hello` with the server's token first", rid)
        return ProtocolError("wrong_state", "send `hello` first", rid)

    def _hello(self, msg, rid, now) -> list[Action]:
        # the token was checked before the message's fields (_before_hello)
        if msg["protocol"] != PROTOCOL_VERSION:
            raise ProtocolError("bad_field", f"protocol version mismatch: client speaks {msg['protocol']}, "
                                             f"server speaks {PROTOCOL_VERSION}", rid)
        participant = None
        if self.study is not None:
            code = msg.get("participant")
            locked_out = self._hello_locked_out(rid, now)   # participant codes are guessed like tokens
            if locked_out:
                return locked_out
            try:
                participant = self.study.admit(code, self.session_id) if code is not None else None
            except UserError as exc:    # StudyUnavailable: their progress cannot be read back from the store now
                raise ProtocolError("internal", str(exc), rid) from None
            if participant is None:
                return self._hello_failed("this server runs a user study: send your participant code in "
                                          "`hello.participant`" if code is None else
                                          "this participant code is not in the study", rid, now)
        elif msg.get("participant") is not None:
            raise ProtocolError("bad_field", "hello.participant: this server runs no study; leave the code out", rid)
        self.participant = participant
        self.greeted = True
        b = self.backend
        welcome = server_message(
            "welcome", rid, protocol=PROTOCOL_VERSION, server=f"omokage/{__version__}", session_id=self.session_id,
            limits=self.limits.to_wire(self.grid_size), algorithms=list(b.algorithms),
            catalog={"count": len(b.items), "image_size": b.image_size},
            protocol_minor=PROTOCOL_MINOR, policies=list(SERVED_POLICIES), default_policy=DEFAULT_POLICY)
        if b.training:  # v1.2; absent while nothing trains, so v1.1 greetings stay byte for byte what they were
            welcome["training"] = [dict(t) for t in b.training]
        record = {"event": "hello", "session_id": self.session_id, "client": msg["client"],
                  "protocol_minor": msg.get("protocol_minor", 0)}
        if participant is not None:  # v1.2: where the participant stands; the log names them by id, never by code
            welcome["study"] = self.study.position(participant)
            record["participant"] = participant.id
        self.client_minor = msg.get("protocol_minor", 0)
        if self.client_minor >= 2:  # v1.2: what gaze.batch may carry; absent for older clients
            welcome["gaze"] = {"max_rate_hz": float(self.gaze.max_rate_hz),
                               "max_samples_per_batch": MAX_SAMPLES_PER_BATCH}
            if self.client_minor >= 4 and self.calibration_patterns:   # v1.4: the calibration patterns offered
                welcome["gaze"]["calibration"] = list(self.calibration_patterns)
        self.device = msg.get("device")
        if self.device is not None:   # v1.5: the headset's default correction, until a calibration replaces it
            record["device"] = self.device
            if self.device in self.device_profiles:
                self.gaze.profile = self.device_profiles[self.device]
                self.gaze_profile_source = "device"
        profile = getattr(participant, "gaze_profile", None)
        if profile is not None:   # the participant's latest calibration (from the store): applied to their gaze
            try:
                saved = Profile.from_dict(profile)
                if saved.source is None:    # saved before calibrations were per source: it corrects every source
                    self.gaze.profile = saved
                else:
                    self.gaze.set_calibration(SOURCE_CODES[saved.source], saved)
                self.gaze_profile_source = "participant"
                record["gaze_profile"] = True
            except (CalibrationError, TypeError, ValueError):   # a damaged record: their gaze goes uncorrected
                record["gaze_profile"] = "unreadable"
        # v1.7: go on with the selection of an earlier connection ([] when there is none to go on with); before the
        # gaze profile is told, as its calibration comes along
        resumed = self._resume(msg["resume"], now) if "resume" in msg else []
        if self.client_minor >= 5 and "gaze" in welcome:   # v1.5: whether this session's gaze is corrected, by what
            source = self.gaze_profile_source   # v1.7: `calibration`, a resumed selection's earlier calibration
            welcome["gaze"]["profile"] = source if source != "calibration" or self.client_minor >= 7 else "none"
        if self.client_minor >= 5 and b.ideal_image_size and self.study is None:   # v1.5: it generates ideal faces
            welcome["ideal"] = {"image_size": int(b.ideal_image_size)}
        if self.client_minor >= 3 and b.sketch_resolution:  # v1.3: the server draws sketches
            welcome["sketch"] = {"resolution": int(b.sketch_resolution), "preview_size": int(b.sketch_preview_size),
                                 "tools": list(TOOLS), "min_width": MIN_WIDTH, "max_width": MAX_WIDTH,
                                 "max_strokes": MAX_STROKES, "max_points_per_message": MAX_POINTS_PER_MESSAGE,
                                 "max_points_per_stroke": MAX_POINTS_PER_STROKE, "max_points": MAX_POINTS_PER_CANVAS}
            if self.client_minor >= 6:   # v1.6: whether sharper previews follow the results
                welcome["sketch"]["sharpens"] = bool(b.sketch_sharpens)
        went_on = any(isinstance(a, Send) for a in resumed)   # the grid it goes on with (a refusal is only logged)
        if "resume" in msg:
            welcome["resumed"] = went_on
            if went_on:
                record["resumed_from"] = self._resumed_from
        if self.client_minor >= 7 and self.keeper is not None and self.study is None:
            # a study's participants resume by their code, from the store; everyone else by this token
            self.resume_token = self.keeper.issue(self)
            self._resume_key = resume_key(self.resume_token)
            welcome["resume"] = {"token": self.resume_token, "ttl_s": float(self.keeper.ttl_s)}
            # a restarted server finds the selection by it (the `start` and `resume` records carry it too)
            record["resume_key"] = self._resume_key
            for a in resumed:
                if isinstance(a, Log) and a.record.get("event") == "resume":
                    a.record["resume_key"] = self._resume_key
            if went_on:   # until the client is heard from here, the token it presented still reaches this selection
                self.keeper.hand_over(msg["resume"], self.resume_token)
                self._unheard = True
        return [Send(welcome), Log(record), *resumed]

    def _resume(self, token: str, now: float) -> list[Action]:
        """v1.7: take over the selection `token` was given for: its belief, grid and gaze corrections move here, and the
        grid on screen is sent again (no rid). [] when there is nothing to go on with (an unknown, spent or expired
        token, a server restarted since, a study, a selection decided or never started): the client starts again."""
        if self.keeper is None or self.study is not None:
            return []
        previous = self.keeper.owner(token, now)
        if previous is None:   # not this run's: a selection a previous run left in the event log, if it checks out
            logged = self.keeper.claim_logged(token, now)
            return self._restore(logged, now) if logged is not None else []
        if previous is self:
            return []
        if not previous.resumable:
            # nothing to go on with: a live owner (a duplicated browser tab, say) keeps its link and its token
            if previous.closed:
                self.keeper.claim(token, now)
            return []
        self.keeper.claim(token, now)
        actions: list[Action] = []
        if not previous.closed:   # its client reconnected before the server saw the old link die: this one wins
            previous.closed = True
            actions.append(Supersede(previous))
        session, previous.session = previous.session, None
        self._reconstruction = self._start_reconstruction = previous._start_reconstruction
        # the gaze corrections its calibrations fitted, and the panels the client laid out, still hold: same headset
        self.gaze.source_profiles.update(previous.gaze.source_profiles)
        if self.gaze.layout is None:
            self.gaze.layout = previous.gaze.layout
        if previous.gaze.source_profiles:
            self.gaze_profile_source = "calibration"    # v1.7's welcome.gaze.profile value for it
        return [*actions, *self._went_on(session, previous.session_id, now)]

    def _went_on(self, session: SelectionSession, from_session: str, now: float, **note) -> list[Action]:
        """Take up a resumed selection: the grid it was showing is sent again (no rid), and the log says where it came
        from (so `fit user-model` reads one selection, and a later restart finds it here)."""
        self.session = session
        self._resumed_from = from_session
        step = session.current
        self.gaze.begin_step(step.step, step.ids, now)
        # the image start's grid shows its reconstruction again
        return [self._candidates(step, None, self._reconstruction if step.step == 1 else None),
                self._log("resume", now, from_session=from_session, step=step.step, algorithm=session.algorithm,
                          policy=session.policy_name, candidates=list(step.ids), **note)]

    def _restore(self, logged, now: float) -> list[Action]:
        """A selection a previous run of the server left in its log: replayed from its logged inputs with its seed,
        taken up only if it ends on the grid the log says was shown (same faces, same step); else nothing (the client
        starts again). A different catalog, a model no longer served, a refitted user model: all end here."""
        b = self.backend
        if logged.algorithm not in b.algorithms or (logged.catalog is not None
                                                    and logged.catalog != getattr(b, "catalog_fingerprint", None)):
            return [self._log("restore_refused", now, from_session=logged.session_id, reason="catalog or model")]
        if logged.unrestorable is not None:   # a record it needs is gone or damaged (a blob beside the log)
            return [self._log("restore_refused", now, from_session=logged.session_id, reason=logged.unrestorable)]
        if replay_work(len(logged.inputs) + 1, len(b.items)) > RESTORE_MAX_WORK:
            return [self._log("restore_refused", now, from_session=logged.session_id, reason="too long to replay",
                              inputs=len(logged.inputs))]
        try:
            drawn = () if logged.sketch is None else (SketchTerm(np.asarray(logged.sketch, dtype=np.float32)),)
            session = self._replayed(logged.algorithm, logged.policy, logged.seed,
                                     None if logged.query is None else np.asarray(logged.query, dtype=np.float32),
                                     logged.inputs, evidence=drawn)
        except (SessionError, UserError, ValueError, TypeError, IndexError, KeyError) as exc:
            return [self._log("restore_refused", now, from_session=logged.session_id,
                              reason=f"{type(exc).__name__}: {exc}"[:200])]
        step = session.current
        if step.ids != logged.grid or step.step != logged.step:
            return [self._log("restore_refused", now, from_session=logged.session_id, reason="another grid")]
        self._reconstruction = self._start_reconstruction = None
        if logged.layout is not None and self.gaze.layout is None:   # the panels its client laid out: its gaze rays
            try:
                self.gaze.set_layout(parse_layout(logged.layout, max_panels=self.grid_size))
            except LayoutError:
                pass
        # the gaze corrections its calibrations fitted, as the in-run resume carries them (same headset): each source's
        # latest, from its `calibration` records; one the log holds damaged is left out, the selection goes on
        note: dict[str, Any] = {}
        for source, logged_profile in sorted(logged.calibrations.items()):
            profile = _logged_profile(source, logged_profile)
            if profile is None:
                note.setdefault("calibrations_unreadable", []).append(str(source)[:16])
                continue
            self.gaze.set_calibration(SOURCE_CODES[source], profile)
            note.setdefault("calibrations", []).append(source)
        if "calibrations" in note:
            self.gaze_profile_source = "calibration"    # v1.7's welcome.gaze.profile value for it (_hello tells it)
        self.keeper.restored += 1
        return self._went_on(session, logged.session_id, now, restored=True, **note)

    # -- v1.3 sketch ----------------------------------------------------------------------------------------------
    def _sketch(self, mtype: str, msg, rid) -> list[Action]:
        if not self.backend.sketch_resolution:
            raise ProtocolError("wrong_state", "this server has no sketch model; its operator can fit one with "
                                               "`omokage fit CATALOG --models sketch`", rid)
        if mtype == "sketch.begin":
            replaced = self._drop_sketch_start("wrong_state", "start.init `sketch`: a new drawing began (`sketch.begin`) "
                                                             "before the one it started from had its result")
            self.canvas = SketchCanvas(self.backend.sketch_resolution)
            self._live = self.backend.new_live_drawing()
            self._canvases += 1
            self._stroke_refused = False
            self.last_sketch = None
            return replaced + self._sketch_changed(rid)
        if self.canvas is None:
            raise ProtocolError("wrong_state", f"send `sketch.begin` before `{mtype}`", rid)
        if mtype == "sketch.stroke":
            append = bool(msg.get("append", False))
            if append and self._stroke_refused:
                # its first piece was refused: drawing the rest onto the stroke before it would be wrong
                raise ProtocolError("bad_field", "sketch.stroke.append: the stroke these points continue was refused; "
                                                 "start a new stroke (append false)", rid)
            try:
                stroke = check_stroke(msg["points"], msg["colour"], msg["width"], msg.get("tool", "line"))
                self.canvas.add(stroke, append=append)
            except SketchError as exc:
                self._stroke_refused = True   # the next appended pieces would join across what was refused
                raise ProtocolError(exc.code, f"sketch.stroke.{exc.field}: {exc}; the drawing is unchanged", rid) from None
            self._stroke_refused = False
        elif mtype == "sketch.undo":
            self.canvas.undo()
        elif mtype == "sketch.clear":
            self.canvas.clear()
        return self._sketch_changed(rid)

    def _sketch_changed(self, rid) -> list[Action]:
        """Project the drawing now, or, when a projection is already out, once it returns (only the newest drawing:
        a client drawing faster than the server projects gets fewer results, never a growing queue)."""
        if self._sketch_busy:
            self._sketch_dirty = True
            self._sketch_rid = rid
            return []
        return [self._sketch_job(rid)]

    def _sketch_job(self, rid) -> Offload:
        self._sketch_busy = True
        self._tickets += 1
        return Offload(SketchJob(self._tickets, rid, self.canvas.snapshot(), len(self.canvas.strokes),
                                 self._canvases, self._live))

    def _start_request(self, msg, rid, now) -> list[Action]:
        algorithm = msg["algorithm"]
        if algorithm not in self.backend.algorithms:
            training = next((t for t in self.backend.training if t.get("algorithm") == algorithm), None)
            if training is not None:   # v1.2: fitted in the background; say so rather than "not served"
                progress, eta = training.get("progress"), training.get("eta_s")
                when = "".join([f", {float(progress):.0%} done" if isinstance(progress, (int, float)) else "",
                                f", about {float(eta):.0f} s to go" if isinstance(eta, (int, float)) else ""])
                raise ProtocolError("bad_field", f"start.algorithm: {algorithm!r} is still being fitted{when}; try "
                                                 f"again then, or choose from {', '.join(self.backend.algorithms)}",
                                    rid)
            raise ProtocolError("bad_field", f"start.algorithm: {algorithm!r} is not served; choose from "
                                             f"{', '.join(self.backend.algorithms)}", rid)
        policy = msg.get("policy")
        if policy is None:
            policy = DEFAULT_POLICY if self.client_minor >= 1 else V1_0_POLICY
        elif policy not in SERVED_POLICIES:
            raise ProtocolError("bad_field", f"start.policy: {policy!r} is not served; choose from "
                                             f"{', '.join(SERVED_POLICIES)}", rid)
        seed = msg.get("seed")
        if msg["init"] == "image" and msg.get("image") is None:
            raise ProtocolError("bad_field", "start.image: required when init is `image`", rid)
        # a `start init=sketch` still waiting for its drawing is replaced by this newer start
        replaced = self._drop_sketch_start("wrong_state", "start: replaced by a newer `start` before its drawing had "
                                                          "its result")
        if msg["init"] == "random":
            return replaced + self._start(algorithm, seed, rid, now, policy=policy)
        if msg["init"] == "sketch":
            canvas = self.canvas
            if canvas is not None and (self.last_sketch is None or self.last_sketch.revision < canvas.revision):
                # the drawing changed since its last result (a stroke, an undo or a clear is being projected): start
                # from the drawing as it is now, when that projection returns (this reply follows its sketch.result)
                if canvas.empty:
                    raise ProtocolError("wrong_state", "start.init `sketch`: the drawing is empty; draw first", rid)
                self._sketch_start = SketchStart(rid, algorithm, seed, policy, canvas.revision)
                return replaced + ([] if self._sketch_busy else [self._sketch_job(None)])
            return replaced + self._start_from_sketch(algorithm, seed, rid, now, policy)
        return replaced + [self._offload_projection("start.image", msg["image"], rid, algorithm, seed, policy)]

    def _start_from_sketch(self, algorithm, seed, rid, now, policy) -> list[Action]:
        """A selection whose first grid is the latest drawing result's faces, the drawing kept as evidence."""
        sketch = self.last_sketch
        if sketch is None or not sketch.ranked:
            return self._error(ProtocolError("wrong_state", "start.init `sketch` needs a drawing with a result: send "
                                                            "`sketch.begin` and a few `sketch.stroke`s first", rid))
        try:
            return self._start(algorithm, seed, rid, now, policy=policy,
                               # a copy: the result's row may be a view into a whole batch's array, which the
                               # selection would otherwise keep for its life (back replays need the term, v1.7)
                               evidence=(SketchTerm(np.array(sketch.log_likelihood, np.float32), sketch.revision),))
        except SessionError as exc:
            return self._error(ProtocolError("wrong_state", str(exc), rid))

    def _offload_projection(self, field: str, image: bytes, rid, algorithm: str, seed, policy: str) -> Offload:
        """An uploaded image to decode and project off the loop (its bytes checked against the limit first)."""
        if len(image) > self.limits.max_image_bytes:
            raise ProtocolError("too_large", f"{field}: {len(image)} bytes, over the "
                                             f"{self.limits.max_image_bytes}-byte limit", rid)
        self._tickets += 1
        self.pending = ProjectionJob(self._tickets, rid, algorithm, image, seed, policy)
        return Offload(self.pending)

    def _start(self, algorithm, seed, rid, now, query=None, reconstruction=None,
               policy: str = DEFAULT_POLICY, evidence=()) -> list[Action]:
        actions: list[Action] = []
        if self.session is not None and self.session.decision is None:
            actions.extend(self._gaze_end("abandon", None, now))
            actions.append(self._log("abandon", now, algorithm=self.session.algorithm,
                                     policy=self.session.policy_name, steps=len(self.session.history)))
        # a fresh policy per selection: belief policies keep per-session state
        self.session = SelectionSession(self.backend.space(algorithm), seed=seed,
                                        policy=make_policy(policy, **self.backend.policy_params(algorithm)),
                                        grid_size=self.grid_size)
        step = self.session.start(query, at=now, evidence=evidence)
        self._start_reconstruction = reconstruction
        self.gaze.begin_step(step.step, step.ids, now)
        actions.insert(0, self._candidates(step, rid, reconstruction))
        start = self._log_event(self.session.events[-1])
        catalog = getattr(self.backend, "catalog_fingerprint", None)
        if catalog is not None:
            start.record["catalog"] = catalog
        # what a restarted server needs to replay this selection (omokage.protocol.restore): its random stream's seed,
        # an image start's query, a drawing's evidence (one number per face): in the line where they are small, else
        # in a blob file the line names
        start.record["rng_seed"] = self.session._seed
        if self._resume_key is not None:   # here too: a connection open for hours has its hello far back in the log
            start.record["resume_key"] = self._resume_key
        drawn = [t.log_likelihoods for t in evidence if isinstance(t, SketchTerm)]
        for name, values in (("query", query), ("sketch_ll", drawn[0] if len(drawn) == 1 else None)):
            if values is None:
                continue
            flat = np.ascontiguousarray(np.asarray(values, dtype="<f4").reshape(-1))
            if flat.size <= MAX_LOGGED_FLOATS:
                start.record[name] = [float(x) for x in flat]
            elif self.keeper is not None and self.study is None:   # a selection a restart may rebuild
                data = flat.tobytes()
                key = blob_key(data)
                start.record["query_blob" if name == "query" else "sketch_blob"] = key
                start = dataclasses.replace(start, blobs=(*start.blobs, (key, data)))
        actions.append(start)
        return actions

    def _choose(self, item_id, rid, now) -> list[Action]:
        if self.session is None:
            raise ProtocolError("wrong_state", "send `start` before `choose`", rid)
        self._check_trial(rid)
        self.session._require_candidate(item_id, "choose")   # its errors first: the grid's gaze stays until a pick
        gaze = self._gaze_end("choose", int(item_id), now)
        actions = self._grid(self.session.choose(item_id, at=now), rid, now)
        self._trial_action(("choose", int(item_id)))
        return [*gaze, *actions]

    def _skip(self, rid, now) -> list[Action]:
        if self.session is None:
            raise ProtocolError("wrong_state", "send `start` before `skip`", rid)
        self._check_trial(rid)
        s = self.session
        gaze = (self._gaze_end("skip", None, now)
                if s.state is SessionState.BROWSING and len(s.shown) < s.space.n_items else [])
        actions = self._grid(self.session.skip(at=now), rid, now)
        self._trial_action(("skip",))
        return [*gaze, *actions]

    def _back(self, rid, now) -> list[Action]:
        """v1.7: undo the last choose or skip (a misclick): the grid before it, as it was; the belief forgets it."""
        if self.session is None:
            raise ProtocolError("wrong_state", "send `start` before `back`", rid)
        if self.trial is not None:
            raise ProtocolError("wrong_state", "a study trial cannot go back: its steps are what it measures", rid)
        self.session.check_back()    # its errors first (the first grid, a decided selection): the grid's gaze stays
        if replay_work(len(self.session._inputs), self.session.space.n_items) >= BACK_OFFLOAD_WORK:
            return [Offload(BackJob(rid, self.session, tuple(self.session._inputs)))]
        return self._went_back(self.session.rebuilt_without_last_pick(), rid, now)

    def back_done(self, job: BackJob, rebuilt: SelectionSession, now: float) -> list[Action]:
        """v1.7: a large catalog's `back`, rebuilt off the loop: adopted if the selection is still where it was."""
        if self.closed:
            return []
        if self.session is not job.session or tuple(self.session._inputs) != job.inputs:
            return self._error(ProtocolError("wrong_state", "back: the selection changed while it was being taken "
                                                            "back; look at the grid on screen and try again", job.rid))
        return self._went_back(rebuilt, job.rid, now)

    def back_failed(self, job: BackJob, code: str, message: str) -> list[Action]:
        return [] if self.closed else self._error(ProtocolError(code, f"back: {message}", job.rid))

    def _went_back(self, rebuilt: SelectionSession, rid, now) -> list[Action]:
        self.session.adopt(rebuilt, at=now)
        gaze = self._gaze_end("back", None, now)
        step = self.session.current
        # the grid as it was: an image start's first grid with its reconstruction (as a resume shows it)
        actions = self._grid(step, rid, now, self._start_reconstruction if step.step == 1 else None)
        return [*gaze, *actions]

    def _rate(self, item_id, rating, rid, now) -> list[Action]:
        if self.session is None:
            raise ProtocolError("wrong_state", "send `start` before `rate`", rid)
        self._check_trial(rid)
        self.session.rate(item_id, rating, at=now)
        self._trial_action(("rate", int(item_id), int(rating)))
        return [Send(server_message("rated", rid, id=item_id, rating=rating)),
                self._log_event(self.session.events[-1])]

    def _candidates(self, step, rid, reconstruction: Texture | None = None, **extra) -> Send:
        """A `candidates` message for `step` of the current selection, its fields in the documented order."""
        fields: dict[str, Any] = {"step": step.step, "algorithm": self.session.algorithm, "items": self._items(step)}
        if reconstruction is not None:
            fields["reconstruction"] = texture_map(reconstruction)
        return Send(server_message("candidates", rid, **fields, policy=self.session.policy_name, **extra))

    def _grid(self, step, rid, now, reconstruction: Texture | None = None) -> list[Action]:
        """The `candidates` reply to choose / skip / back, and the event that produced it; gaze now belongs to it."""
        self.gaze.begin_step(step.step, step.ids, now)
        return [self._candidates(step, rid, reconstruction), self._log_event(self.session.events[-1])]

    def _decide(self, item_id, rid, now) -> list[Action]:
        if self.session is None:
            raise ProtocolError("wrong_state", "send `start` before `decide`", rid)
        self._check_trial(rid)
        self.session._require_candidate(item_id, "decide")
        gaze = self._gaze_end("decide", int(item_id), now)
        self.gaze.stop()
        decision = self.session.decide(item_id, at=now)
        if self.trial is not None:
            self.trial.done = True
        item = self.backend.items[decision.item]
        return [*gaze, Send(server_message("decided", rid, item={"id": item.id, "texture": item.texture,
                                                                 "title": item.title, "url": item.url},
                                           steps=decision.step)),
                self._log_event(self.session.events[-1])]

    # -- v1.2 gaze ------------------------------------------------------------------------------
    def _gaze_batch(self, samples, rid, now) -> list[Action]:
        """Samples of the grid on screen: the bad ones dropped and counted (`bad_field`), the ones beyond the announced
        rate dropped (`overloaded`); no reply otherwise. Nothing here waits: figures are made when the step ends."""
        result = self.gaze.ingest(samples, now)
        actions: list[Action] = []
        if result.drops.total:
            self.errors_out += 1
            actions.append(Send(server_message(
                "error", rid, code="bad_field", message=f"gaze.batch.samples: {result.drops.total} of {len(samples)} "
                f"dropped ({result.drops.describe()}); see docs/gaze.md for what a sample must be",
                dropped=result.drops.total)))
        if result.over_rate:
            self.errors_out += 1
            actions.append(Send(server_message(
                "error", rid, code="overloaded", message=f"gaze.batch.samples: {result.over_rate} dropped, over "
                f"{self.gaze.max_rate_hz:g} samples per second per source; send fewer", dropped=result.over_rate)))
        return actions

    def _layout(self, panels, rid, now) -> list[Action]:
        try:
            layout = parse_layout(panels, max_panels=self.grid_size)
        except LayoutError as exc:
            raise ProtocolError("bad_field", f"layout.{exc}", rid) from None
        self.gaze.set_layout(layout)
        return [self._log("layout", now, **layout.to_wire())]

    def _gaze_end(self, ended_by: str, chosen: int | None, now) -> list[Action]:
        """The grid on screen is done with: its fixations and per-face figures go to the log, and, for a policy that
        reads gaze, its evidence into the belief (before the pick is applied). Nothing when no gaze came."""
        step = self.gaze.end_step()
        if step is None or not step.samples:
            return []
        record = self._log("gaze", now, step=step.step, ended_by=ended_by, chosen=chosen,
                           policy=self.session.policy_name if self.session is not None else None,
                           **step.to_log(self.gaze.start))
        actions: list[Action] = [record]
        policy = self.session.policy if self.session is not None else None
        make = getattr(policy, "gaze_term", None)
        if make is not None and step.stats is not None and ended_by in ("choose", "skip") \
                and self.session.state is SessionState.BROWSING:
            shown, units = step.evidence(chosen, GAZE_UNIT_S)
            term = make(shown, units)
            if term is not None:
                self.session.add_evidence(term, at=now, kind="gaze")
                record.record["evidence"] = True
                # what the term was made of, so a resumed study trial rebuilds the same belief (and grids)
                record.record["evidence_faces"] = [int(i) for i in shown]
                record.record["evidence_units"] = [float(u) for u in units]
                self._trial_action(("gaze", tuple(int(i) for i in shown), tuple(float(u) for u in units)))
        return actions

    # -- v1.4 gaze calibration ------------------------------------------------------------------------------------------
    def _calibrate_begin(self, msg, rid, now) -> list[Action]:
        if not self.calibration_patterns:
            raise ProtocolError("wrong_state", "this server has no calibration patterns (calibration/*.json); its "
                                               "operator can give them with `omokage serve --calibration DIR`", rid)
        names = list(self.calibration_patterns)
        name = msg.get("pattern") or ("nine-point" if "nine-point" in names else names[0])
        if name not in self.calibration_patterns:
            raise ProtocolError("bad_field", f"calibrate.begin.pattern: must be one of {', '.join(names)}", rid)
        layout = self.calibration_patterns[name]
        self._calibrating = (name, msg.get("source", "eye"))
        self.gaze.begin_calibration()     # a calibration begun again starts over
        return [Send(server_message(
            "calibration", rid, pattern=name,
            targets=[[float(t["yaw"]), float(t["pitch"])] for t in layout["targets"]],
            distance_m=float(layout.get("distance_m", 1.5)), settle_s=float(layout.get("settle_s", 0.5)),
            dwell_s=float(layout.get("dwell_s", 1.0))))]

    def _calibrate_end(self, shown, rid, now) -> list[Action]:
        if self._calibrating is None or not self.gaze.calibrating:
            self._calibrating = None
            raise ProtocolError("wrong_state", "send `calibrate.begin` first (then show its targets, stream "
                                               "gaze.batch, and say when each was shown); a grid shown since "
                                               "ends a calibration", rid)
        name, source = self._calibrating
        n_targets = len(self.calibration_patterns[name]["targets"])
        bad = next((k for k, (index, _, _) in enumerate(shown) if index >= n_targets), None)
        if bad is not None:   # refused before the samples are used: the client may send a corrected calibrate.end
            raise ProtocolError("bad_field", f"calibrate.end.shown: entry {bad} names target {shown[bad][0]}; the "
                                             f"{name} pattern has targets 0 to {n_targets - 1}", rid)
        self._calibrating = None
        s = self.gaze.end_calibration()
        record = {"event": "calibration", "session_id": self.session_id, "at": now, "pattern": name,
                  "source": source, "samples": len(s), "targets_shown": len(shown)}
        try:
            targets = targets_from_samples(self.calibration_patterns[name], shown, s.t, s.source, s.direction,
                                           s.confidence, SOURCE_CODES[source])
            profile = fit_calibration(targets, participant=None)
        except CalibrationError as exc:
            self.errors_out += 1
            record["error"] = str(exc)
            return [Log(record), Send(error("calibration_failed", f"calibration: {exc}; the previous correction "
                                                                  "stays in force", rid))]
        profile = dataclasses.replace(profile, source=source)
        self.gaze.set_calibration(SOURCE_CODES[source], profile)   # it corrects the gaze it was fitted on only
        self.gaze_profile_source = "calibration"
        saved = self.participant is not None
        record.update(accuracy_deg=profile.accuracy_deg, precision_deg=profile.precision_deg,
                      targets=profile.targets, saved=saved, profile={"A": profile.A, "b": profile.b,
                                                                     "accuracy_deg": profile.accuracy_deg,
                                                                     "precision_deg": profile.precision_deg,
                                                                     "targets": profile.targets, "source": source})
        if saved:   # kept in the study's store (this record); a later session of the participant loads it
            record["participant"] = self.participant.id
            self.participant.gaze_profile = record["profile"]
        return [Log(record), Send(server_message(
            "calibrated", rid, source=source, targets=int(profile.targets), accuracy_deg=float(profile.accuracy_deg),
            precision_deg=float(profile.precision_deg), saved=saved))]

    def _calibrate_cancel(self, rid, now) -> list[Action]:
        """v1.5: the user abandoned the calibration: its samples are dropped and the correction in force stays."""
        if self._calibrating is None or not self.gaze.calibrating:
            self._calibrating = None
            raise ProtocolError("wrong_state", "no calibration is running (a grid shown since `calibrate.begin` ends "
                                               "one): nothing to cancel", rid)
        name, source = self._calibrating
        self._calibrating = None
        dropped = len(self.gaze.end_calibration())
        return [Log({"event": "calibration", "session_id": self.session_id, "at": now, "pattern": name,
                     "source": source, "samples": dropped, "cancelled": True}),
                Send(server_message("calibration.cancelled", rid, samples=dropped))]

    # -- v1.5 ideal face ------------------------------------------------------------------------------------------------
    def _ideal(self, near, rid) -> list[Action]:
        from omokage.selection.ideal import snapshot
        if self.study is not None:
            # a study's conditions decide what participants see: a generated face and faces from outside the
            # condition's grids would confound it, whichever client a participant uses
            raise ProtocolError("wrong_state", "this server runs a study: its conditions decide what participants "
                                               "see, and they show no ideal face", rid)
        if not self.backend.ideal_image_size:
            raise ProtocolError("wrong_state", "this server cannot generate an ideal face: it serves no PCA model; "
                                               "its operator can fit one with `omokage fit CATALOG --models pca`", rid)
        s = self.session
        if s is None or s.state is not SessionState.BROWSING:
            raise ProtocolError("wrong_state", "`ideal` needs a selection in progress: send `start` first (and not "
                                               "after `decide`)", rid)
        self._check_trial(rid)
        if self._ideal_pending:
            raise ProtocolError("wrong_state", "an ideal face is already being generated; wait for its "
                                               "`ideal.result`", rid)
        if near is not None and near not in s.shown:
            raise ProtocolError("not_found", f"ideal.near: face {near} has not been shown in this selection", rid)
        self._tickets += 1
        self._ideal_pending = True
        # a snapshot (no belief built here: rebuilding one for `study` costs ~30 ms after 170 steps); the belief, the
        # favourite and the search come together off the loop
        return [Offload(IdealJob(self._tickets, rid, s.algorithm, snapshot(s), None if near is None else int(near),
                                 tuple(sorted(s.shown)), seed=(s.seed or 0) * 1009 + len(s.history),
                                 count=self.grid_size))]

    def ideal_done(self, job: IdealJob, found, image: Texture, now: float) -> list[Action]:
        """The search came back (an `omokage.selection.ideal.IdealFace` and its decoded image): send it."""
        self._ideal_pending = False
        if self.closed:
            return []
        items = self.backend.items
        listed = [{"id": i, "distance": float(d), "texture": items[i].texture, "title": items[i].title,
                   "url": items[i].url} for i, d in zip(found.nearest, found.nearest_distances)]
        return [self._log("ideal", now, near=found.favourite, nearest=[int(i) for i in found.nearest],
                          score=float(found.score), seconds=round(float(found.seconds), 4)),
                Send(server_message("ideal.result", job.rid, near=found.favourite, items=listed,
                                    preview=texture_map(image)))]

    def ideal_failed(self, job: IdealJob, code: str, message: str) -> list[Action]:
        self._ideal_pending = False
        return self._error(ProtocolError(code, message, job.rid))

    def _textures(self, hashes, rid) -> list[Action]:
        if len(hashes) > self.limits.max_hashes_per_request:
            raise ProtocolError("too_large", f"texture.get.hashes: at most {self.limits.max_hashes_per_request} "
                                             "entries per request", rid)
        actions: list[Action] = []
        missing = []
        for h in hashes:
            tex = self.backend.textures.get(h)
            if tex is None and self._reconstruction is not None and self._reconstruction.hash == h:
                tex = self._reconstruction
            if tex is None:
                missing.append(h)
            else:
                actions.append(Send(server_message("texture", rid, **texture_map(tex))))
        if missing:
            shown = ", ".join(m[:64] for m in missing[:4]) + (" ..." if len(missing) > 4 else "")
            actions.extend(self._error(ProtocolError("not_found", f"unknown texture hash(es): {shown}", rid)))
        return actions

    # -- v1.2 studies ---------------------------------------------------------------------------
    def _participant_or_error(self, rid):
        if self.study is None:
            raise ProtocolError("wrong_state", "this server runs no study", rid)
        p = self.participant
        if p is None or not self.study.owns(p, self.session_id):
            raise ProtocolError("wrong_state", "your participant code connected again on another connection; "
                                               "continue there", rid)
        return p

    def _check_trial(self, rid) -> None:
        """In a study, a selection's messages count only on the connection that speaks for its participant."""
        if self.trial is not None:
            self._participant_or_error(rid)

    def _trial_action(self, action: tuple) -> None:
        if self.trial is not None:
            self.trial.actions.append(action)

    def _study_next(self, msg, rid, now) -> list[Action]:
        from omokage.study.runner import TrialState
        p = self._participant_or_error(rid)
        step = self.study.current(p)
        if step is None:
            return [Send(server_message("study.done", rid, trials=len(p.trials)))]
        if not isinstance(step, TrialState):
            return [Send(server_message("questionnaire", rid, id=step.id, title=step.title, items=step.wire_items()))]
        if self.pending is not None:
            raise ProtocolError("wrong_state", "the trial's start image is still being projected", rid)
        if step is self.trial and self.session is not None and self.session.decision is None:
            return [self._trial_grid(p, step, self.session.current, rid)]   # asked again: the same grid
        if step.started:
            return self._resume_trial(p, step, rid, now)
        if step.condition.start == "image":
            image = msg.get("image")
            if image is None:
                raise ProtocolError("bad_field", "study.next.image: this trial starts from an image; send one", rid)
            offload = self._offload_projection("study.next.image", image, rid, step.condition.model, step.seed,
                                               step.condition.policy)
            self._pending_trial = step
            return [offload]
        return self._begin_trial(step, rid, now)

    def _target(self, trial) -> dict[str, Any] | None:
        if trial.target is None:
            return None
        item = self.backend.items[trial.target]
        return {"id": item.id, "texture": item.texture, "title": item.title, "url": item.url}

    def _trial_grid(self, p, trial, step, rid) -> Send:
        return self._candidates(step, rid, trial=self.study.trial_map(p, trial, self._target(trial)))

    def _begin_trial(self, trial, rid, now, query=None, reconstruction=None) -> list[Action]:
        cond = trial.condition
        if trial.task == "target":
            trial.target = int(np.random.default_rng([trial.seed, 1]).integers(len(self.backend.items)))
        trial.query = None if query is None else np.asarray(query, dtype=np.float32).reshape(-1)
        trial.started = True
        self.trial = trial
        actions = self._start(cond.model, trial.seed, rid, now, query=query, reconstruction=reconstruction,
                              policy=cond.policy)
        first = actions[0].message
        first["trial"] = self.study.trial_map(self.participant, trial, self._target(trial))
        record = self._log("trial_begin", now, condition=cond.name, practice=trial.practice, target=trial.target,
                           participant=self.participant.id)
        if trial.query is not None:
            record.record["query"] = [float(x) for x in trial.query]
        return [actions[0], record, *actions[1:]]

    def _resume_trial(self, p, trial, rid, now) -> list[Action]:
        """A trial interrupted by a disconnect or a crash: replay its committed picks with its seed (the same grids
        follow), and show the grid the participant last saw."""
        cond = trial.condition
        # replayed on a session of its own: a failure leaves this connection as it was
        session = self._replayed(cond.model, cond.policy, trial.seed, trial.query, trial.actions)
        self.trial, self.session = trial, session
        step = self.session.current
        self.gaze.begin_step(step.step, step.ids, now)
        return [self._trial_grid(p, trial, step, rid),
                self._log("trial_resume", now, step=step.step, actions=len(trial.actions), participant=p.id)]

    def _replayed(self, algorithm: str, policy_name: str, seed: int, query, actions, evidence=()) -> SelectionSession:
        """A selection rebuilt from what was asked of it (a study trial's committed actions, read back from the store,
        or a free selection's logged inputs after a restart): ("choose", id) | ("skip",) | ("rate", id, rating) |
        ("gaze", faces, units), a `back` already applied; `evidence`: what its start had besides a query (a drawing's
        SketchTerm). Same seed, same inputs: the same grids."""
        policy = make_policy(policy_name, **self.backend.policy_params(algorithm))
        session = SelectionSession(self.backend.space(algorithm), seed=seed, policy=policy, grid_size=self.grid_size)
        session.start(query, evidence=evidence)
        for action in actions:
            if action[0] == "choose":
                session.choose(action[1])
            elif action[0] == "skip":
                session.skip()
            elif action[0] == "rate":
                session.rate(action[1], action[2])
            else:   # the gaze evidence a grid gave before its pick (only a +gaze policy makes a term of it)
                make = getattr(policy, "gaze_term", None)
                term = make(action[1], action[2]) if make is not None else None
                if term is not None:
                    session.add_evidence(term, kind="gaze")
        return session

    def _answers(self, msg, rid, now) -> list[Action]:
        from omokage.study.runner import QuestionnaireStep
        p = self._participant_or_error(rid)
        step = self.study.current(p)
        if not isinstance(step, QuestionnaireStep) or step.id != msg["questionnaire"]:
            due = "none" if step is None else step.id if isinstance(step, QuestionnaireStep) else "a trial"
            raise ProtocolError("wrong_state", f"answers.questionnaire: {msg['questionnaire'][:64]!r} is not due "
                                               f"(next: {due}); send `study.next`", rid)
        try:
            values = step.check(msg["answers"])
        except ValueError as exc:
            raise ProtocolError("bad_field", f"answers: {exc}", rid) from None
        p.answered.add(step.id)
        return [Send(server_message("answered", rid, questionnaire=step.id)),
                Log({"event": "answers", "session_id": self.session_id, "at": now, "participant": p.id,
                     "questionnaire": step.id, "condition": step.condition, "answers": values})]

    # -- helpers --------------------------------------------------------------------------------
    def _items(self, step) -> list[dict[str, Any]]:
        items = self.backend.items
        out = []
        for c in step.candidates:
            item = {"id": c.id, "distance": c.distance, "texture": items[c.id].texture, "title": items[c.id].title,
                    "url": items[c.id].url}
            if c.probability is not None:  # v1.1: only policies with a belief have one; absent, not nil, otherwise
                item["probability"] = float(c.probability)
            out.append(item)
        return out

    def _error(self, exc: ProtocolError) -> list[Action]:
        self.errors_out += 1
        return [Send(error(exc.code, exc.message, exc.rid))]

    def _log(self, kind: str, now: float, **fields) -> Log:
        record = {"event": kind, "session_id": self.session_id, "at": now, **fields}
        if self.trial is not None:  # v1.2 studies: the trial this selection belongs to
            record["trial"] = self.trial.id
        return Log(record)

    def _log_event(self, event) -> Log:
        # every session event names its policy (the start event's detail already carries it)
        detail = {"policy": self.session.policy_name, **event.detail} if self.session is not None else event.detail
        return self._log(event.kind, event.at, step=event.step, algorithm=event.algorithm, item=event.item,
                         candidates=list(event.candidates), **detail)
