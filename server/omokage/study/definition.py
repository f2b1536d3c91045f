"""Study files (TOML): conditions, participants, their counterbalanced order, practice, task and questionnaires.

`load_study(path)` parses and validates a study file; every error names the file, the line and the reason.
`create_study(db, study)` writes it into the event store with each participant's plan of trials. The format is
documented in docs/studies.md.
"""

from __future__ import annotations

import itertools
import json
import re
import time
import tomllib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from omokage.errors import UserError

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
CODE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
ORDERS = ("latin", "balanced", "random")
STARTS = ("random", "image")
TASKS = ("free", "target")
# free-text questions per questionnaire: all its answers go in one message, whose strings are bounded (64 KiB):
# 6 × 2,000 characters × 4 bytes (UTF-8) leaves room for the rest
MAX_TEXT_QUESTIONS = 6
QUESTION_KINDS = ("likert", "best", "worst", "text")
QUESTION_AFTER = ("condition", "study")
MAX_TEXT_ANSWER = 2000

STUDY_KEYS = {"name", "title", "order", "accept_unbalanced", "seed", "trials_per_condition", "practice_trials",
              "practice_condition", "task", "conditions", "design", "participants", "questions"}
CONDITION_KEYS = {"name", "label", "model", "policy", "start"}
DESIGN_KEYS = {"models", "policies", "starts"}
QUESTION_KEYS = {"id", "kind", "text", "after", "labels", "required"}


class StudyFileError(UserError):
    pass


@dataclass(frozen=True)
class Condition:
    name: str
    label: str
    model: str
    policy: str
    start: str = "random"


@dataclass(frozen=True)
class Question:
    id: str
    kind: str            # likert | best | worst | text
    text: str
    after: str           # condition | study
    labels: tuple[str, ...] = ()
    required: bool = True


@dataclass
class Study:
    name: str
    title: str
    order: str
    conditions: list[Condition]
    participants: list[str]
    questions: list[Question] = field(default_factory=list)
    trials_per_condition: int = 1
    practice_trials: int = 0
    practice_condition: str | None = None
    task: str = "free"
    seed: int = 0
    accept_unbalanced: bool = False
    notes: list[str] = field(default_factory=list)   # warnings for the person creating the study

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out.pop("notes")
        return out

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "Study":
        d = dict(d)
        d["conditions"] = [Condition(**c) for c in d["conditions"]]
        d["questions"] = [Question(**{**q, "labels": tuple(q.get("labels", ()))}) for q in d.get("questions", [])]
        return cls(**d)

    def orders(self) -> list[list[int]]:
        """The condition order of each participant (indices into `conditions`)."""
        n = len(self.conditions)
        if self.order == "random":
            rng = np.random.default_rng(self.seed)
            return [list(map(int, rng.permutation(n))) for _ in self.participants]
        rows = design_rows(n, self.order)
        return [rows[i % len(rows)] for i in range(len(self.participants))]

    def questionnaire_items(self, after: str) -> list[Question]:
        return [q for q in self.questions if q.after == after]


def design_rows(n: int, order: str) -> list[list[int]]:
    """Counterbalancing: `latin`, a cyclic Latin square (each condition once in each position); `balanced`, a
    Williams design (also each condition right after each other equally often: n rows for even n, 2n for odd)."""
    if order == "latin":
        return [[(r + j) % n for j in range(n)] for r in range(n)]
    first, lo, hi = [0], 1, n - 1
    while len(first) < n:
        first.append(lo)
        lo += 1
        if len(first) < n:
            first.append(hi)
            hi -= 1
    rows = [[(x + r) % n for x in first] for r in range(n)]
    if n % 2:
        rows += [list(reversed(row)) for row in rows]
    return rows


# --- locating a value in the file, for messages ------------------------------------------------------------------------

