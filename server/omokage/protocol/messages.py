"""Protocol v1 message schemas, encoding and validation (see docs/protocol.md).

The schemas here are the single source of truth: the validator uses them, and
`tests/test_protocol_doc.py` checks that docs/protocol.md lists every message and field.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import msgpack

PROTOCOL_VERSION = 1
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
    kind: str                       # int | number | str | bin | str_list
    required: bool = True
    min: float | None = None
    max: float | None = None
    max_len: int | None = None      # characters (str), bytes (bin), entries (list)
    choices: tuple[str, ...] | None = None
    doc: str = ""


RID = Field("rid", "int", False, 0, INT32_MAX, doc="request id, echoed in the reply")

CLIENT_MESSAGES: dict[str, tuple[Field, ...]] = {
    "hello": (
        Field("protocol", "int", True, 0, INT32_MAX, doc="protocol version the client speaks (1)"),
        Field("client", "str", True, max_len=128, doc="client name and version, e.g. `omokage-unity/0.1.0`"),
        Field("token", "str", False, max_len=256, doc="access token when the server requires one"),
    ),
    "start": (
        Field("algorithm", "str", True, max_len=32, doc="one of `welcome.algorithms`"),
        Field("init", "str", True, choices=("random", "image"), doc="`random` or `image`"),
        Field("image", "bin", False, doc="encoded image (JPEG, PNG, WebP, ...) when init is `image`"),
        Field("seed", "int", False, 0, INT32_MAX, doc="makes a random start repeatable"),
    ),
    "choose": (Field("id", "int", True, 0, INT32_MAX, doc="item id from the current candidates"),),
    "decide": (Field("id", "int", True, 0, INT32_MAX, doc="item id from the current candidates"),),
    # the count is bounded by the connection's Limits.max_hashes_per_request (announced in welcome)
    "texture.get": (Field("hashes", "str_list", True, doc="1 to max_hashes_per_request texture hashes"),),
    "ping": (Field("t", "number", True, doc="client clock, any finite number; echoed"),),
}


def encode(message: dict[str, Any]) -> bytes:
    """Canonical encoding: the map in insertion order (`type` first), minimal ints, float64 floats."""
    return msgpack.packb(message, use_bin_type=True)


def decode_frame(frame: bytes | str, max_bytes: int) -> dict[str, Any]:
    """Bytes of one WebSocket message → a map with a str `type`, or ProtocolError."""
    if isinstance(frame, str):
        raise ProtocolError("bad_frame", "text frames are not part of the protocol; send binary MessagePack frames")
    if len(frame) > max_bytes:
        raise ProtocolError("too_large", f"frame is {len(frame)} bytes, over the {max_bytes}-byte limit")
    try:
        msg = msgpack.unpackb(frame, raw=False, strict_map_key=True, use_list=True,
                              max_bin_len=max_bytes, max_str_len=max_bytes, max_array_len=4096, max_map_len=64,
                              ext_hook=_reject_ext)
    except ProtocolError:
        raise
    except msgpack.ExtraData:
        raise ProtocolError("bad_frame", "frame holds more than one MessagePack object") from None
    except Exception as exc:
        raise ProtocolError("bad_frame", f"frame is not valid MessagePack ({type(exc).__name__})") from None
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
    elif f.kind == "str_list":
        if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
            raise bad("must be an array of strings")
        if not v:
            raise bad("must not be empty")
        if f.max_len is not None and len(v) > f.max_len:
            raise ProtocolError("too_large", f"{where}: at most {f.max_len} entries per request", rid)
    if f.kind in ("int", "number"):
        if f.min is not None and v < f.min or f.max is not None and v > f.max:
            raise bad(f"must be between {f.min:g} and {f.max:g}")
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
