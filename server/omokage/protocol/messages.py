"""Protocol v1 message schemas, encoding and validation (see docs/protocol.md).

The schemas here are the single source of truth: the validator uses them, and
`tests/test_protocol_doc.py` checks that docs/protocol.md lists every message and field.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass
from typing import Any

import msgpack

PROTOCOL_VERSION = 1
# v1.x adds optional fields and messages only (unknown fields are ignored), so `protocol` stays 1 on the
# wire and old clients that check `protocol == 1` keep working; the minor says which additions a peer knows.
PROTOCOL_MINOR = 7
INT32_MAX = 2**31 - 1

ERROR_CODES = {
    "bad_frame": "the frame is not one MessagePack map (text frame, invalid MessagePack, not a map, trailing bytes)",
    "unknown_type": "`type` names no message of this protocol version",
    "bad_field": "a field is missing, of the wrong type or out of range; the message names the field",
    "too_large": "a frame, an image or a list is over the limit announced in `welcome.limits`",
    "unauthorized": "the server needs a token and `hello` did not carry the right one",
    "not_found": "the id is not among the current candidates, or a texture hash is unknown",
    "wrong_state": "the message is not allowed now (e.g. `choose` before `start`, anything before `hello`)",
    "overloaded": "too many messages per second on this connection; slow down",
    "internal": "the server failed; the connection stays usable",
    "calibration_failed": "v1.4: a gaze calibration could not be fitted (the message says why); the previous "
                          "correction stays in force",
}


class ProtocolError(Exception):
    def __init__(self, code: str, message: str, rid: int | None = None):
        assert code in ERROR_CODES, code
        super().__init__(message)
        self.code = code
        self.message = message
        self.rid = rid


@dataclass(frozen=True)
class Field:
    name: str
    kind: str                       # int | number | str | bin | bool | str_list | answer_list | number_list | ...
    required: bool = True
    min: float | None = None
    max: float | None = None
    max_len: int | None = None      # characters (str), bytes (bin), entries (list)
    choices: tuple[str, ...] | None = None
    doc: str = ""


MAX_ANSWERS = 64            # answers per `answers` message
MAX_ANSWER_CHARS = 2000     # a free-text answer
MAX_GAZE_SAMPLES = 256      # samples per `gaze.batch` (omokage.gaze.MAX_SAMPLES_PER_BATCH; 13 objects each)
MAX_CALIBRATION_TARGETS = 64   # intervals per `calibrate.end`
MAX_SKETCH_COORDINATES = 1024   # x, y numbers per `sketch.stroke` (omokage.sketch.canvas.MAX_POINTS_PER_MESSAGE points)

RID = Field("rid", "int", False, 0, INT32_MAX, doc="request id, echoed in the reply")

CLIENT_MESSAGES: dict[str, tuple[Field, ...]] = {
    "hello": (
        Field("protocol", "int", True, 0, INT32_MAX, doc="protocol version the client speaks (1)"),
        Field("client", "str", True, max_len=128, doc="client name and version, e.g. `omokage-unity/0.1.0`"),
        Field("token", "str", False, max_len=256, doc="access token when the server requires one"),
        Field("protocol_minor", "int", False, 0, INT32_MAX, doc="v1.1: the minor version the client speaks (1)"),
        Field("participant", "str", False, max_len=64, doc="v1.2: a study participant's code (`serve --study`)"),
        Field("device", "str", False, max_len=64,
              doc="v1.5: the headset model, e.g. `quest-pro`: its default gaze correction applies until a calibration"),
        Field("resume", "str", False, max_len=64,
              doc="v1.7: the token of an earlier `welcome.resume`: go on with that connection's selection"),
    ),
    "start": (
        Field("algorithm", "str", True, max_len=32, doc="one of `welcome.algorithms`"),
        Field("init", "str", True, choices=("random", "image", "sketch"),
              doc="`random`, `image` or (v1.3) `sketch`: from the drawing of `sketch.*`"),
        Field("image", "bin", False, doc="encoded image (JPEG, PNG, WebP, ...) when init is `image`"),
        Field("seed", "int", False, 0, INT32_MAX, doc="makes a random start repeatable"),
        # the choices are the server's (welcome.policies): checked by the connection, which names them
        Field("policy", "str", False, max_len=32, doc="v1.1: one of `welcome.policies`"),
    ),
    "choose": (Field("id", "int", True, 0, INT32_MAX, doc="item id from the current candidates"),),
    "skip": (),  # v1.1: "none of these"; only the optional rid
    "back": (),  # v1.7: undo the last choose or skip; only the optional rid
    "rate": (  # v1.1
        Field("id", "int", True, 0, INT32_MAX, doc="item id of a face shown in this selection"),
        Field("rating", "int", True, 1, 5, doc="1 (not at all) to 5 (exactly what I want)"),
    ),
    "decide": (Field("id", "int", True, 0, INT32_MAX, doc="item id from the current candidates"),),
    # the count is bounded by the connection's Limits.max_hashes_per_request (announced in welcome)
    "texture.get": (Field("hashes", "str_list", True, doc="1 to max_hashes_per_request texture hashes"),),
    "ping": (Field("t", "number", True, doc="client clock, any finite number; echoed"),),
    # v1.2, studies (`omokage serve --study`): the participant's next trial or questionnaire, and the answers
    "study.next": (Field("image", "bin", False, doc="the start image, when the trial's condition starts from one"),),
    "answers": (
        Field("questionnaire", "str", True, max_len=64, doc="the `questionnaire.id` being answered"),
        Field("answers", "answer_list", True, max_len=MAX_ANSWERS, doc="[{item: str, value: int | str}]"),
    ),
    # v1.2, gaze (docs/gaze.md): samples are checked one by one by omokage.gaze (bad ones dropped and counted), the
    # layout by omokage.gaze.parse_layout; neither is answered unless something was wrong
    "gaze.batch": (Field("samples", "gaze_samples", True, max_len=MAX_GAZE_SAMPLES,
                         doc="1 to 256 samples [t, source, ox, oy, oz, dx, dy, dz, confidence(, panel, u, v)]"),),
    "layout": (Field("panels", "map_list", True, max_len=9, doc="1 to 9 panels {position, rotation, size}"),),
    # v1.3, live sketch search (docs/protocol.md#sketch): strokes are checked by omokage.sketch.check_stroke (the
    # canvas unchanged when one is refused); results come as `sketch.result`, coalesced when strokes outrun them
    "sketch.begin": (),   # a new, empty drawing (the previous one is dropped); only the optional rid
    "sketch.stroke": (
        Field("points", "number_list", True, max_len=MAX_SKETCH_COORDINATES,
              doc="x0, y0, x1, y1, ...: canvas coordinates in [0, 1], x right, y down (off-canvas is clipped)"),
        Field("colour", "int_list", True, max_len=3, doc="[r, g, b], each 0-255"),
        Field("width", "number", True, doc="stroke width as a fraction of the canvas, 0.001 to 0.25"),
        Field("tool", "str", False, choices=("line", "paint"), doc="`line` (default): a pen line; `paint`: colour"),
        Field("append", "bool", False, doc="true: these points continue the previous stroke (a live stroke in pieces)"),
    ),
    "sketch.undo": (),    # take back the last whole stroke
    "sketch.clear": (),   # an empty canvas, the drawing kept open
    # v1.4, gaze calibration (docs/protocol.md#calibration-v14): the client shows the targets of `calibration` one at
    # a time, streaming gaze.batch as usual, then says when each was on screen; the server fits the correction
    "calibrate.begin": (
        Field("pattern", "str", False, max_len=32, doc="one of `welcome.gaze.calibration` (default `nine-point`)"),
        Field("source", "str", False, choices=("eye", "head"), doc="the samples to fit: `eye` (default) or `head`"),
    ),
    "calibrate.end": (
        Field("shown", "interval_list", True, max_len=MAX_CALIBRATION_TARGETS,
              doc="[[target index, t_start, t_end], ...]: when each target was on screen and settled, server clock"),
    ),
    "calibrate.cancel": (),   # v1.5: abandon the calibration; the correction in force stays; only the optional rid
    # v1.5: the face the session's belief likes best near a favourite, generated, with the unseen faces nearest to it
    "ideal": (Field("near", "int", False, 0, INT32_MAX,
                    doc="the favourite: a face shown in this selection (default: the last face chosen)"),),
}

# Server messages: their fields in canonical order (v1.0 fields first, v1.1 additions after them). The
# constructors in connection.py follow this order; the tests check the documentation lists every field and
# that the server sends no field outside these.
SERVER_MESSAGES: dict[str, tuple[str, ...]] = {
    "welcome": ("protocol", "server", "session_id", "limits", "algorithms", "catalog",
                "protocol_minor", "policies", "default_policy", "training", "study", "gaze", "sketch", "ideal",
                "resumed", "resume"),   # v1.7: resumed only after hello.resume; resume only to v1.7 clients
    "models": ("algorithms", "training"),  # v1.2: sent on its own (no rid) to clients that said protocol_minor >= 2
    "candidates": ("step", "algorithm", "items", "reconstruction", "policy", "trial"),
    "rated": ("id", "rating"),
    "decided": ("item", "steps"),
    "texture": ("hash", "format", "width", "height", "data"),
    "pong": ("t", "server_time"),
    "error": ("code", "message", "dropped"),   # v1.2: `dropped`, the gaze samples a bad_field/overloaded dropped
    # v1.2, studies: replies to `study.next` (candidates with `trial`, a questionnaire, or the end) and to `answers`
    "questionnaire": ("id", "title", "items"),
    "answered": ("questionnaire",),
    "study.done": ("trials",),
    # v1.3: the faces a drawing fits best and a preview generated from it; `revision` counts the drawing's changes
    "sketch.result": ("revision", "strokes", "items", "preview"),
    # v1.4: the calibration's targets (reply to `calibrate.begin`) and its outcome (reply to `calibrate.end`)
    "calibration": ("pattern", "targets", "distance_m", "settle_s", "dwell_s"),
    "calibrated": ("source", "targets", "accuracy_deg", "precision_deg", "saved"),
    # v1.5: reply to `calibrate.cancel` (the samples it dropped), and to `ideal`
    "calibration.cancelled": ("samples",),
    "ideal.result": ("near", "items", "preview"),
    # v1.6: a sharper preview of a drawing's newest result, sent after it (no rid) when the server's generator is too
    # slow for the live loop
    "sketch.preview": ("revision", "preview"),
}
CANDIDATE_ITEM_FIELDS = ("id", "distance", "texture", "title", "url", "probability")


def encode(message: dict[str, Any]) -> bytes:
    """Canonical encoding: the map in insertion order (`type` first), minimal ints, float64 floats."""
    return msgpack.packb(message, use_bin_type=True)


# Budgets per frame, checked by a pre-scan of the MessagePack structure before anything is built: the
# byte limit alone let a 4 MiB frame of ~4 M empty arrays decode for 2.7 s on the event loop. The
# largest valid client message (texture.get with 64 hashes) holds ~70 objects at depth 2.
MAX_FRAME_OBJECTS = 4096
MAX_FRAME_DEPTH = 16
MAX_FRAME_STR_BYTES = 64 * 1024  # all str payloads together; images are bin, which only max_frame_bytes bounds

_U16 = struct.Struct(">H").unpack_from
_U32 = struct.Struct(">I").unpack_from
# first byte -> total size of a fixed-size scalar (0: a container, str, bin, ext or the unused 0xc1)
_FIXED_SIZE = [0] * 256
for _b in (*range(0x00, 0x80), *range(0xe0, 0x100), 0xc0, 0xc2, 0xc3):
    _FIXED_SIZE[_b] = 1
for _b, _n in ((0xcc, 2), (0xd0, 2), (0xcd, 3), (0xd1, 3), (0xca, 5), (0xce, 5), (0xd2, 5), (0xcb, 9), (0xcf, 9),
               (0xd3, 9)):
    _FIXED_SIZE[_b] = _n
del _b, _n


def scan_frame(buf: bytes, *, max_objects: int = MAX_FRAME_OBJECTS, max_depth: int = MAX_FRAME_DEPTH,
               max_str_bytes: int = MAX_FRAME_STR_BYTES) -> int:
    """Walk the MessagePack headers of one frame without building anything; returns the object count.

    Raises ProtocolError too_large the moment a budget is exceeded (a container header that announces
    more objects than the budget fails at once, so the cost is bounded by the budget, not the frame),
    and bad_frame for extension types (timestamps included), the unused byte 0xc1, truncation and
    trailing bytes. Measured: ~1.5 us for a ping, ~330 us for a frame of 4,000 tiny objects."""
    n = len(buf)
    pos = objects = str_bytes = 0
    promised = 1   # objects announced so far by the headers read: a lower bound on the total
    stack: list[int] = []   # children still to read in each enclosing container
    left = 1
    fixed = _FIXED_SIZE
    while True:
        while not left:
            if not stack:
                if pos > n:     # the last object's header announced more bytes than the frame has
                    raise ProtocolError("bad_frame", "frame is not valid MessagePack (truncated)")
                if pos < n:
                    raise ProtocolError("bad_frame", "frame holds more than one MessagePack object")
                return objects
            left = stack.pop()
        left -= 1
        objects += 1
        if pos >= n:
            raise ProtocolError("bad_frame", "frame is not valid MessagePack (truncated)")
        b = buf[pos]
        size = fixed[b]
        if size:
            pos += size
            continue
        if b <= 0x9f:                       # fixmap 0x80-0x8f, fixarray 0x90-0x9f
            count = (b & 0x0f) * 2 if b < 0x90 else b & 0x0f
            pos += 1
        elif b <= 0xbf:                     # fixstr
            length = b & 0x1f
            pos += 1 + length
            str_bytes += length
            if str_bytes > max_str_bytes:
                raise _over_str_budget(max_str_bytes)
            continue
        elif b in (0xdc, 0xde, 0xdd, 0xdf):  # array16, map16, array32, map32
            wide = b in (0xdd, 0xdf)
            if pos + (5 if wide else 3) > n:
                raise ProtocolError("bad_frame", "frame is not valid MessagePack (truncated)")
            count = (_U32 if wide else _U16)(buf, pos + 1)[0] * (2 if b in (0xde, 0xdf) else 1)
            pos += 5 if wide else 3
        elif b in (0xc4, 0xc5, 0xc6, 0xd9, 0xda, 0xdb):  # bin8/16/32, str8/16/32
            head = 1 << (b - 0xc4 if b < 0xd9 else b - 0xd9)  # 1, 2 or 4 length bytes
            if pos + 1 + head > n:
                raise ProtocolError("bad_frame", "frame is not valid MessagePack (truncated)")
            length = buf[pos + 1] if head == 1 else (_U16 if head == 2 else _U32)(buf, pos + 1)[0]
            pos += 1 + head + length
            if b >= 0xd9:
                str_bytes += length
                if str_bytes > max_str_bytes:
                    raise _over_str_budget(max_str_bytes)
            continue
        elif 0xc7 <= b <= 0xc9 or 0xd4 <= b <= 0xd8:
            raise ProtocolError("bad_frame", "MessagePack extension types (timestamps included) are not part of "
                                             "the protocol")
        else:                               # 0xc1, never used
            raise ProtocolError("bad_frame", "frame is not valid MessagePack (byte 0xc1)")
        if count:
            promised += count
            if promised > max_objects:
                raise ProtocolError("too_large", f"frame holds more than {max_objects} MessagePack objects "
                                                 "(the limit per frame)")
            if count > n - pos:  # every object takes at least one byte
                raise ProtocolError("bad_frame", "frame is not valid MessagePack (truncated)")
            if len(stack) >= max_depth:
                raise ProtocolError("too_large", f"frame nests deeper than {max_depth} levels (the limit per frame)")
            stack.append(left)
            left = count


def _over_str_budget(limit: int) -> ProtocolError:
    return ProtocolError("too_large", f"frame holds more than {limit} bytes of strings (the limit per frame; "
                                      "send images as bin)")


def decode_frame(frame: bytes | str, max_bytes: int) -> dict[str, Any]:
    """Bytes of one WebSocket message → a map with a str `type`, or ProtocolError.

    The budgets are checked by scan_frame before msgpack builds any object, so a hostile frame costs
    at most the scan of MAX_FRAME_OBJECTS headers."""
    if isinstance(frame, str):
        raise ProtocolError("bad_frame", "text frames are not part of the protocol; send binary MessagePack frames")
    if len(frame) > max_bytes:
        raise ProtocolError("too_large", f"frame is {len(frame)} bytes, over the {max_bytes}-byte limit")
    scan_frame(frame)
    try:
        msg = msgpack.unpackb(frame, raw=False, strict_map_key=True, use_list=True,
                              max_bin_len=max_bytes, max_str_len=MAX_FRAME_STR_BYTES, max_array_len=MAX_FRAME_OBJECTS,
                              max_map_len=64, max_ext_len=0, ext_hook=_reject_ext)
    except ProtocolError:
        raise
    except msgpack.ExtraData:
        raise ProtocolError("bad_frame", "frame holds more than one MessagePack object") from None
    except Exception as exc:
        if "map key" in str(exc):
            raise ProtocolError("bad_frame", "map keys must be strings (MessagePack str)") from None
        # msgpack's own words ("Unpack failed: incomplete input"), never a Python exception's name
        raise ProtocolError("bad_frame", f"frame is not valid MessagePack ({str(exc)[:80] or 'unreadable'})") from None
    if not isinstance(msg, dict):
        raise ProtocolError("bad_frame", f"frame must be a MessagePack map, got {type(msg).__name__}")
    rid = readable_rid(msg)
    mtype = msg.get("type")
    if not isinstance(mtype, str):
        raise ProtocolError("bad_field", "field `type` is missing or not a string", rid)
    if mtype not in CLIENT_MESSAGES:
        raise ProtocolError("unknown_type", f"unknown message type {mtype[:64]!r}; protocol {PROTOCOL_VERSION} knows "
                                            f"{', '.join(CLIENT_MESSAGES)}", rid)
    return msg


@dataclass(frozen=True)
class Decoded:
    """A frame decoded ahead of time (the server decodes large frames on a worker thread): the message,
    or the ProtocolError decoding raised. ServerConnection.receive accepts one in place of the bytes."""
    message: dict[str, Any] | None
    error: ProtocolError | None

    def unwrap(self) -> dict[str, Any]:
        if self.error is not None:  # a fresh exception: raising the stored one would tie its traceback to us
            raise ProtocolError(self.error.code, self.error.message, self.error.rid)
        assert self.message is not None
        return self.message


def predecode(frame: bytes | str, max_bytes: int) -> Decoded:
    """decode_frame as a value, for running on another thread."""
    try:
        return Decoded(decode_frame(frame, max_bytes), None)
    except ProtocolError as exc:
        return Decoded(None, exc.with_traceback(None))  # the traceback would keep the frame's bytes alive


def readable_rid(msg: dict[str, Any]) -> int | None:
    """The message's `rid` if it is a valid one (an int in range, not a bool), else None: the only
    rid an error may echo before the message is fully validated."""
    rid = msg.get("rid")
    return rid if isinstance(rid, int) and not isinstance(rid, bool) and 0 <= rid <= INT32_MAX else None


def _reject_ext(code, data):
    raise ProtocolError("bad_frame", "MessagePack extension types are not part of the protocol")


def validate(msg: dict[str, Any]) -> dict[str, Any]:
    """Check a decoded client message against its schema. Unknown fields are ignored (forward compatibility)."""
    out: dict[str, Any] = {"type": msg["type"]}
    fields = (RID,) + CLIENT_MESSAGES[msg["type"]]
    rid = None
    for f in fields:
        if f.name not in msg or msg[f.name] is None:
            if f.required:
                raise ProtocolError("bad_field", f"{msg['type']}: field `{f.name}` is required", rid)
            continue
        out[f.name] = _check(msg["type"], f, msg[f.name], rid)
        if f.name == "rid":
            rid = out["rid"]
    return out


def _check(mtype: str, f: Field, v: Any, rid: int | None) -> Any:
    where = f"{mtype}.{f.name}"

    def bad(why: str) -> ProtocolError:
        return ProtocolError("bad_field", f"{where}: {why}", rid)

    if f.kind == "int":
        if not isinstance(v, int) or isinstance(v, bool):
            raise bad(f"must be an integer, got {type(v).__name__}")
    elif f.kind == "number":
        if not isinstance(v, (int, float)) or isinstance(v, bool) or not math.isfinite(v):
            raise bad("must be a finite number")
    elif f.kind == "str":
        if not isinstance(v, str):
            raise bad(f"must be a string, got {type(v).__name__}")
        if f.max_len is not None and len(v) > f.max_len:
            raise bad(f"longer than {f.max_len} characters")
        if f.choices is not None and v not in f.choices:
            raise bad(f"must be one of {', '.join(f.choices)}")
    elif f.kind == "bin":
        if not isinstance(v, bytes):
            raise bad(f"must be MessagePack bin, got {type(v).__name__}")
    elif f.kind == "gaze_samples":   # the samples themselves: omokage.gaze.parse_samples, one by one
        if not isinstance(v, list) or not v:
            raise bad("must be a non-empty array of samples")
        if len(v) > (f.max_len or MAX_GAZE_SAMPLES):
            raise ProtocolError("too_large", f"{where}: at most {f.max_len or MAX_GAZE_SAMPLES} samples per batch; "
                                             "send smaller batches more often", rid)
    elif f.kind == "bool":
        if not isinstance(v, bool):
            raise bad(f"must be true or false, got {type(v).__name__}")
    elif f.kind == "number_list":
        if not isinstance(v, list) or not v:
            raise bad("must be a non-empty array of numbers")
        if f.max_len is not None and len(v) > f.max_len:
            raise ProtocolError("too_large", f"{where}: at most {f.max_len} numbers per message; send long strokes "
                                             "in pieces with `append`", rid)
        if not all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in v):
            raise bad("must be an array of numbers")
    elif f.kind == "int_list":
        if not isinstance(v, list) or not all(isinstance(x, int) and not isinstance(x, bool) for x in v):
            raise bad("must be an array of integers")
        if f.max_len is not None and len(v) != f.max_len:
            raise bad(f"must hold exactly {f.max_len} integers")
    elif f.kind == "map_list":
        if not isinstance(v, list) or not v or not all(isinstance(x, dict) for x in v):
            raise bad("must be a non-empty array of maps")
        if f.max_len is not None and len(v) > f.max_len:
            raise bad(f"at most {f.max_len} entries")
    elif f.kind == "answer_list":
        if not isinstance(v, list) or not v:
            raise bad("must be a non-empty array of {item, value} maps")
        if len(v) > (f.max_len or MAX_ANSWERS):
            raise ProtocolError("too_large", f"{where}: at most {f.max_len or MAX_ANSWERS} answers", rid)
        seen = set()
        for n, a in enumerate(v):
            if not isinstance(a, dict) or not isinstance(a.get("item"), str) or not 0 < len(a["item"]) <= 64:
                raise bad(f"entry {n} must be a map with `item` (a string of 1 to 64 characters)")
            value = a.get("value")
            if isinstance(value, bool) or not isinstance(value, (int, str)):
                raise bad(f"entry {n} ({a['item'][:64]!r}): `value` must be an integer or a string")
            if isinstance(value, str) and len(value) > MAX_ANSWER_CHARS:
                raise bad(f"entry {n} ({a['item'][:64]!r}): longer than {MAX_ANSWER_CHARS} characters")
            if isinstance(value, int) and not -INT32_MAX <= value <= INT32_MAX:
                raise bad(f"entry {n} ({a['item'][:64]!r}): out of range")
            if a["item"] in seen:
                raise bad(f"item {a['item'][:64]!r} is answered twice")
            seen.add(a["item"])
        v = [{"item": a["item"], "value": a["value"]} for a in v]
    elif f.kind == "interval_list":   # [[index, t_start, t_end], ...]: what calibrate.end says was shown when
        if not isinstance(v, list) or not v:
            raise bad("must be a non-empty array of [target index, t_start, t_end]")
        if f.max_len is not None and len(v) > f.max_len:
            raise ProtocolError("too_large", f"{where}: at most {f.max_len} intervals", rid)
        for n, x in enumerate(v):
            if not (isinstance(x, list) and len(x) == 3 and isinstance(x[0], int) and not isinstance(x[0], bool)
                    and x[0] >= 0 and all(isinstance(t, (int, float)) and not isinstance(t, bool)
                                          and math.isfinite(t) for t in x[1:]) and x[1] < x[2]):
                raise bad(f"entry {n} must be [target index ≥ 0, t_start, t_end] with finite times, start < end")
    elif f.kind == "str_list":
        if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
            raise bad("must be an array of strings")
        if not v:
            raise bad("must not be empty")
        if f.max_len is not None and len(v) > f.max_len:
            raise ProtocolError("too_large", f"{where}: at most {f.max_len} entries per request", rid)
    if f.kind in ("int", "number"):
        if f.min is not None and v < f.min or f.max is not None and v > f.max:
            show = (lambda x: f"{int(x):d}") if f.kind == "int" else (lambda x: f"{x:g}")   # 2147483647, not 2.14748e+09
            if f.min is None:
                raise bad(f"must be at most {show(f.max)}")
            if f.max is None:
                raise bad(f"must be at least {show(f.min)}")
            raise bad(f"must be between {show(f.min)} and {show(f.max)}")
    return v


# --- server messages: constructors keep field order canonical ---------------------------------

def server_message(mtype: str, rid: int | None = None, **fields: Any) -> dict[str, Any]:
    """A server message in canonical field order: `type`, then `rid` when replying to one, then fields."""
    message: dict[str, Any] = {"type": mtype}
    if rid is not None:
        message["rid"] = rid
    message.update(fields)
    return message


def error(code: str, message: str, rid: int | None = None) -> dict[str, Any]:
    return server_message("error", rid, code=code, message=message)


def texture_map(tex) -> dict[str, Any]:
    return {"hash": tex.hash, "format": tex.format, "width": tex.width, "height": tex.height, "data": tex.data}
