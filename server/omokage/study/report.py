"""A study's data out of the store: export (CSV, Parquet), the report (HTML + markdown with plots and statistics),
and deleting one participant's data everywhere.

Participants appear only by pseudonym (P01, P02, ...): their codes never leave the store. Statistics come from
scipy.stats (Friedman; Wilcoxon signed-rank, its p exact for a few pairs without ties and its normal
approximation giving z for the matched-pairs r) and
statsmodels (linear mixed models with a random intercept per participant); the Holm adjustment of the post-hoc
p-values is omokage.bench.choice.holm. Likert answers are ordinal: medians and rank tests.
"""

from __future__ import annotations

import base64
import contextlib
import html
import io
import itertools
import json
import math
import os
import re
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from omokage.errors import UserError
from omokage.store import open_database
from omokage.store.db import stored_json
from omokage.store.schema import SESSION_TABLES
from omokage.study.definition import Study, read_study

ALPHA = 0.05
WILCOXON_MIN_N = 6   # pairs below which a two-sided signed-rank test cannot reach ALPHA (its smallest p: 2 / 2^n)


# --- reading a study ---------------------------------------------------------------------------------------------------

@dataclass
class StudyData:
    study: Study
    participants: list[dict[str, Any]]          # {id, pseudonym, order: [condition names]}
    trials: list[dict[str, Any]]                # every planned trial, with its outcome
    actions: list[dict[str, Any]]               # choose / skip / rate / decide of every trial, timed
    answers: list[dict[str, Any]]               # {pseudonym, participant, questionnaire, condition, item, kind, value}
    gaze: list[dict[str, Any]] = field(default_factory=list)   # one per grid looked at: {condition, dwell_s, ...}
    notes: list[str] = field(default_factory=list)

    @property
    def conditions(self) -> list[str]:
        return [c.name for c in self.study.conditions]


def read_study_data(db: str | Path, name: str) -> StudyData:
    conn = open_database(db, create=False)
    try:
        study_id, study = read_study(conn, name)
        cond_names = {cid: n for cid, n in conn.execute("SELECT id, name FROM conditions WHERE study_id = ?",
                                                         (study_id,))}
        participants, trials = [], []
        block_condition: dict[tuple[int, str], str] = {}
        for pid, pseudonym in conn.execute("SELECT id, pseudonym FROM participants WHERE study_id = ? ORDER BY idx",
                                           (study_id,)).fetchall():
            order: list[str] = []
            for row in conn.execute(
                    "SELECT id, idx, condition_id, practice, task, target, started_at, completed_at, decided_item, "
                    "steps, resumes FROM trials WHERE participant_id = ? ORDER BY idx", (pid,)).fetchall():
                tid, idx, cid, practice, task, target, started, completed, item, steps, resumes = row
                cond = cond_names[cid]
                if not practice and cond not in order:
                    order.append(cond)
                    block_condition[(pid, f"block-{len(order)}")] = cond
                trials.append({"trial_id": tid, "participant": pid, "pseudonym": pseudonym, "trial": idx + 1,
                               "condition": cond, "practice": bool(practice), "task": task, "target": target,
                               "started_at": started, "completed_at": completed, "decided_item": item,
                               "steps": steps, "resumes": resumes,
                               "found_target": (None if target is None or item is None else int(item == target))})
            participants.append({"id": pid, "pseudonym": pseudonym, "order": order})
        by_trial = {t["trial_id"]: t for t in trials}
        actions = []
        shown_at: dict[int, float] = {}
        ids = tuple(by_trial)
        if ids:
            marks = ",".join("?" * len(ids))
            for seq, trial_id, kind, at, body in conn.execute(
                    f"SELECT seq, trial_id, kind, at, body FROM events WHERE direction = 'log' AND trial_id IN "
                    f"({marks}) AND kind IN ('start', 'trial_resume', 'choose', 'skip', 'rate', 'decide') ORDER BY seq",
                    ids):
                rec = stored_json(body, db, f"events seq {seq}")
                t = by_trial[trial_id]
                if kind in ("choose", "skip", "rate", "decide"):
                    since = at - shown_at[trial_id] if trial_id in shown_at else None
                    step = rec.get("step")
                    if kind in ("choose", "skip") and isinstance(step, int):
                        step -= 1     # the event's step is the grid it led to; the action was taken on the one before
                    actions.append({"pseudonym": t["pseudonym"], "trial": t["trial"], "condition": t["condition"],
                                    "practice": t["practice"], "action": kind, "step": step,
                                    "item": rec.get("item"), "rating": rec.get("rating"), "at": at,
                                    "seconds": since})
                if kind in ("start", "trial_resume", "choose", "skip"):
                    shown_at[trial_id] = at     # a new grid is on screen from now (a resume shows it again)
        qkinds = {q.id: q.kind for q in study.questions}
        answers = []
        pseudonyms = {p["id"]: p["pseudonym"] for p in participants}
        codes = [c for (c,) in conn.execute("SELECT code FROM participants WHERE study_id = ?", (study_id,)) if c]
        for answer_id, pid, questionnaire, item, value in conn.execute(
                "SELECT a.id, a.participant_id, a.questionnaire, a.item, a.value FROM answers a JOIN participants p "
                "ON p.id = a.participant_id WHERE p.study_id = ? ORDER BY a.id", (study_id,)):
            value = stored_json(value, db, f"answers id {answer_id}")
            if qkinds.get(item) == "text" and isinstance(value, str):
                value = mask_codes(value, codes)      # a participant who typed a code: it stays in the store
            answers.append({"pseudonym": pseudonyms[pid], "participant": pid, "questionnaire": questionnaire,
                            "condition": block_condition.get((pid, questionnaire)), "item": item,
                            "kind": qkinds.get(item), "value": value})
        gaze = []
        if ids:   # each grid's gaze record (omokage.gaze.tracker.StepGaze.to_log, logged by the connection)
            for seq, trial_id, body in conn.execute(
                    f"SELECT seq, trial_id, body FROM events WHERE direction = 'log' AND kind = 'gaze' AND trial_id "
                    f"IN ({marks}) ORDER BY seq", ids):
                rec = stored_json(body, db, f"events seq {seq}")
                t = by_trial[trial_id]
                dwell = rec.get("dwell_s")
                if not isinstance(dwell, list) or not dwell:
                    continue
                items = rec.get("items") or []
                chosen = rec.get("chosen")
                gaze.append({"pseudonym": t["pseudonym"], "condition": t["condition"], "practice": t["practice"],
                             "step": rec.get("step"), "ended_by": rec.get("ended_by"), "source": rec.get("source"),
                             "dwell_s": [float(x or 0.0) for x in dwell],
                             "fixations": [int(x) for x in rec.get("fixation_count") or [0] * len(dwell)],
                             "chosen_panel": items.index(chosen) if chosen in items else None})
        return StudyData(study, participants, trials, actions, answers, gaze)
    finally:
        conn.close()


