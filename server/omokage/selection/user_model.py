"""The user-response model's parameters, fitted by maximum likelihood from logged sessions.

The belief's `ChoiceTerm` says a person picks face j of a grid with probability ∝ exp(−d(j, target) / T). How noisy
people are, T, differs per feature space (distances in each agree with what people see to a different degree) and
per population, so it is fitted from what they did: in every logged session that ended in a decision, the decided face
stands for the target (PicHunter's assumption), and every `choose` before it is one observation of a pick among the
grid then on screen. T maximises the log-likelihood of those picks (a one-dimensional search over log T).

`omokage fit user-model EVENTS... --catalog CATALOG --out MODELS` reads the server's JSON-lines event logs and saves
MODELS/user-model/VERSION/config.json (JSON: no pickle); `omokage serve` passes the fitted temperatures to the belief
policies. Without one, `DEFAULT_CHOICE_TEMPERATURE` is used.
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

import numpy as np

from omokage.errors import UserError
from omokage.selection.belief import DEFAULT_CHOICE_TEMPERATURE

USER_MODEL_NAME = "user-model"
TEMPERATURE_RANGE = (0.01, 20.0)


@dataclass(frozen=True)
class ChoiceRecord:
    """One logged pick: the grid on screen, the face picked, and the face finally decided on (the target's proxy)."""

    algorithm: str
    shown: tuple[int, ...]
    chosen: int
    target: int


@dataclass
class EventReadReport:
    files: int = 0
    lines: int = 0
    sessions: int = 0
    decided_sessions: int = 0
    problems: list[str] = field(default_factory=list)   # "file:line: reason", one per bad line


def read_choice_records(paths: Iterable[str | os.PathLike]) -> tuple[list[ChoiceRecord], EventReadReport]:
    """Parse the server's event logs (JSON lines: start / choose / skip / decide ... per session_id). Corrupt or
    truncated lines are reported in `report.problems` and skipped, never raised."""
    report = EventReadReport()
    sessions: dict[str, list[dict]] = {}
    for path in paths:
        path = Path(path)
        report.files += 1
        try:
            fh = open(path, "rb")
        except OSError as exc:
            report.problems.append(f"{path}: cannot read ({exc.strerror or exc})")
            continue
        with fh:
            for n, raw in enumerate(fh, 1):
                report.lines += 1
                try:
                    rec = json.loads(raw.decode("utf-8"))
                except (UnicodeDecodeError, ValueError) as exc:
                    report.problems.append(f"{path}:{n}: not a JSON object ({type(exc).__name__}); skipped")
                    continue
                if not isinstance(rec, dict) or not isinstance(rec.get("session_id"), str):
                    report.problems.append(f"{path}:{n}: not a session event (no session_id); skipped")
                    continue
                if rec.get("event") in ("start", "choose", "skip", "decide"):
                    sessions.setdefault(rec["session_id"], []).append({**rec, "_where": f"{path}:{n}"})
    records: list[ChoiceRecord] = []
    for events in sessions.values():
        # a connection may run several sessions in a row: split at each start
        runs: list[list[dict]] = []
        for ev in events:
            if ev["event"] == "start" or not runs:
                runs.append([])
            runs[-1].append(ev)
        for run in runs:
            report.sessions += 1
            decided = [e for e in run if e["event"] == "decide"]
            if not decided or run[0]["event"] != "start":
                continue
            target = decided[-1].get("item")
            if not _is_id(target):
                report.problems.append(f"{decided[-1]['_where']}: decide without an item id; session skipped")
                continue
            report.decided_sessions += 1
            grid: list[int] | None = None
            for ev in run:
                cands = ev.get("candidates")
                if ev["event"] == "choose" and grid is not None:
                    if not (_is_id(ev.get("item")) and ev["item"] in grid and len(grid) >= 2):
                        report.problems.append(f"{ev['_where']}: choose of a face not on the logged grid; skipped")
                    elif int(target) not in grid:
                        # a grid that already held the decided face is not a pick in search of it (the user was
                        # looking at it and chose, say, to see more like it): the choice model does not describe it
                        records.append(ChoiceRecord(str(ev.get("algorithm")), tuple(grid), int(ev["item"]),
                                                    int(target)))
                if isinstance(cands, list) and cands and all(_is_id(c) for c in cands):
                    grid = [int(c) for c in cands]
    return records, report


def _is_id(x) -> bool:
    return isinstance(x, int) and not isinstance(x, bool) and x >= 0


def choice_log_likelihood(space, records: list[ChoiceRecord], temperature: float) -> float:
    """Σ log P(chosen | grid, target) under the softmax user at `temperature` (distances in the space's units)."""
    shown, chosen_idx, targets = _arrays(space, records)
    return float(_loglik(_distances(space, shown, targets), chosen_idx, temperature))


def _arrays(space, records):
    n = space.n_items
    ok = [r for r in records if all(0 <= i < n for i in r.shown) and 0 <= r.target < n]
    width = max(len(r.shown) for r in ok)
    shown = np.full((len(ok), width), -1, dtype=np.int64)
    for k, r in enumerate(ok):
        shown[k, :len(r.shown)] = r.shown
    chosen_idx = np.array([r.shown.index(r.chosen) for r in ok])
    targets = np.array([r.target for r in ok])
    return shown, chosen_idx, targets


def _distances(space, shown: np.ndarray, targets: np.ndarray) -> np.ndarray:
    x = space.features.astype(np.float64)
    d = np.linalg.norm(x[np.maximum(shown, 0)] - x[targets][:, None, :], axis=2) / space.distance_unit
    d[shown < 0] = np.inf   # short grids (the catalog ran out) are padded
    return d


def _loglik(d: np.ndarray, chosen_idx: np.ndarray, temperature: float) -> float:
    a = -d / temperature
    m = a.max(axis=1, keepdims=True)
    lse = m[:, 0] + np.log(np.exp(a - m).sum(axis=1))
    return float((a[np.arange(len(a)), chosen_idx] - lse).sum())


def fit_temperature(space, records: list[ChoiceRecord]) -> tuple[float, float]:
    """Maximum-likelihood temperature for `records` in `space`: (T, mean log-likelihood per pick). Golden-section
    search on log T within TEMPERATURE_RANGE (the likelihood is unimodal in T for a fixed set of picks in practice;
    a coarse grid first guards against a local optimum)."""
    if not records:
        raise UserError("no logged picks to fit a temperature from (sessions must include choose and decide)")
    shown, chosen_idx, targets = _arrays(space, records)
    d = _distances(space, shown, targets)
    f = lambda logt: -_loglik(d, chosen_idx, math.exp(logt))   # noqa: E731
    lo, hi = (math.log(t) for t in TEMPERATURE_RANGE)
    grid = np.linspace(lo, hi, 25)
    vals = [f(g) for g in grid]
    k = int(np.argmin(vals))
    a, b = grid[max(k - 1, 0)], grid[min(k + 1, len(grid) - 1)]
    phi = (math.sqrt(5) - 1) / 2
    c, e = b - phi * (b - a), a + phi * (b - a)
    fc, fe = f(c), f(e)
    for _ in range(60):
        if fc < fe:
            b, e, fe = e, c, fc
            c = b - phi * (b - a)
            fc = f(c)
        else:
            a, c, fc = c, e, fe
            e = a + phi * (b - a)
            fe = f(e)
    t = math.exp((a + b) / 2)
    return t, -f(math.log(t)) / len(chosen_idx)


@dataclass
class UserModel:
    """Fitted choice temperatures per feature space (algorithm)."""

    temperatures: dict[str, float]
    picks: dict[str, int] = field(default_factory=dict)
    log_likelihood_per_pick: dict[str, float] = field(default_factory=dict)
    catalog_fingerprint: str | None = None

    def policy_params(self, algorithm: str) -> dict:
        t = self.temperatures.get(algorithm)
        return {"temperature": t} if t is not None else {}

    def save(self, repository: str | os.PathLike) -> Path:
        root = Path(repository) / USER_MODEL_NAME
        version = max((int(p.name) for p in root.glob("*") if p.name.isdigit()), default=0) + 1
        final = root / str(version)
        tmp = root / f".{version}.partial-{os.getpid()}"
        tmp.mkdir(parents=True)
        config = {"name": USER_MODEL_NAME, "version": version, "model": "softmax choice (Luce), distances in median "
                  "units of each feature space", "temperatures": self.temperatures, "picks": self.picks,
                  "log_likelihood_per_pick": self.log_likelihood_per_pick,
                  "default_temperature": DEFAULT_CHOICE_TEMPERATURE,
                  "catalog": {"fingerprint": self.catalog_fingerprint},
                  "saved_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        (tmp / "config.json").write_text(json.dumps(config, indent=2) + "\n")
        os.replace(tmp, final)
        return final

    @classmethod
    def load_latest(cls, repository: str | os.PathLike, catalog_fingerprint: str | None = None) -> "UserModel | None":
        """The newest saved user model in `repository` fitted on this catalog, or None."""
        root = Path(repository) / USER_MODEL_NAME
        versions = sorted((int(p.name) for p in root.glob("*") if p.name.isdigit() and (p / "config.json").is_file()),
                          reverse=True)
        for v in versions:
            try:
                cfg = json.loads((root / str(v) / "config.json").read_text())
            except (OSError, ValueError):
                continue
            if catalog_fingerprint is not None and cfg.get("catalog", {}).get("fingerprint") != catalog_fingerprint:
                continue
            temps = {k: float(t) for k, t in cfg.get("temperatures", {}).items()
                     if isinstance(t, (int, float)) and TEMPERATURE_RANGE[0] <= t <= TEMPERATURE_RANGE[1]}
            return cls(temps, cfg.get("picks", {}), cfg.get("log_likelihood_per_pick", {}),
                       cfg.get("catalog", {}).get("fingerprint"))
        return None


def fit_user_model(engine, records: list[ChoiceRecord], min_picks: int = 20) -> UserModel:
    """One temperature per algorithm with at least `min_picks` logged picks."""
    by_alg: dict[str, list[ChoiceRecord]] = {}
    for r in records:
        by_alg.setdefault(r.algorithm, []).append(r)
    temps, picks, lls = {}, {}, {}
    for alg, recs in sorted(by_alg.items()):
        if alg not in engine.models or len(recs) < min_picks:
            continue
        t, ll = fit_temperature(engine.space(alg), recs)
        temps[alg], picks[alg], lls[alg] = round(t, 6), len(recs), round(ll, 6)
    return UserModel(temps, picks, lls, engine.catalog.fingerprint())