class _Lines:
    def __init__(self, text: str):
        self.lines = text.splitlines()

    def header(self, table: str, index: int) -> int | None:
        """1-based line of the index-th `[[table]]` header."""
        seen = -1
        for n, line in enumerate(self.lines, 1):
            if re.match(rf"^\s*\[\[\s*{re.escape(table)}\s*\]\]", line):
                seen += 1
                if seen == index:
                    return n
        return None

    def key(self, key: str, table: str | None = None, index: int = 0) -> int | None:
        """Line of `key = ...` in the index-th [[table]] (or at the top level / in [table])."""
        start = 0
        if table is not None:
            h = self.header(table, index)
            if h is None:
                h = next((n for n, line in enumerate(self.lines, 1)
                          if re.match(rf"^\s*\[\s*{re.escape(table)}\s*\]", line)), None)
            if h is None:
                return None
            start = h
        for n in range(start, len(self.lines)):
            line = self.lines[n]
            if n > start and table is not None and re.match(r"^\s*\[", line):
                break
            if table is None and re.match(r"^\s*\[", line):
                break
            if re.match(rf"^\s*{re.escape(key)}\s*=", line):
                return n + 1
        return None

    def value(self, value: str, occurrence: int = 0, after: int = 0) -> int | None:
        """Line of the occurrence-th quoted `value` (from line `after`)."""
        seen = -1
        pattern = re.compile(r"""(["'])""" + re.escape(value) + r"\1")
        for n in range(after, len(self.lines)):
            for _ in pattern.finditer(self.lines[n]):
                seen += 1
                if seen == occurrence:
                    return n + 1
        return None


# --- loading and validation ---------------------------------------------------------------------------------------------