# --- export ------------------------------------------------------------------------------------------------------------

# each exported table's columns, in order: a table with no rows yet (no trial begun, nothing answered) still gets its
# header, so pandas.read_csv and other readers see the columns instead of an empty file
EXPORT_COLUMNS = {
    "conditions": ("condition", "label", "model", "policy", "start"),
    "participants": ("pseudonym", "order", "trials_completed"),
    "trials": ("pseudonym", "trial", "condition", "practice", "task", "target", "started_at", "completed_at",
               "decided_item", "steps", "resumes", "found_target"),
    "actions": ("pseudonym", "trial", "condition", "practice", "action", "step", "item", "rating", "at", "seconds"),
    "answers": ("pseudonym", "questionnaire", "condition", "item", "kind", "value"),
}


CODE_MASK = "[participant code]"


def mask_codes(text: str, codes) -> str:
    """`text` with every participant code in it (any case, standing on its own: not inside a longer word or number)
    replaced by CODE_MASK, in one pass: exports and reports never show one."""
    codes = sorted({c for c in codes if c}, key=len, reverse=True)
    if not codes:
        return text
    pattern = r"(?<![A-Za-z0-9_-])(?:" + "|".join(map(re.escape, codes)) + r")(?![A-Za-z0-9_-])"
    return re.sub(pattern, CODE_MASK, text, flags=re.IGNORECASE)


def export_tables(data: StudyData) -> dict[str, list[dict[str, Any]]]:
    cond = data.study.conditions
    tables = {
        "conditions": [{"condition": c.name, "label": c.label, "model": c.model, "policy": c.policy, "start": c.start}
                       for c in cond],
        "participants": [{"pseudonym": p["pseudonym"], "order": " > ".join(p["order"]),
                          "trials_completed": sum(1 for t in data.trials if t["participant"] == p["id"]
                                                  and t["completed_at"] is not None)}
                         for p in data.participants],
        "trials": data.trials,
        "actions": data.actions,
        "answers": data.answers,
    }
    # each row as its table's columns: internal ids (participant, trial_id) are not among them
    return {name: [{c: r.get(c) for c in EXPORT_COLUMNS[name]} for r in rows] for name, rows in tables.items()}


def export_study(db: str | Path, name: str, out: str | Path, fmt: str = "csv") -> list[Path]:
    """One file per table (conditions, participants, trials, actions, answers) under `out`."""
    data = read_study_data(db, name)
    tables = export_tables(data)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    if fmt == "parquet":
        try:
            import pyarrow as pa
            import pyarrow.parquet as pq
        except ImportError:
            raise UserError("--format parquet needs pyarrow, which is not installed: `pip install pyarrow`, or use "
                            "--format csv") from None
        for tname, rows in tables.items():
            path = out / f"{tname}.parquet"
            # one type per column: an answer's value is a Likert number, a condition's name or free text, so it is
            # written as text (as in the CSV); the other columns hold one type each
            pq.write_table(pa.table({c: [_cell(r[c]) if c != "value" or r[c] is None else str(r[c]) for r in rows]
                                     for c in EXPORT_COLUMNS[tname]}), path)
            paths.append(path)
        return paths
    import csv
    for tname, rows in tables.items():
        path = out / f"{tname}.csv"
        with open(path, "w", newline="", encoding="utf-8") as f:
            w = csv.DictWriter(f, fieldnames=EXPORT_COLUMNS[tname])
            w.writeheader()
            for r in rows:
                w.writerow({c: _cell(v) for c, v in r.items()})
        paths.append(path)
    return paths


def _cell(v):
    return json.dumps(v, ensure_ascii=False) if isinstance(v, (list, dict)) else v


# --- statistics --------------------------------------------------------------------------------------------------------

def within_subjects(table: dict[str, dict[str, float]], conditions: list[str]) -> dict[str, Any]:
    """Friedman over the conditions (participants with a value in every condition), Kendall's W; pairwise Wilcoxon
    signed-rank tests, Holm-adjusted, with the matched-pairs r = |z| / sqrt(n)."""
    from scipy import stats

    from omokage.bench.choice import holm
    complete = [p for p, row in table.items() if all(c in row and row[c] is not None for c in conditions)]
    out: dict[str, Any] = {"n": len(complete), "conditions": conditions}
    if len(complete) < 2 or len(conditions) < 2:
        out["note"] = "too few participants with every condition for a test"
        return out
    X = np.array([[table[p][c] for c in conditions] for p in complete], dtype=float)
    out["medians"] = {c: float(np.median(X[:, j])) for j, c in enumerate(conditions)}
    if len(conditions) >= 3:
        if np.all(X == X[:, :1]):
            out["friedman"] = {"chi2": 0.0, "p": 1.0, "kendall_w": 0.0, "df": len(conditions) - 1}
        else:
            chi2, p = stats.friedmanchisquare(*X.T)
            out["friedman"] = {"chi2": float(chi2), "p": float(p), "df": len(conditions) - 1,
                               "kendall_w": float(chi2 / (len(complete) * (len(conditions) - 1)))}
    pairs = []
    for a, b in itertools.combinations(range(len(conditions)), 2):
        d = X[:, a] - X[:, b]
        row = {"a": conditions[a], "b": conditions[b], "n": int(np.count_nonzero(d)),
               "median_difference": float(np.median(d))}
        if np.count_nonzero(d) == 0:
            row.update(p=1.0, z=0.0, r=0.0)
        else:
            # z (for r) from the normal approximation; p exact where scipy can (few pairs, no ties): the
            # approximation's p is too small for a handful of participants (5 of 5 one way: 0.043, exactly 0.0625)
            z = float(getattr(stats.wilcoxon(X[:, a], X[:, b], zero_method="wilcox", method="approx"),
                              "zstatistic", 0.0))
            p = float(stats.wilcoxon(X[:, a], X[:, b], zero_method="wilcox", method="auto").pvalue)
            row.update(p=p, z=z, r=abs(z) / math.sqrt(len(complete)))
        pairs.append(row)
    for row, adj in zip(pairs, holm([r["p"] for r in pairs])):
        row["p_holm"] = float(adj)
    out["pairs"] = pairs
    return out


