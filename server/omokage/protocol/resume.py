"""Selections that outlive their connection (protocol v1.7), so a headset whose Wi-Fi dropped, that slept, or whose
page reloaded goes on from the grid it was showing instead of starting over.

Each v1.7 connection outside a study is given a secret resume token in `welcome.resume`. The keeper maps tokens to the
connection that holds the selection: live while it is connected, detached for `ttl_s` after it went away. A `hello`
that brings the token claims that connection's state for the new one; the token is spent, and the new welcome
carries a fresh one (the spent one still reaches the selection until the client is heard from on the new
connection: that welcome may have been lost with the link). Two clients cannot share a selection. Pure: it keeps no
sockets and no clock (times are passed in), like the connection it serves.
"""

from __future__ import annotations

import secrets
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

RESUME_TTL_S = 600.0      # how long a selection waits for its client after a disconnect (a headset taken off for
                          # a coffee comes back; a session nobody returns to does not stay forever)
MAX_DETACHED = 512        # detached selections kept at most, the oldest dropped first, so memory stays bounded
                          # whatever the clients do
DETACHED_BYTES = 256 * 2**20   # and at most about this much of their beliefs: a belief policy keeps ~24 bytes a face
BELIEF_BYTES_PER_ITEM = 24     # (4 hypotheses' float32 log-posteriors and a float64 posterior; 2.4 MB at 100k faces)
TOKEN_BYTES = 16          # 128 random bits: guessing one is hopeless, so a wrong token is not counted as an attack


@dataclass
class _Kept:
    owner: Any                      # the ServerConnection holding the state (live or gone)
    detached_at: float | None = None


def max_detached_for(n_items: int) -> int:
    """How many lost selections to keep for a catalog of n_items: MAX_DETACHED, fewer for a catalog so large that
    their beliefs would pass DETACHED_BYTES (111 at 100k faces), never under 16."""
    return int(max(16, min(MAX_DETACHED, DETACHED_BYTES // max(1, BELIEF_BYTES_PER_ITEM * int(n_items)))))


class SessionKeeper:
    def __init__(self, ttl_s: float = RESUME_TTL_S, max_detached: int = MAX_DETACHED):
        if ttl_s <= 0 or max_detached < 0:
            raise ValueError("ttl_s must be positive and max_detached non-negative")
        self.ttl_s = float(ttl_s)
        self.max_detached = int(max_detached)
        self._live: dict[str, _Kept] = {}
        self._detached: OrderedDict[str, _Kept] = OrderedDict()   # oldest detach first
        # a presented token -> the token issued to the connection that went on with it, until that connection hears
        # from its client: the welcome carrying the new token may be lost with the link (a flaky Wi-Fi's reconnect dies
        # mid-handshake), and the client then presents the old one again
        self._handed: dict[str, str] = {}
        self._handed_to: dict[str, str] = {}
        # selections a previous run of the server left in its event log, by the hash of their token
        # (omokage.protocol.restore): claimed once, by a client presenting that token
        self._logged: dict[str, Any] = {}
        self.resumed = 0
        self.expired = 0
        self.restored = 0         # selections of a previous run that went on (counted by the connection that took one)

    def __len__(self) -> int:
        return len(self._live) + len(self._detached)

    @property
    def detached(self) -> int:
        return len(self._detached)

    def issue(self, owner: Any) -> str:
        """A fresh token for `owner`'s state (a connection that has just said hello)."""
        token = secrets.token_hex(TOKEN_BYTES)
        self._live[token] = _Kept(owner)
        return token

    def detach(self, token: str | None, now: float) -> None:
        """The owner of `token` disconnected: its state waits ttl_s for its client."""
        kept = self._live.pop(token, None) if token is not None else None
        if kept is None:
            return
        kept.detached_at = float(now)
        self._detached[token] = kept
        self.expire(now)
        while len(self._detached) > self.max_detached:
            dropped, _ = self._detached.popitem(last=False)
            self._drop_handover(dropped)
            self.expired += 1

    def owner(self, token: str, now: float) -> Any | None:
        """The connection holding `token`'s state (live or gone), without spending the token; None when unknown."""
        self.expire(now)
        token = self._handed.get(token, token)
        kept = self._live.get(token) or self._detached.get(token)
        return kept.owner if kept is not None else None

    def forget(self, token: str | None) -> None:
        """Its owner left with nothing to resume (no selection, or a decided one): keep nothing for it."""
        if token is not None:
            self._live.pop(token, None)
            self._detached.pop(token, None)
            self._drop_handover(token)

    def claim(self, token: str, now: float) -> Any | None:
        """The connection that holds `token`'s state (still connected or gone), or None when the token is unknown,
        spent or expired. The token is spent (and so is a token handed over for it)."""
        self.expire(now)
        token = self._handed.get(token, token)
        kept = self._live.pop(token, None) or self._detached.pop(token, None)
        self._drop_handover(token)
        if kept is None:
            return None
        self.resumed += 1
        return kept.owner

    def load_logged(self, selections: dict[str, Any]) -> list[Any]:
        """The selections a previous run left (resume key -> LoggedSelection, each with its `last_at`), at start.
        At most max_detached of them, the latest heard of first, like the lost selections of this run. Returns the
        selections kept (each once, though several keys may reach one)."""
        latest = sorted(selections.items(), key=lambda kv: kv[1].last_at, reverse=True)[:self.max_detached]
        self._logged = dict(latest)
        return list({id(sel): sel for sel in self._logged.values()}.values())

    def claim_logged(self, token: str, now: float) -> Any | None:
        """The logged selection `token` was given for by a previous run, if it is still within ttl_s of when it was
        last heard of; spent either way."""
        from omokage.protocol.restore import resume_key
        logged = self._logged.pop(resume_key(token), None)
        for key in [k for k, v in self._logged.items() if v is logged]:   # a handed-over token's: spent with it
            del self._logged[key]
        if logged is None or logged.last_at <= float(now) - self.ttl_s:
            return None
        return logged

    def hand_over(self, presented: str, issued: str) -> None:
        """`presented` went on as `issued` (the new connection's token): until `heard(issued)`, presenting `presented`
        again reaches the same selection."""
        self._handed[presented] = issued
        self._handed_to[issued] = presented

    def heard(self, issued: str | None) -> None:
        """The connection holding `issued` heard from its client after its welcome: the client has the new token."""
        presented = self._handed_to.pop(issued, None) if issued is not None else None
        if presented is not None:
            self._handed.pop(presented, None)

    def _drop_handover(self, issued: str) -> None:
        presented = self._handed_to.pop(issued, None)
        if presented is not None:
            self._handed.pop(presented, None)

    def expire(self, now: float) -> None:
        limit = float(now) - self.ttl_s
        while self._detached:
            token, kept = next(iter(self._detached.items()))
            if kept.detached_at > limit:
                break
            del self._detached[token]
            self._drop_handover(token)
            self.expired += 1

    def stats(self, now: float | None = None) -> dict[str, int]:
        if now is not None:   # an idle server drops what expired when asked, not only at the next detach or claim
            self.expire(now)
        if now is not None:
            self._logged = {k: v for k, v in self._logged.items() if v.last_at > float(now) - self.ttl_s}
        return {"live": len(self._live), "detached": len(self._detached), "resumed": self.resumed,
                "expired": self.expired, "from_log": len(self._logged), "restored": self.restored}
