"""A token bucket: the per-connection message budget and the per-source gaze sample budget share it."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class TokenBucket:
    """`rate` tokens a second, at most `burst` saved up; it starts full at the first `take`."""

    rate: float
    burst: float
    tokens: float = -1.0
    last: float | None = None

    def take(self, now: float, n: int = 1) -> int:
        """Takes up to n whole tokens; returns how many it could (0 when the budget is spent)."""
        if self.last is None:
            self.tokens, self.last = self.burst, now
        self.tokens = min(self.burst, self.tokens + max(0.0, now - self.last) * self.rate)
        self.last = now
        got = min(n, int(self.tokens))
        self.tokens -= got
        return got