def mixed_effects(rows: list[tuple[str, str, float]], conditions: list[str], log: bool = False) -> dict[str, Any]:
    """A linear mixed model over every observation (not per-participant summaries): value ~ condition + a random
    intercept per participant (statsmodels MixedLM, REML), the first condition as the reference. Each other
    condition's fixed effect is its difference from the reference, with a 95% interval and a Wald p-value; with
    `log`, the model is of log(value) and effects are reported as ratios. `rows`: (participant, condition, value)."""
    import warnings

    rows = [(p, c, float(v)) for p, c, v in rows if c in conditions and v is not None and np.isfinite(v)
            and (v > 0 or not log)]
    present = [c for c in conditions if any(r[1] == c for r in rows)]
    participants = sorted({r[0] for r in rows})
    out: dict[str, Any] = {"n_observations": len(rows), "n_participants": len(participants),
                           "reference": present[0] if present else None, "log": log}
    if len(present) < 2 or len(participants) < 3 or len(rows) < len(present) + 3:
        out["note"] = "too few observations or participants for a mixed model"
        return out
    from statsmodels.regression.mixed_linear_model import MixedLM
    y = np.array([math.log(v) if log else v for _, _, v in rows])
    X = np.column_stack([np.ones(len(rows))] + [[1.0 if c == cond else 0.0 for _, c, _ in rows]
                                                for cond in present[1:]])
    groups = np.array([participants.index(p) for p, _, _ in rows])
    if np.ptp(y) == 0:
        out["note"] = "every observation has the same value: nothing to model"
        return out
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            fit = MixedLM(y, X, groups).fit(reml=True)
        except (np.linalg.LinAlgError, ValueError) as exc:
            out["note"] = f"the mixed model could not be fitted ({exc})"
            return out
    ci = np.asarray(fit.conf_int(alpha=0.05))
    effects = []
    for j, cond in enumerate(present[1:], start=1):
        est, lo, hi = float(fit.fe_params[j]), float(ci[j, 0]), float(ci[j, 1])
        row = {"condition": cond, "estimate": est, "lo": lo, "hi": hi, "p": float(fit.pvalues[j])}
        if log:
            row.update(ratio=math.exp(est), ratio_lo=math.exp(lo), ratio_hi=math.exp(hi))
        effects.append(row)
    out.update(intercept=float(fit.fe_params[0]), effects=effects,
               participant_sd=float(math.sqrt(max(float(np.asarray(fit.cov_re)[0, 0]), 0.0))),
               residual_sd=float(math.sqrt(fit.scale)), converged=bool(fit.converged),
               warnings=sorted({type(w.message).__name__ for w in caught}))
    return out


def summarise(data: StudyData) -> dict[str, Any]:
    conds = data.conditions
    main = [t for t in data.trials if not t["practice"] and t["completed_at"] is not None]
    steps = defaultdict(list)
    per_pc_steps: dict[str, dict[str, list]] = defaultdict(lambda: defaultdict(list))
    for t in main:
        steps[t["condition"]].append(t["steps"])
        per_pc_steps[t["pseudonym"]][t["condition"]].append(t["steps"])
    times = defaultdict(list)
    per_pc_times: dict[str, dict[str, list]] = defaultdict(lambda: defaultdict(list))
    for a in data.actions:
        if a["practice"] or a["action"] == "rate" or a["seconds"] is None:
            continue
        times[a["condition"]].append(a["seconds"])
        per_pc_times[a["pseudonym"]][a["condition"]].append(a["seconds"])
    all_steps = [s for c in conds for s in steps[c]]
    all_times = [s for c in conds for s in times[c]]
    summary: dict[str, Any] = {
        "participants": len(data.participants),
        "completed_participants": sum(1 for p in data.participants
                                      if all(t["completed_at"] is not None for t in data.trials
                                             if t["participant"] == p["id"])),
        "trials_completed": len(main),
        "resumed_trials": sum(1 for t in data.trials if t["resumes"] and not t["practice"]),   # practice not analysed
        "steps": {"median": _median(all_steps), "min": min(all_steps, default=None),
                  "max": max(all_steps, default=None)},
        "time_per_choice_s": {"median": _median(all_times), "min": min(all_times, default=None),
                              "max": max(all_times, default=None), "n": len(all_times)},
        "per_condition": {c: {"trials": len(steps[c]), "steps_median": _median(steps[c]),
                              "steps_min": min(steps[c], default=None), "steps_max": max(steps[c], default=None),
                              "time_median_s": _median(times[c]),
                              "found_target": _mean([t["found_target"] for t in main if t["condition"] == c
                                                     and t["found_target"] is not None])}
                          for c in conds},
    }
    summary["tests"] = {
        "steps": within_subjects({p: {c: float(np.mean(v)) for c, v in row.items()} for p, row in per_pc_steps.items()},
                                 conds),
        "time_per_choice": within_subjects({p: {c: float(np.median(v)) for c, v in row.items()}
                                            for p, row in per_pc_times.items()}, conds),
        "steps_mixed": mixed_effects([(t["pseudonym"], t["condition"], t["steps"]) for t in main], conds),
        "time_mixed": mixed_effects([(a["pseudonym"], a["condition"], a["seconds"]) for a in data.actions
                                     if not a["practice"] and a["action"] != "rate" and a["seconds"] is not None],
                                    conds, log=True),
    }
    likert: dict[str, dict[str, list[int]]] = defaultdict(lambda: defaultdict(list))
    votes: dict[str, dict[str, int]] = defaultdict(lambda: {c: 0 for c in conds})
    texts = []
    for a in data.answers:
        if a["kind"] == "likert" and a["condition"] is not None:
            likert[a["item"]][a["condition"]].append(int(a["value"]))
        elif a["kind"] in ("best", "worst") and a["value"] in conds:
            votes[a["item"]][a["value"]] += 1
        elif a["kind"] == "text" and str(a["value"]).strip():
            texts.append({"item": a["item"], "condition": a["condition"], "text": str(a["value"])})
    summary["likert"] = {}
    for item, by_cond in likert.items():
        per_p: dict[str, dict[str, float]] = defaultdict(dict)
        for a in data.answers:
            if a["item"] == item and a["condition"] is not None:
                per_p[a["pseudonym"]][a["condition"]] = float(a["value"])
        summary["likert"][item] = {
            "counts": {c: [by_cond[c].count(v) for v in range(1, 6)] for c in conds},
            "median": {c: _median(by_cond[c]) for c in conds}, "test": within_subjects(per_p, conds)}
    summary["votes"] = {item: dict(v) for item, v in votes.items()}
    summary["texts"] = texts
    summary["gaze"] = gaze_summary(data)
    return summary


