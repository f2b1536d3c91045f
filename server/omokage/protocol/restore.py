"""Selections that outlive the server (protocol v1.7 resume across a restart or a crash), read back from its event log.

A selection lives in the server's memory, but every step of it is in the event log before the client hears of it
(write-ahead). So a restarted server can rebuild the selections its clients were in the middle of: it reads the log's
tail once at start (`RestoreIndex`), and when a client presents a resume token the new server never issued, the
selection that token was given for is replayed from its logged inputs with its logged seed (the grids are the same
ones) and checked against the last grid the log says was shown before it is taken up. Anything that does not check out
is not resumed: the client is told `resumed: false` and starts again, as before.

The log never holds a token, only its hash (`resume_key`, in the `hello` record of the connection it was issued on).
A selection can be rebuilt when its `start` record carries `rng_seed` (the seed its random stream began with) and,
for an image start, the projected `query`, for a start from a drawing, the drawing's evidence (`sketch_ll`, one
log-likelihood per face). Each is in the record up to MAX_LOGGED_FLOATS numbers; a larger one (a raw-pixel query, a
drawing's evidence on a catalog of over 512 faces) is in a file beside the log that the record names by its hash
(`query_blob`, `sketch_blob`: omokage.store.blobs), so a log line stays small whatever the catalog. The index only
names a blob (`LoggedSelection.query_blob`, `.sketch_blob`); the server reads it. The gaze calibrations its
connections fitted come with it: each successful `calibration` record carries its fitted `profile`, and the latest one
per gaze source on the selection's connections (an earlier connection's too, when the selection was resumed from it)
is what corrected that source when the server stopped. Pure: records in, entries out, like the keeper it fills.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field
from typing import Any, Iterable

RESTORE_SCAN_BYTES = 32 * 2**20   # the log's tail read at start: weeks of a busy demo's steps; a selection that began
                                  # before it is not rebuilt (its client starts again)
MAX_LOGGED_FLOATS = 512           # an image start's query, a drawing's evidence (a float per face) up to this many
                                  # numbers go in the start record (~10 KB of JSON); larger, in a blob file it names


def blob_key(data: bytes) -> str:
    """What a record names a blob by (omokage.store.blobs): the SHA-256 of its bytes, in hex."""
    return hashlib.sha256(data).hexdigest()


def _blob(value) -> str | None:
    return value if isinstance(value, str) and len(value) == 64 and all(c in "0123456789abcdef" for c in value) \
        else None


def resume_key(token: str) -> str:
    """What the log keeps of a resume token: enough to find its selection, useless to present."""
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()[:32]


@dataclass
class LoggedSelection:
    """A selection as its log records tell it, enough to replay it."""

    session_id: str                  # the connection it was last on (the one whose token reaches it)
    algorithm: str
    policy: str
    seed: int                        # the seed its random stream began with (`rng_seed`)
    query: Any                       # an image start's projected query (a tuple of floats, or float32 numbers read
                                     # from its blob), or None
    catalog: str | None              # the catalog's fingerprint it ran on
    grid: tuple[int, ...]            # the faces of the last grid shown, in order
    step: int
    last_at: float                   # when it was last heard of (its connection's end, or its latest record)
    # ("choose", id) | ("skip",) | ("rate", id, r) | ("gaze", faces, units), in order, a `back` already applied: the
    # inputs its state is the replay of (so a replay is linear in them, however often the user went back)
    inputs: list[tuple] = field(default_factory=list)
    layout: list | None = None       # the gaze panels its client laid out (`layout`), for a +gaze policy's rays
    disconnected: bool = False       # its connection's end was logged (else the server stopped under it)
    sketch: tuple[float, ...] | None = None   # a start from a drawing: the drawing's log-likelihood of each face
    # gaze source (`eye`, `head`) -> the `profile` of the latest successful calibration of that source on its
    # connection (and those it was resumed from), as logged: unchecked (the connection checks it before applying it)
    calibrations: dict[str, Any] = field(default_factory=dict)
    query_blob: str | None = None    # the blob holding an image start's query when its record could not (raw pixels)
    sketch_blob: str | None = None   # ... and a drawing's evidence, on a catalog of more than MAX_LOGGED_FLOATS faces
    # why it cannot be rebuilt though its records are all there (a blob missing or damaged), said by whoever read them
    unrestorable: str | None = None


def _ids(value) -> tuple[int, ...] | None:
    if isinstance(value, list) and all(isinstance(i, int) and not isinstance(i, bool) for i in value):
        return tuple(value)
    return None


def _undo_last_pick(inputs: list[tuple]) -> list[tuple]:
    """The inputs without the last choose or skip and what came after it, and without the gaze evidence of the grid
    that returns (the user looks at it afresh): SelectionSession.rebuilt_without_last_pick's rule."""
    picks = [i for i, inp in enumerate(inputs) if inp[0] in ("choose", "skip")]
    if not picks:
        return inputs
    since = picks[-2] if len(picks) > 1 else -1
    return [inp for i, inp in enumerate(inputs[:picks[-1]]) if not (i > since and inp[0] == "gaze")]