def load_study(path: str | Path, models: tuple[str, ...] | None = None, policies: tuple[str, ...] | None = None) -> Study:
    """Parse and validate a study file. `models` / `policies`: the names allowed (default: every model omokage can
    fit, every policy it has)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise StudyFileError(f"cannot read the study file {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise StudyFileError(f"{path} is not UTF-8 text; save the study file as UTF-8") from None
    return parse_study(text, str(path), models, policies)


def parse_study(text: str, where: str = "<study>", models=None, policies=None) -> Study:
    if models is None:
        from omokage.cli import MODEL_NAMES
        models = MODEL_NAMES
    from omokage.selection import GAZE_SUFFIX, POLICIES, is_policy
    policy_known = is_policy if policies is None else (lambda name: name in policies)
    policy_names = (f"{', '.join(POLICIES)} (a belief policy also as NAME{GAZE_SUFFIX}, e.g. thompson{GAZE_SUFFIX})"
                    if policies is None else ", ".join(policies))
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        at = re.search(r"\(at line (\d+), column \d+\)", str(exc))   # file:LINE: like every other error here
        raise StudyFileError(f"{where}:{at.group(1) if at else 1}: not valid TOML: {exc}") from None
    lines = _Lines(text)

    def fail(line: int | None, reason: str) -> StudyFileError:
        return StudyFileError(f"{where}:{line or 1}: {reason}")

    for key in raw:
        if key not in STUDY_KEYS:
            raise fail(lines.key(key) or lines.header(key, 0), f"unknown key {key!r}; a study file has "
                                                               f"{', '.join(sorted(STUDY_KEYS))}")

    def get(key, kind, default=None, required=False, table=None, index=0, src=None):
        src = raw if src is None else src
        if key not in src:
            if required:
                raise fail(lines.header(table, index) if table else None, f"missing {key!r}"
                           + (f" in [[{table}]] number {index + 1}" if table else ""))
            return default
        value = src[key]
        ok = isinstance(value, kind) and not (kind is int and isinstance(value, bool))
        if not ok:
            raise fail(lines.key(key, table, index), f"{key!r} must be {_kind_name(kind)}, not {value!r}")
        return value

    def tables(table, noun, keys, first_key, specs):
        """(index, table) of an array of tables ([[conditions]], [[questions]]), each checked for unknown keys."""
        for i, spec in enumerate(specs):
            if not isinstance(spec, dict):
                raise fail(lines.key(table), f"{table} must be tables: [[{table}]] {first_key} = ...")
            for key in spec:
                if key not in keys:
                    raise fail(lines.key(key, table, i), f"unknown key {key!r} in {noun} {i + 1}; a {noun} has "
                                                         f"{', '.join(sorted(keys))}")
            yield i, spec

    name = get("name", str, required=True)
    if not NAME_RE.match(name):
        raise fail(lines.key("name"), f"study name {name!r}: use letters, digits, '-', '_' or '.' (up to 64)")
    order = get("order", str, "latin")
    if order not in ORDERS:
        raise fail(lines.key("order"), f"order {order!r} is not one of {', '.join(ORDERS)}")
    task = get("task", str, "free")
    if task not in TASKS:
        raise fail(lines.key("task"), f"task {task!r} is not one of {', '.join(TASKS)} (free choice, or find a "
                                      "target face shown to the participant)")
    trials = get("trials_per_condition", int, 1)
    if trials < 1:
        raise fail(lines.key("trials_per_condition"), "trials_per_condition must be 1 or more")
    practice = get("practice_trials", int, 0)
    if practice < 0:
        raise fail(lines.key("practice_trials"), "practice_trials must be 0 or more")

    # conditions: explicit [[conditions]], or the product of a [design]'s factors
    conditions: list[Condition] = []
    if "conditions" in raw and "design" in raw:
        raise fail(lines.key("design") or lines.header("design", 0), "give either [[conditions]] or [design], not both")
    if "design" in raw:
        design = get("design", dict)
        for key in design:
            if key not in DESIGN_KEYS:
                raise fail(lines.key(key, "design"), f"unknown key {key!r} in [design]; it has "
                                                     f"{', '.join(sorted(DESIGN_KEYS))}")
        factors = []
        for key, default in (("models", None), ("policies", ["thompson"]), ("starts", ["random"])):
            values = design.get(key, default)
            if values is None:
                raise fail(lines.header("design", 0) or lines.key("design"), "[design] needs `models`")
            if not isinstance(values, list) or not values or not all(isinstance(v, str) for v in values):
                raise fail(lines.key(key, "design"), f"[design] {key} must be a non-empty list of names")
            factors.append(values)
        for m, p, s in itertools.product(*factors):
            parts = [m] + ([p] if len(factors[1]) > 1 else []) + ([s] if len(factors[2]) > 1 else [])
            conditions.append(Condition("-".join(parts), "", m, p, s))
    else:
        for i, spec in tables("conditions", "condition", CONDITION_KEYS, "model",
                              get("conditions", list, required=True)):
            model = get("model", str, required=True, table="conditions", index=i, src=spec)
            policy = get("policy", str, "thompson", table="conditions", index=i, src=spec)
            start = get("start", str, "random", table="conditions", index=i, src=spec)
            cname = get("name", str, model if policy == "thompson" and start == "random" else
                        f"{model}-{policy.replace('+', '-')}-{start}", table="conditions", index=i, src=spec)
            label = get("label", str, "", table="conditions", index=i, src=spec)
            conditions.append(Condition(cname, label, model, policy, start))
    if len(conditions) < 1:
        raise fail(lines.key("conditions"), "a study needs at least one condition")
    seen: dict[str, int] = {}
    for i, c in enumerate(conditions):
        line = lines.key("model", "conditions", i) or lines.value(c.model) or lines.key("design")
        if c.model not in models:
            raise fail(line, f"unknown condition model {c.model!r}; choose from {', '.join(models)}")
        if not policy_known(c.policy):
            raise fail(lines.key("policy", "conditions", i) or lines.value(c.policy),
                       f"unknown condition policy {c.policy!r}; choose from {policy_names}")
        if c.start not in STARTS:
            raise fail(lines.key("start", "conditions", i) or lines.value(c.start),
                       f"unknown condition start {c.start!r}; choose from {', '.join(STARTS)}")
        if not NAME_RE.match(c.name):
            raise fail(lines.key("name", "conditions", i), f"condition name {c.name!r}: use letters, digits, '-', "
                                                           "'_' or '.'")
        if c.name in seen:
            raise fail(lines.header("conditions", i) or lines.value(c.name, 1),
                       f"condition {c.name!r} appears twice (conditions {seen[c.name] + 1} and {i + 1}); give each a "
                       "distinct name")
        seen[c.name] = i
    labels = [c.label or (f"System {chr(ord('A') + i)}" if i < 26 else f"System {i + 1}")
              for i, c in enumerate(conditions)]
    if len(set(labels)) != len(labels):
        raise fail(lines.key("label", "conditions", 0), "condition labels must differ (participants tell the "
                                                        "conditions apart by them)")
    conditions = [Condition(c.name, label, c.model, c.policy, c.start) for c, label in zip(conditions, labels)]

    practice_condition = get("practice_condition", str, None)
    by_model = [c.name for c in conditions if c.model == practice_condition]
    if practice_condition is not None and practice_condition not in seen and len(by_model) == 1:
        practice_condition = by_model[0]    # a model's name, where one condition alone uses that model
    if practice_condition is not None and practice_condition not in seen:
        raise fail(lines.key("practice_condition"), f"unknown condition {practice_condition!r} as practice_condition; "
                                                    f"the conditions are {', '.join(seen)}")

    # participants
    codes = get("participants", list, required=True)
    plist_line = lines.key("participants") or 0
    first: dict[str, int] = {}
    for i, code in enumerate(codes):
        if not isinstance(code, str):
            raise fail(plist_line, f"participant {i + 1} must be a code in quotes, not {code!r}")
        if not CODE_RE.match(code):
            raise fail(lines.value(code, after=plist_line - 1 if plist_line else 0) or plist_line,
                       f"participant code {code!r}: use 1-64 letters, digits, '-' or '_' (a code, never a name)")
        if code in first:
            raise fail(lines.value(code, 1, after=plist_line - 1 if plist_line else 0) or plist_line,
                       f"duplicate participant {code!r} (participants {first[code] + 1} and {i + 1}): each "
                       "person needs a code of their own; change or remove one")
        first[code] = i
    if not codes:
        raise fail(plist_line, "a study needs at least one participant")

    # questions
    questions: list[Question] = []
    qids: set[str] = set()
    for i, spec in tables("questions", "question", QUESTION_KEYS, "id", get("questions", list, [])):
        qid = get("id", str, required=True, table="questions", index=i, src=spec)
        kind = get("kind", str, required=True, table="questions", index=i, src=spec)
        text = get("text", str, "", table="questions", index=i, src=spec)
        default_after = "condition" if kind in ("likert", "text") else "study"
        after = get("after", str, default_after, table="questions", index=i, src=spec)
        qlabels = get("labels", list, [], table="questions", index=i, src=spec)
        required = get("required", bool, kind != "text", table="questions", index=i, src=spec)
        if not NAME_RE.match(qid) or qid in qids:
            raise fail(lines.key("id", "questions", i), f"question id {qid!r} must be unique, letters and digits")
        if kind not in QUESTION_KINDS:
            raise fail(lines.key("kind", "questions", i), f"question kind {kind!r} is not one of "
                                                          f"{', '.join(QUESTION_KINDS)}")
        if after not in QUESTION_AFTER:
            raise fail(lines.key("after", "questions", i), f"after {after!r} is not one of {', '.join(QUESTION_AFTER)}")
        if kind in ("best", "worst") and after != "study":
            raise fail(lines.key("after", "questions", i), f"a {kind} question compares the conditions: it comes "
                                                           "after the study (after = \"study\")")
        if kind in ("best", "worst") and len(conditions) < 2:
            raise fail(lines.key("kind", "questions", i), f"a {kind} question needs two conditions or more")
        if not text and kind != "text":
            raise fail(lines.header("questions", i), f"question {qid!r} needs a `text`")
        if not all(isinstance(x, str) for x in qlabels) or (qlabels and len(qlabels) != 2):
            raise fail(lines.key("labels", "questions", i), "labels are two strings: the anchors of 1 and of 5")
        qids.add(qid)
        questions.append(Question(qid, kind, text, after, tuple(qlabels), required))
        if sum(q.kind == "text" and q.after == after for q in questions) > MAX_TEXT_QUESTIONS:
            raise fail(lines.header("questions", i), f"more than {MAX_TEXT_QUESTIONS} free-text questions after "
                       f"{'each condition' if after == 'condition' else 'the study'}: a questionnaire is answered in "
                       "one `answers` message, which holds at most 64 KiB of text (each answer up to 2,000 "
                       "characters, up to 4 bytes each); split them between after = \"condition\" and \"study\", or "
                       "ask fewer")

    study = Study(name=name, title=get("title", str, name), order=order, conditions=conditions,
                  participants=list(codes), questions=questions, trials_per_condition=trials,
                  practice_trials=practice, practice_condition=practice_condition, task=task,
                  seed=get("seed", int, 0), accept_unbalanced=get("accept_unbalanced", bool, False))
    if order != "random" and len(conditions) > 1:
        rows = len(design_rows(len(conditions), order))
        if len(codes) % rows:
            lo, hi = len(codes) // rows * rows, (len(codes) // rows + 1) * rows
            counts = np.bincount([i % rows for i in range(len(codes))], minlength=rows)
            msg = (f"unbalanced design: {len(codes)} participants over the {rows} condition orders of a "
                   f"{'Latin square' if order == 'latin' else 'balanced (Williams) design'} of {len(conditions)} "
                   f"conditions: each order would be used {counts.min()} or {counts.max()} times")
            if not study.accept_unbalanced:
                nearest = f"{lo} or {hi}" if lo else f"{hi}"
                raise fail(plist_line, f"{msg}. Use a multiple of {rows} participants ({nearest}), "
                                       "or set accept_unbalanced = true")
            study.notes.append(msg)
    return study


def _kind_name(kind) -> str:
    return {str: "a string", int: "a whole number", bool: "true or false", list: "a list", dict: "a table"}.get(
        kind, kind.__name__)


# --- the store ----------------------------------------------------------------------------------------------------------

def plan(study: Study) -> list[list[tuple[int, bool]]]:
    """Each participant's trials in order: (condition index, practice)."""
    out = []
    practice_idx = next((i for i, c in enumerate(study.conditions) if c.name == study.practice_condition), None)
    for order in study.orders():
        trials = [(practice_idx if practice_idx is not None else order[0], True)] * study.practice_trials
        for c in order:
            trials += [(c, False)] * study.trials_per_condition
        out.append(trials)
    return out