def gaze_summary(data: StudyData) -> dict[str, Any]:
    """Per condition, over the grids participants looked at (practice left out): the mean share of a grid's dwell on
    each of the 9 positions (the heatmap), fixations per grid, and how much of the dwell went to the face then
    picked (the gaze cascade: people look longest at what they are about to choose)."""
    out: dict[str, Any] = {}
    for c in data.conditions:
        grids = [g for g in data.gaze if g["condition"] == c and not g["practice"] and sum(g["dwell_s"]) > 0]
        if not grids:
            continue
        k = max(len(g["dwell_s"]) for g in grids)
        share = np.zeros((len(grids), k))
        for row, g in zip(share, grids):
            d = np.asarray(g["dwell_s"], float)
            row[:len(d)] = d / d.sum()
        on_pick = [g["dwell_s"][g["chosen_panel"]] / sum(g["dwell_s"]) for g in grids
                   if g["chosen_panel"] is not None and g["chosen_panel"] < len(g["dwell_s"])]
        out[c] = {"grids": len(grids), "participants": len({g["pseudonym"] for g in grids}),
                  "sources": sorted({g["source"] for g in grids if g["source"]}),
                  "dwell_share": [float(x) for x in share.mean(axis=0)],
                  "dwell_s_median": _median([sum(g["dwell_s"]) for g in grids]),
                  "fixations_median": _median([sum(g["fixations"]) for g in grids]),
                  "dwell_share_on_pick_median": _median(on_pick), "picks_with_gaze": len(on_pick)}
    return out


def _median(x):
    return float(np.median(x)) if len(x) else None


def _mean(x):
    return float(np.mean(x)) if len(x) else None


# --- plots and the report ----------------------------------------------------------------------------------------------

def _figures(data: StudyData, summary: dict[str, Any]) -> dict[str, bytes]:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    conds = data.conditions
    labels = [f"{c.name}\n({c.label})" for c in data.study.conditions]
    rng = np.random.default_rng(0)
    figs: dict[str, bytes] = {}

    def save(fig, name, tight=True):
        buf = io.BytesIO()
        if tight:
            fig.tight_layout()
        fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
        plt.close(fig)
        figs[name] = buf.getvalue()

    main = [t for t in data.trials if not t["practice"] and t["completed_at"] is not None]
    fig, ax = plt.subplots(figsize=(6.4, 3.8))
    values = [[t["steps"] for t in main if t["condition"] == c] for c in conds]
    ax.boxplot([v or [np.nan] for v in values], tick_labels=labels, showfliers=False)
    for i, v in enumerate(values, 1):
        ax.scatter(i + rng.uniform(-0.15, 0.15, len(v)), np.asarray(v) + rng.uniform(-0.08, 0.08, len(v)), s=12,
                   alpha=0.6, color="tab:blue")
    ax.set_ylabel("steps to decision (grids seen)")
    ax.set_title("Steps to decision per condition")
    save(fig, "steps.png")

    fig, ax = plt.subplots(figsize=(6.4, 3.8))
    values = [[a["seconds"] for a in data.actions if a["condition"] == c and not a["practice"]
               and a["action"] != "rate" and a["seconds"] is not None] for c in conds]
    ax.boxplot([v or [np.nan] for v in values], tick_labels=labels, showfliers=True)
    ax.set_yscale("log")
    ax.set_ylabel("seconds per choice (log)")
    ax.set_title("Time per choice per condition")
    save(fig, "time.png")

    for item, lk in summary["likert"].items():
        fig, ax = plt.subplots(figsize=(6.4, 1.6 + 0.55 * len(conds)))   # room for the title and, below, the key
        colors = ["#b2182b", "#ef8a62", "#cccccc", "#67a9cf", "#2166ac"]
        for j, c in enumerate(conds):
            counts = np.array(lk["counts"][c], dtype=float)
            total = counts.sum() or 1
            left = -(counts[0] + counts[1] + counts[2] / 2) / total
            for v in range(5):
                ax.barh(j, counts[v] / total, left=left, color=colors[v], label=str(v + 1) if j == 0 else None)
                left += counts[v] / total
        ax.axvline(0, color="k", lw=0.8)
        ax.set_yticks(range(len(conds)), labels=[lab.replace("\n", " ") for lab in labels])
        ax.set_xlim(-1, 1)
        ax.set_xlabel("share of answers (left: 1-2, right: 4-5)")
        q = next((q for q in data.study.questions if q.id == item), None)
        ax.set_title(f"{item}: {q.text if q else ''}"[:80], fontsize=9)
        # the key of the five answers under the axis label, where no title or bar can cover it
        ax.legend(ncol=5, fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.42), frameon=False)
        save(fig, f"likert-{item}.png")

    if summary["votes"]:
        fig, ax = plt.subplots(figsize=(6.4, 3.4))
        width = 0.8 / len(summary["votes"])
        for k, (item, counts) in enumerate(summary["votes"].items()):
            ax.bar(np.arange(len(conds)) + k * width, [counts[c] for c in conds], width, label=item)
        ax.set_xticks(np.arange(len(conds)) + width * (len(summary["votes"]) - 1) / 2, labels=labels)
        ax.set_ylabel("votes")
        from matplotlib.ticker import MaxNLocator
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))   # votes are whole: no 0.2-vote ticks
        ax.set_ylim(0, max([max(c.values()) for c in summary["votes"].values()] + [1]) * 1.35)   # room for the legend
        ax.legend(frameon=False, ncol=len(summary["votes"]), loc="upper center")
        ax.set_title("Best / worst votes")
        save(fig, "votes.png")
    _gaze_figure(data, summary, plt, save)
    return figs