class RestoreIndex:
    """Feed it the log's records in order; `restorable` then gives the selections a token may still reach."""

    def __init__(self) -> None:
        self._selection: dict[str, LoggedSelection] = {}   # session id -> the selection on that connection
        self._key: dict[str, str] = {}                     # session id -> the resume key issued to it
        self._layout: dict[str, list] = {}                 # session id -> its latest gaze layout
        # session id -> gaze source -> the profile its latest successful calibration fitted: a connection's gaze
        # corrections, whatever selection it is on (a calibration may come before `start`), carried by a resume
        self._calibrations: dict[str, dict[str, Any]] = {}
        # session id -> the key presented to resume on it, until its client is heard from there: the welcome with the
        # new token may have been lost, and the client presents the old one again (SessionKeeper.hand_over)
        self._alias: dict[str, set[str]] = {}
        self.records = 0
        self.damaged = 0

    def feed(self, rec: Any) -> None:
        """One record; one the log holds damaged (wrong types) is counted and skipped."""
        try:
            self._feed(rec)
        except (TypeError, ValueError, OverflowError, AttributeError, KeyError):
            self.damaged += 1

    def _feed(self, rec: Any) -> None:
        if not isinstance(rec, dict):
            return
        sid, kind, at = rec.get("session_id"), rec.get("event"), rec.get("at")
        if not isinstance(sid, str) or not isinstance(kind, str) or rec.get("trial") is not None:
            return          # the server's own records; a study's trials resume from the store by participant
        self.records += 1
        if isinstance(rec.get("resume_key"), str):   # on `hello`, and on `start` and `resume` (a long-lived link)
            self._key[sid] = rec["resume_key"]
        sel = self._selection.get(sid)
        if kind == "hello":
            return
        if kind == "layout":
            if isinstance(rec.get("panels"), list):
                self._layout[sid] = rec["panels"]
                if sel is not None:
                    sel.layout = rec["panels"]
            return
        if kind not in ("resume", "disconnect"):
            self._alias.pop(sid, None)       # its client was heard from on this connection
        if kind == "calibration":   # a failed (`error`) or cancelled one left the correction in force as it was
            source, profile = rec.get("source"), rec.get("profile")
            if isinstance(source, str) and profile is not None and "error" not in rec and not rec.get("cancelled"):
                self._calibrations.setdefault(sid, {})[source] = profile   # a later one of a source replaces it
        if kind == "resume":     # a selection went on on this connection: it moves here, with this one's key
            origin = rec.get("from_session")
            moved = self._selection.pop(origin, None) if isinstance(origin, str) else None
            # the gaze corrections went on here with it (ServerConnection._resume), under any made here since
            carried = self._calibrations.pop(origin, None) if isinstance(origin, str) else None
            if carried:
                self._calibrations[sid] = {**carried, **self._calibrations.get(sid, {})}
            if moved is not None:
                moved.session_id = sid
                moved.disconnected = False
                if sid in self._layout:
                    moved.layout = self._layout[sid]
                self._selection[sid] = moved
                self._shown(moved, rec)
                # the keys that still reach it until its client is heard from here: the origin's, and those still
                # reaching the origin (a client whose welcomes were lost twice presents its first token again)
                keys = {self._key[origin]} if origin in self._key else set()
                self._alias[sid] = keys | self._alias.pop(origin, set())
                sel = moved
        elif kind == "start":
            sel = self._started(sid, rec)
        elif sel is None:
            return
        elif kind in ("decide", "abandon"):
            del self._selection[sid]
            self._alias.pop(sid, None)
            return
        elif kind == "disconnect":
            sel.disconnected = True
        elif kind == "choose":
            sel.inputs.append(("choose", int(rec["item"])))
            self._shown(sel, rec)
        elif kind == "skip":
            sel.inputs.append(("skip",))
            self._shown(sel, rec)
        elif kind == "back":
            sel.inputs = _undo_last_pick(sel.inputs)
            self._shown(sel, rec)
        elif kind == "rate":
            sel.inputs.append(("rate", int(rec["item"]), int(rec["rating"])))
        elif kind == "gaze":    # only gaze that became evidence changed the belief (a +gaze policy)
            faces, units = _ids(rec.get("evidence_faces")), rec.get("evidence_units")
            if rec.get("evidence") and faces is not None and isinstance(units, list) and len(units) == len(faces):
                sel.inputs.append(("gaze", faces, tuple(float(u) for u in units)))
        if sel is not None and isinstance(at, (int, float)) and math.isfinite(at):
            sel.last_at = float(at)

    def _started(self, sid: str, rec: dict) -> LoggedSelection | None:
        self._selection.pop(sid, None)
        seed, grid = rec.get("rng_seed"), _ids(rec.get("candidates"))
        query, drawn, query_blob = rec.get("query"), rec.get("sketch_ll"), _blob(rec.get("query_blob"))
        sketch_blob = _blob(rec.get("sketch_blob")) if not isinstance(drawn, list) else None
        if not isinstance(seed, int) or grid is None or (
                rec.get("init") == "sketch" and not isinstance(drawn, list) and sketch_blob is None) or (
                rec.get("init") == "image" and not isinstance(query, list) and query_blob is None):
            return None
        at = rec.get("at")
        sel = LoggedSelection(sid, str(rec.get("algorithm")), str(rec.get("policy")), seed,
                              tuple(float(x) for x in query) if isinstance(query, list) else None,
                              rec.get("catalog") if isinstance(rec.get("catalog"), str) else None, grid,
                              int(rec.get("step") or 1), float(at) if isinstance(at, (int, float)) else 0.0,
                              layout=self._layout.get(sid),
                              sketch=(tuple(float(x) for x in drawn)
                                      if rec.get("init") == "sketch" and isinstance(drawn, list) else None),
                              query_blob=query_blob if not isinstance(query, list) else None,
                              sketch_blob=sketch_blob if rec.get("init") == "sketch" else None)
        self._selection[sid] = sel
        return sel

    @staticmethod
    def _shown(sel: LoggedSelection, rec: dict) -> None:
        grid = _ids(rec.get("candidates"))
        if grid is not None:
            sel.grid = grid
            sel.step = int(rec.get("step") or sel.step)

    def restorable(self, now: float, ttl_s: float) -> dict[str, LoggedSelection]:
        """resume key -> selection, for the selections heard of within ttl_s of `now` whose connection had a key. A
        selection whose connection was still open when the server stopped (a crash, a restart under a connected
        client) lost it then, a moment the log cannot tell (a user looking at a grid sends nothing it logs): its
        time runs from `now`, the restart, as a dropped link's runs from the drop."""
        out: dict[str, LoggedSelection] = {}
        for sid, sel in self._selection.items():
            if not sel.disconnected:
                sel.last_at = max(sel.last_at, float(now))
            if sid not in self._key or sel.last_at <= now - ttl_s:
                continue
            sel.calibrations = dict(self._calibrations.get(sid, {}))
            out[self._key[sid]] = sel
            for key in self._alias.get(sid, ()):
                out.setdefault(key, sel)
        return out

    def blobs(self) -> set[str]:
        """The blobs the selections still open in the log's tail name (restorable or not yet known to have expired):
        the ones a server starting on this log keeps (BlobStore.prune)."""
        return {key for sel in self._selection.values() for key in (sel.query_blob, sel.sketch_blob)
                if key is not None}

    def lost(self, now: float) -> list[dict]:
        """`disconnect` records, at `now`, for the selections whose client was connected when the server stopped: a
        server that loads them writes these to its log, so the next restart counts their time from this one, not
        from its own (an abandoned selection does not live for ever on a server that keeps restarting)."""
        return [{"event": "disconnect", "session_id": sid, "at": float(now), "lost_with_the_server": True}
                for sid, sel in self._selection.items() if not sel.disconnected]


def restorable_from(records: Iterable[Any], now: float, ttl_s: float) -> dict[str, LoggedSelection]:
    index = RestoreIndex()
    for rec in records:
        index.feed(rec)
    return index.restorable(now, ttl_s)