def create_study(db: str | Path, study: Study, source: str = "") -> int:
    """Write the study, its conditions, participants and every participant's trials into the store."""
    from omokage.store import open_database
    conn = open_database(db)
    try:
        if conn.execute("SELECT 1 FROM studies WHERE name = ?", (study.name,)).fetchone():
            raise UserError(f"a study named {study.name!r} already exists in {db}; give the new one another name, "
                            f"or remove the old one first (`omokage study drop {study.name} --db {db}`)")
        rng = np.random.default_rng([study.seed, 7919])
        conn.execute("BEGIN IMMEDIATE")
        try:
            cur = conn.execute("INSERT INTO studies (name, created_at, source, config) VALUES (?, ?, ?, ?)",
                               (study.name, time.time(), source, json.dumps(study.to_json())))
            sid = cur.lastrowid
            cond_ids = []
            for i, c in enumerate(study.conditions):
                cond_ids.append(conn.execute(
                    "INSERT INTO conditions (study_id, idx, name, label, model, policy, start) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (sid, i, c.name, c.label, c.model, c.policy, c.start)).lastrowid)
            width = max(2, len(str(len(study.participants))))
            for p, (code, trials) in enumerate(zip(study.participants, plan(study))):
                pid = conn.execute("INSERT INTO participants (study_id, idx, code, pseudonym) VALUES (?, ?, ?, ?)",
                                   (sid, p, code, f"P{p + 1:0{width}d}")).lastrowid
                for t, (c, practice) in enumerate(trials):
                    conn.execute("INSERT INTO trials (participant_id, idx, condition_id, practice, seed, task) "
                                 "VALUES (?, ?, ?, ?, ?, ?)",
                                 (pid, t, cond_ids[c], int(practice), int(rng.integers(0, 2**31 - 1)), study.task))
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        return sid
    finally:
        conn.close()


def read_study(conn, name: str) -> tuple[int, Study]:
    row = conn.execute("SELECT id, config FROM studies WHERE name = ?", (name,)).fetchone()
    if row is None:
        names = [r[0] for r in conn.execute("SELECT name FROM studies ORDER BY id")]
        raise UserError(f"no study named {name!r} in the store; it has {', '.join(names) or 'none'} "
                        "(create one with `omokage study create STUDY.toml`)")
    return row[0], Study.from_json(json.loads(row[1]))