def _gaze_figure(data: StudyData, summary: dict[str, Any], plt, save) -> None:
    gaze = summary.get("gaze") or {}
    conds = [c for c in data.study.conditions if c.name in gaze]
    if not conds:
        return
    fig, axes = plt.subplots(1, len(conds), figsize=(2.6 * len(conds) + 0.8, 3.0), squeeze=False)
    top = max(max(gaze[c.name]["dwell_share"]) for c in conds)
    for ax, c in zip(axes[0], conds):
        share = np.asarray(gaze[c.name]["dwell_share"])
        cols = 3
        grid = np.full(((len(share) + cols - 1) // cols) * cols, np.nan)
        grid[:len(share)] = share
        grid = grid.reshape(-1, cols)
        im = ax.imshow(grid, cmap="magma", vmin=0, vmax=top)
        for (r, q), v in np.ndenumerate(grid):
            if np.isfinite(v):
                ax.text(q, r, f"{100 * v:.0f}%", ha="center", va="center", fontsize=9,
                        color="white" if v < 0.6 * top else "black")
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title(f"{c.name} ({c.label})\n{gaze[c.name]['grids']} grids", fontsize=9)
    fig.colorbar(im, ax=list(axes[0]), shrink=0.8, label="share of a grid's dwell")
    save(fig, "gaze.png", tight=False)


def _fmt(x, digits=3):
    if x is None:
        return "–"
    if isinstance(x, float):
        if x != 0 and abs(x) < 0.001:
            return f"{x:.1e}"
        return f"{x:.{digits}g}"
    return str(x)


def _test_lines(name: str, test: dict[str, Any]) -> list[str]:
    n = test.get("n", 0)
    lines = [f"**{name}** (n = {n} {_plural(n, 'participant')} with every condition)"]
    if "note" in test:
        return lines + [f"- {test['note']}"]
    f = test.get("friedman")
    if f:
        lines.append(f"- Friedman χ²({f['df']}) = {_fmt(f['chi2'])}, p = {_fmt(f['p'])}, Kendall's W = "
                     f"{_fmt(f['kendall_w'])}")
    elif len(test.get("conditions", ())) == 2:
        lines.append("- Two conditions: the Wilcoxon test below is the test (Friedman needs three or more).")
    if 0 < n < WILCOXON_MIN_N:
        # the exact two-sided signed-rank p is at least 2 / 2^n: below 6 pairs it cannot reach 0.05
        lines.append(f"- With {n} {_plural(n, 'participant')}, no Wilcoxon test here can reach p < {ALPHA:g} (the "
                     f"smallest possible p is {2 / 2 ** n:.3g}): read the differences, not the p-values.")
    lines.append("")
    lines.append("| pair | median difference | Wilcoxon p | p (Holm) | r |")
    lines.append("|---|---|---|---|---|")
    for r in test.get("pairs", []):
        mark = " *" if r["p_holm"] < ALPHA else ""
        lines.append(f"| {r['a']} – {r['b']} | {_fmt(r['median_difference'])} | {_fmt(r['p'])} | "
                     f"{_fmt(r['p_holm'])}{mark} | {_fmt(r['r'])} |")
    return lines


def _plural(n: int, word: str) -> str:
    return word if n == 1 else word + "s"


def _mixed_lines(name: str, m: dict[str, Any]) -> list[str]:
    lines = [f"**{name}, mixed model** ({m['n_observations']} {_plural(m['n_observations'], 'observation')} of "
             f"{m['n_participants']} {_plural(m['n_participants'], 'participant')}; "
             f"reference: {m.get('reference')})"]
    if "note" in m:
        return lines + [f"- {m['note']}"]
    if m["log"]:
        lines += ["", "| condition | time ratio to the reference | 95% interval | p |", "|---|---|---|---|"]
        lines += [f"| {e['condition']} | {_fmt(e['ratio'])} | {_fmt(e['ratio_lo'])} to {_fmt(e['ratio_hi'])} | "
                  f"{_fmt(e['p'])}{' *' if e['p'] < ALPHA else ''} |" for e in m["effects"]]
    else:
        lines += ["", "| condition | difference from the reference | 95% interval | p |", "|---|---|---|---|"]
        lines += [f"| {e['condition']} | {_fmt(e['estimate'])} | {_fmt(e['lo'])} to {_fmt(e['hi'])} | "
                  f"{_fmt(e['p'])}{' *' if e['p'] < ALPHA else ''} |" for e in m["effects"]]
    extra = f"Between-participant SD {_fmt(m['participant_sd'])}, residual SD {_fmt(m['residual_sd'])}"
    if not m["converged"] or m["warnings"]:
        extra += (f"; {'did not converge' if not m['converged'] else 'converged'}"
                  + (f" with warnings ({', '.join(m['warnings'])}): read the effects with care" if m["warnings"]
                     else ""))
    return lines + ["", extra + "."]


def _pseudonym_list(data: StudyData) -> str:
    names = [p["pseudonym"] for p in data.participants]
    return ", ".join(names) if len(names) <= 8 else f"{', '.join(names[:3])} … {names[-1]}, {len(names)} in all"


def markdown(data: StudyData, summary: dict[str, Any], figures: dict[str, bytes]) -> str:
    st = data.study
    s = summary
    lines = [f"# Study report: {st.title}", "",
             f"Study `{st.name}`: {len(st.conditions)} conditions, {s['participants']} participants "
             f"({s['completed_participants']} completed every trial), {st.order} order, task: {st.task}, "
             f"{st.practice_trials} practice trial(s) (not analysed), {st.trials_per_condition} trial(s) per condition. "
             f"Participants are shown by pseudonym only ({_pseudonym_list(data)}).", "",
             "## Conditions", "", "| condition | label shown | model | policy | start |", "|---|---|---|---|---|"]
    lines += [f"| {c.name} | {c.label} | {c.model} | {c.policy} | {c.start} |" for c in st.conditions]
    lines += ["", "## Headline figures", "",
              f"- Steps to decision: median {_fmt(s['steps']['median'])} (range {_fmt(s['steps']['min'])}–"
              f"{_fmt(s['steps']['max'])}) over {s['trials_completed']} trials",
              f"- Time per choice: median {_fmt(s['time_per_choice_s']['median'])} s (range "
              f"{_fmt(s['time_per_choice_s']['min'])}–{_fmt(s['time_per_choice_s']['max'])} s) over "
              f"{s['time_per_choice_s']['n']} choices",
              f"- Trials resumed after a disconnect or a crash (practice not counted): {s['resumed_trials']}", "",
              "| condition | trials | steps median (range) | time per choice median (s) | target found |",
              "|---|---|---|---|---|"]
    for c, v in s["per_condition"].items():
        found = "–" if v["found_target"] is None else f"{100 * v['found_target']:.0f}%"
        lines.append(f"| {c} | {v['trials']} | {_fmt(v['steps_median'])} ({_fmt(v['steps_min'])}–"
                     f"{_fmt(v['steps_max'])}) | {_fmt(v['time_median_s'])} | {found} |")
    lines += ["", "![steps](steps.png)", "", "![time per choice](time.png)", "", "## Statistics", "",
              "Within-subject tests over the conditions (scipy.stats): Friedman with Kendall's W (three or more "
              "conditions), then pairwise "
              "Wilcoxon signed-rank tests, Holm-adjusted (* p < 0.05), with the matched-pairs r = |z|/√n (n: every "
              "participant with both conditions, tied pairs included). Steps: each "
              "participant's mean per condition; time: each participant's median per condition.", ""]
    lines += _test_lines("Steps to decision", s["tests"]["steps"]) + [""]
    lines += _test_lines("Time per choice", s["tests"]["time_per_choice"]) + [""]
    lines += ["Mixed models (statsmodels MixedLM, REML) use every trial and every choice rather than one summary per "
              "participant, with a random intercept per participant: steps ~ condition; log(time per choice) ~ "
              "condition (effects as time ratios). Wald p-values, not Holm-adjusted (* p < 0.05).", ""]
    lines += _mixed_lines("Steps to decision", s["tests"]["steps_mixed"]) + [""]
    lines += _mixed_lines("Time per choice", s["tests"]["time_mixed"]) + [""]
    if s["likert"]:
        lines += ["## Questionnaire: Likert items (1–5)", ""]
        for item, lk in s["likert"].items():
            q = next((q for q in st.questions if q.id == item), None)
            lines += [f"### {item}: {q.text if q else ''}", "", "| condition | median | 1 | 2 | 3 | 4 | 5 |",
                      "|---|---|---|---|---|---|---|"]
            lines += [f"| {c} | {_fmt(lk['median'][c])} | " + " | ".join(map(str, lk["counts"][c])) + " |"
                      for c in data.conditions]
            lines += ["", f"![{item}](likert-{item}.png)", ""] + _test_lines(f"{item}", lk["test"]) + [""]
    if s["votes"]:
        items = list(s["votes"])
        lines += ["## Best / worst", "", "| condition | " + " | ".join(items) + " |",
                  "|---|" + "---|" * len(items)]
        lines += [f"| {c} | " + " | ".join(str(s["votes"][i][c]) for i in items) + " |" for c in data.conditions]
        lines += ["", "![votes](votes.png)", ""]
    if s["texts"]:
        lines += ["## Free-text answers", ""] + [f"- ({t['item']}{', ' + t['condition'] if t['condition'] else ''}) "
                                                 f"{t['text']}" for t in s["texts"]] + [""]
    lines += ["## Gaze", ""]
    gaze = s.get("gaze") or {}
    if not gaze:
        lines += ["No gaze was recorded in this study (clients send it with `gaze.batch`; docs/gaze.md).", ""]
    else:
        lines += ["Where participants looked on each grid (the server's fixation and dwell figures for every grid "
                  "with gaze, practice trials left out): the mean share of a grid's dwell on each of the 9 positions, "
                  "row by row from the top left (the chosen face of the previous step is shown first, top left), "
                  "and how much of it went to the face picked next (the gaze cascade).", "",
                  "![gaze](gaze.png)", "",
                  "| condition | grids (participants) | source | dwell per grid, median (s) | fixations per grid, "
                  "median | share of dwell on the face picked, median |", "|---|---|---|---|---|---|"]
        for c in data.conditions:
            g = gaze.get(c)
            if g is None:
                lines.append(f"| {c} | 0 | – | – | – | – |")
                continue
            pick = "–" if g["dwell_share_on_pick_median"] is None else \
                f"{100 * g['dwell_share_on_pick_median']:.0f}% ({g['picks_with_gaze']} picks)"
            lines.append(f"| {c} | {g['grids']} ({g['participants']}) | {', '.join(g['sources']) or '–'} | "
                         f"{_fmt(g['dwell_s_median'])} | {_fmt(g['fixations_median'])} | {pick} |")
        lines += [""]
    lines += [f"_Generated by `omokage study report` on {time.strftime('%Y-%m-%d %H:%M')}._", ""]
    return "\n".join(lines)


def to_html(md: str, figures: dict[str, bytes], title: str) -> str:
    """A small markdown subset (headings, tables, lists, images, paragraphs) to HTML, PNGs embedded."""
    out = [f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title><style>"
           "body{font-family:system-ui,sans-serif;max-width:60em;margin:2em auto;padding:0 1em;color:#222}"
           "table{border-collapse:collapse;margin:0.5em 0}td,th{border:1px solid #ccc;padding:0.2em 0.6em;"
           "text-align:left}th{background:#f3f3f3}img{max-width:100%}</style></head><body>"]
    lines = md.splitlines()
    i = 0

    def inline(text):
        text = html.escape(text)
        import re
        text = re.sub(r"\*\*(.+?)\*\*", r"<b>\1</b>", text)
        text = re.sub(r"`(.+?)`", r"<code>\1</code>", text)
        return re.sub(r"(?<![\w*])_(.+?)_(?![\w*])", r"<i>\1</i>", text)

    while i < len(lines):
        line = lines[i]
        if line.startswith("#"):
            level = len(line) - len(line.lstrip("#"))
            out.append(f"<h{level}>{inline(line[level:].strip())}</h{level}>")
        elif line.startswith("|"):
            rows = []
            while i < len(lines) and lines[i].startswith("|"):
                rows.append([c.strip() for c in lines[i].strip().strip("|").split("|")])
                i += 1
            out.append("<table><tr>" + "".join(f"<th>{inline(c)}</th>" for c in rows[0]) + "</tr>")
            for r in rows[2:]:
                out.append("<tr>" + "".join(f"<td>{inline(c)}</td>" for c in r) + "</tr>")
            out.append("</table>")
            continue
        elif line.startswith("!["):
            alt, src = line[2:].split("](", 1)
            src = src.rstrip(")")
            data = figures.get(src)
            if data is not None:
                out.append(f"<p><img alt='{html.escape(alt)}' src='data:image/png;base64,"
                           f"{base64.b64encode(data).decode()}'></p>")
        elif line.startswith("- "):
            out.append("<ul>")
            while i < len(lines) and lines[i].startswith("- "):
                out.append(f"<li>{inline(lines[i][2:])}</li>")
                i += 1
            out.append("</ul>")
            continue
        elif line.strip():
            out.append(f"<p>{inline(line)}</p>")
        i += 1
    out.append("</body></html>")
    return "\n".join(out)


def write_report(db: str | Path, name: str, out: str | Path) -> list[Path]:
    data = read_study_data(db, name)
    summary = summarise(data)
    figures = _figures(data, summary)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    for fname, png in figures.items():
        (out / fname).write_bytes(png)
    md = markdown(data, summary, figures)
    (out / "report.md").write_text(md, encoding="utf-8")
    (out / "report.html").write_text(to_html(md, figures, f"Study report: {data.study.title}"), encoding="utf-8")
    (out / "summary.json").write_text(json.dumps(summary, indent=1, default=float) + "\n", encoding="utf-8")
    return [out / "report.html", out / "report.md", out / "summary.json"]


# --- privacy -----------------------------------------------------------------------------------------------------------

def delete_participant(db: str | Path, name: str, code: str, jsonl=()) -> dict[str, Any]:
    """Remove one participant's data from the store (and from JSON-lines logs), then compact the file so the deleted
    rows are not left in free pages. Refused (StoreInUse) while a server is serving from the store."""
    from omokage.store.db import held_alone
    open_database(db, create=False).close()     # a missing or damaged store: its own message first
    with _logs_held_alone(jsonl, "delete the participant"), held_alone(db, "delete the participant"):
        pseudonym, sessions, counts = _delete_participant_rows(db, name, code)
        _compact(db)
        for path in jsonl:
            counts[f"lines of {Path(path).name}"] = _drop_sessions(Path(path), sessions)
    return {"pseudonym": pseudonym, "sessions": len(sessions), "rows": counts}


def _compact(db: str | Path) -> None:
    """Checkpoint and VACUUM, so no deleted row stays in the file's free pages or its WAL."""
    conn = open_database(db, create=False)
    try:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        conn.execute("VACUUM")
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        conn.close()


def _delete_participant_rows(db: str | Path, name: str, code: str) -> tuple[str, set[str], dict[str, int]]:
    """One participant's rows, deleted in one transaction (the file is compacted by the caller): their pseudonym,
    their sessions' ids and the rows deleted per table."""
    conn = open_database(db, create=False)
    try:
        study_id, study = read_study(conn, name)
        row = conn.execute("SELECT id, pseudonym FROM participants WHERE study_id = ? AND code = ?",
                           (study_id, code)).fetchone()
        if row is None:
            raise UserError(f"no participant with that code in study {name!r} (codes are case-sensitive)")
        pid, pseudonym = row
        trials = [r[0] for r in conn.execute("SELECT id FROM trials WHERE participant_id = ?", (pid,))]
        sessions = {r[0] for r in conn.execute("SELECT id FROM sessions WHERE participant_id = ?", (pid,))}
        if trials:
            marks = ",".join("?" * len(trials))
            sessions |= {r[0] for r in conn.execute(
                f"SELECT DISTINCT session_id FROM events WHERE trial_id IN ({marks}) AND session_id IS NOT NULL", trials)}
        sessions_l = sorted(sessions)
        counts: dict[str, int] = {}
        conn.execute("PRAGMA secure_delete = ON")
        conn.execute("BEGIN IMMEDIATE")
        try:
            for table in SESSION_TABLES:
                cols = {r[1] for r in conn.execute(f"PRAGMA table_info({table})")}
                n = 0
                for chunk in _chunks(sessions_l):
                    n += conn.execute(f"DELETE FROM {table} WHERE session_id IN ({','.join('?' * len(chunk))})",
                                      chunk).rowcount
                if "trial_id" in cols:
                    for chunk in _chunks(trials):
                        n += conn.execute(f"DELETE FROM {table} WHERE trial_id IN ({','.join('?' * len(chunk))})",
                                          chunk).rowcount
                counts[table] = n
            counts["answers"] = conn.execute("DELETE FROM answers WHERE participant_id = ?", (pid,)).rowcount
            counts["sessions"] = sum(conn.execute(f"DELETE FROM sessions WHERE id IN ({','.join('?' * len(c))})",
                                                  c).rowcount for c in _chunks(sessions_l))
            counts["trials"] = conn.execute("DELETE FROM trials WHERE participant_id = ?", (pid,)).rowcount
            conn.execute("DELETE FROM participants WHERE id = ?", (pid,))
            # the code also sits in the study file kept in the store: blank it there
            src, config = conn.execute("SELECT source, config FROM studies WHERE id = ?", (study_id,)).fetchone()
            cfg = json.loads(config)
            cfg["participants"] = ["(deleted)" if c == code else c for c in cfg.get("participants", [])]
            for q in ('"', "'"):
                src = src.replace(f"{q}{code}{q}", f"{q}(deleted){q}")
            conn.execute("UPDATE studies SET source = ?, config = ? WHERE id = ?", (src, json.dumps(cfg), study_id))
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
    finally:
        conn.close()
    return pseudonym, sessions, counts


def list_studies(db: str | Path) -> list[dict[str, Any]]:
    """Every study in the store: name, title, conditions, participants, trials planned / started / completed."""
    conn = open_database(db, create=False)
    try:
        out = []
        for sid, name, created_at, config in conn.execute(
                "SELECT id, name, created_at, config FROM studies ORDER BY created_at"):
            cfg = json.loads(config)
            planned, started, completed = conn.execute(
                "SELECT COUNT(*), COUNT(t.started_at), COUNT(t.completed_at) FROM trials t JOIN participants p "
                "ON p.id = t.participant_id WHERE p.study_id = ?", (sid,)).fetchone()
            out.append({"name": name, "title": cfg.get("title", name), "created_at": created_at,
                        "conditions": conn.execute("SELECT COUNT(*) FROM conditions WHERE study_id = ?",
                                                   (sid,)).fetchone()[0],
                        "participants": conn.execute("SELECT COUNT(*) FROM participants WHERE study_id = ?",
                                                     (sid,)).fetchone()[0],
                        "trials": planned, "started": started, "completed": completed})
        return out
    finally:
        conn.close()


def drop_study(db: str | Path, name: str, force: bool = False, jsonl=()) -> dict[str, Any]:
    """Remove a study from the store: with each participant's data (as `delete_participant`) when `force`; without
    it, only a study nobody has started (a pilot's typo fixed before anyone came). Refused while a server serves."""
    from omokage.store.db import held_alone
    open_database(db, create=False).close()
    with _logs_held_alone(jsonl, "drop the study"):
        with held_alone(db, "drop the study"):
            conn = open_database(db, create=False)
            try:
                study_id, _ = read_study(conn, name)
                codes = [c for (c,) in conn.execute("SELECT code FROM participants WHERE study_id = ?", (study_id,))]
                started = conn.execute("SELECT COUNT(t.started_at) FROM trials t JOIN participants p ON "
                                       "p.id = t.participant_id WHERE p.study_id = ?", (study_id,)).fetchone()[0]
                answered = conn.execute("SELECT COUNT(*) FROM answers a JOIN participants p ON "
                                        "p.id = a.participant_id WHERE p.study_id = ?", (study_id,)).fetchone()[0]
            finally:
                conn.close()
            if (started or answered) and not force:
                raise UserError(f"study {name!r} has data ({started} trial(s) started, {answered} answer(s)); "
                                f"export it first (`omokage study export {name}`), then pass --force to delete it "
                                "with all its data")
            sessions: set[str] = set()
            for code in codes:          # their sessions, messages, events and answers, as for one participant
                sessions |= _delete_participant_rows(db, name, code)[1]
            conn = open_database(db, create=False)
            try:
                conn.execute("DELETE FROM studies WHERE id = ?", (study_id,))   # its conditions go with it (cascade)
                conn.commit()
            finally:
                conn.close()
            _compact(db)                # once, for all of it
        for path in jsonl:
            _drop_sessions(Path(path), sessions)
    return {"participants": len(codes), "trials_started": started, "answers": answered}


def _chunks(values, size: int = 500):
    values = list(values)
    for i in range(0, len(values), size):
        yield values[i:i + size]


@contextlib.contextmanager
def _logs_held_alone(jsonl, doing: str):
    """Every JSON-lines log held before anything is deleted (StoreInUse while a server appends to one: the records it
    wrote after the copy would be lost with the rewrite, and refusing half-way would leave the store done and the
    logs not)."""
    from omokage.store.db import held_alone
    with contextlib.ExitStack() as logs:
        for path in jsonl:
            logs.enter_context(held_alone(path, doing, refusal=f"a server is writing its event log {path}: stop it "
                                                               f"first, then {doing}"))
        yield


def _drop_sessions(path: Path, sessions: set[str]) -> int:
    """Rewrite the JSON-lines log `path` without the records of these sessions, atomically; returns the lines
    dropped."""
    tmp = path.with_name(path.name + ".tmp")
    with open(path, "rb") as src:
        dropped = _copy_without(src, tmp, sessions)
    os.replace(tmp, path)
    return dropped


def _copy_without(src, tmp: Path, sessions: set[str]) -> int:
    """Copy the open log `src` to `tmp` (synced) without the records of these sessions; returns the lines left out."""
    dropped = 0
    with open(tmp, "wb") as dst:
        for raw in src:
            try:
                rec = json.loads(raw)
                if isinstance(rec, dict) and rec.get("session_id") in sessions:
                    dropped += 1
                    continue
            except (ValueError, RecursionError):
                pass
            dst.write(raw)
        dst.flush()
        os.fsync(dst.fileno())
    return dropped
