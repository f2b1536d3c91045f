"""Messages in and out, as the store keeps them: the fields of the message, with every bin replaced by its length,
tokens and participant codes left out, textures reduced to their hash and size, candidates to ids and scores."""

from __future__ import annotations

from typing import Any

# fields never stored: secrets and personal codes (the session's participant is linked by id instead)
PRIVATE_FIELDS = frozenset({"token", "participant", "resume"})   # resume: v1.7's resume token, a secret


def _plain(value: Any) -> Any:
    if isinstance(value, (bytes, bytearray, memoryview)):
        return {"$bin": len(value)}
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def incoming(msg: dict[str, Any]) -> dict[str, Any]:
    if msg.get("type") == "gaze.batch":   # validated: arrays of numbers and strings, no bin; not walked sample by sample
        return {"samples": msg["samples"]}
    return {k: _plain(v) for k, v in msg.items() if k not in PRIVATE_FIELDS and k not in ("type", "rid")}


def outgoing(msg: dict[str, Any]) -> dict[str, Any]:
    mtype = msg.get("type")
    if mtype == "texture":
        return {"hash": msg.get("hash"), "format": msg.get("format"), "bytes": len(msg.get("data") or b"")}
    if mtype == "candidates":
        out = {"step": msg.get("step"), "algorithm": msg.get("algorithm"), "policy": msg.get("policy"),
               "items": [it["id"] for it in msg.get("items", ())]}
        if msg.get("items") and msg["items"][0].get("probability") is not None:
            out["probability"] = [it.get("probability") for it in msg["items"]]
        if "trial" in msg:
            out["trial"] = _plain(msg["trial"])
        return out
    if mtype == "welcome" and "resume" in msg:   # v1.7: the resume token is a secret; keep only how long it lasts
        msg = {**msg, "resume": {"ttl_s": msg["resume"].get("ttl_s")}}
    return {k: _plain(v) for k, v in msg.items() if k not in ("type", "rid", "data")}
