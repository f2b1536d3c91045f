"""Walks each participant of a study through their plan: trials in counterbalanced order, questionnaires after each
condition and at the end. Lives on the server's event loop; the ServerConnection asks it what comes next.

Progress is read from the event store when the server starts (only committed events: what a participant was told
happened did happen), then kept in memory as the connections report each step. A trial interrupted by a
disconnect or a crash is resumed by replaying its committed picks with the trial's seed: the participant sees
the grid they last saw.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from omokage.errors import UserError
from omokage.store.db import stored_json
from omokage.selection import is_policy
from omokage.study.definition import Condition, Question, Study, read_study


@dataclass(eq=False)
class TrialState:
    id: int
    idx: int
    condition: Condition
    practice: bool
    seed: int
    task: str
    block: int                       # which condition block (0-based) of the participant's order; -1: practice
    target: int | None = None
    query: np.ndarray | None = None
    started: bool = False
    done: bool = False
    actions: list[tuple] = field(default_factory=list)   # ("choose", id) | ("skip",) | ("rate", id, rating)


@dataclass(eq=False)
class QuestionnaireStep:
    id: str                          # block-1 ... block-N, final
    title: str
    questions: list[Question]
    choices: dict[str, str]          # best/worst: label shown -> condition name stored
    condition: str | None = None     # a block's condition (name)

    def wire_items(self) -> list[dict[str, Any]]:
        items = []
        for q in self.questions:
            item: dict[str, Any] = {"id": q.id, "kind": q.kind, "text": q.text, "required": q.required}
            if q.kind == "likert":
                item.update(min=1, max=5)
                if q.labels:
                    item["labels"] = list(q.labels)
            elif q.kind in ("best", "worst"):
                item["choices"] = list(self.choices)
            items.append(item)
        return items

    def check(self, answers: Sequence[dict[str, Any]]) -> dict[str, Any]:
        """{item: value} to store (best/worst as condition names), or ValueError naming the problem."""
        by_id = {q.id: q for q in self.questions}
        out: dict[str, Any] = {}
        for a in answers:
            q = by_id.get(a["item"])
            if q is None:
                raise ValueError(f"item {a['item'][:64]!r} is not in questionnaire {self.id!r} (its items: "
                                 f"{', '.join(by_id)})")
            v = a["value"]
            if q.kind == "likert":
                if not isinstance(v, int) or not 1 <= v <= 5:
                    raise ValueError(f"{q.id}: a Likert answer is an integer from 1 to 5, not {v!r}")
            elif q.kind in ("best", "worst"):
                if v not in self.choices:
                    raise ValueError(f"{q.id}: answer one of {', '.join(self.choices)}, not {str(v)[:64]!r}")
                v = self.choices[v]
            elif not isinstance(v, str):
                raise ValueError(f"{q.id}: a free-text answer is a string")
            elif q.required and not v.strip():
                raise ValueError(f"{q.id}: this question needs an answer; an empty text does not count")
            out[q.id] = v
        missing = [q.id for q in self.questions if q.required and q.id not in out]
        if missing:
            raise ValueError(f"questionnaire {self.id!r} needs an answer to {', '.join(missing)}")
        # one best and one worst question: the same condition for both is a slip (the report would count one vote
        # each way for it); several of either cannot be paired, and are taken as they are
        best = [q.id for q in self.questions if q.kind == "best" and q.id in out]
        worst = [q.id for q in self.questions if q.kind == "worst" and q.id in out]
        if (len(best) == 1 and len(worst) == 1 and len([q for q in self.questions if q.kind in ("best", "worst")]) == 2
                and out[best[0]] == out[worst[0]]):
            shown = next(label for label, name in self.choices.items() if name == out[best[0]])
            raise ValueError(f"{best[0]} and {worst[0]} both name {shown!r}: choose a different one for each")
        return out


@dataclass(eq=False)
class ParticipantState:
    id: int
    code: str
    pseudonym: str
    steps: list                      # TrialState | QuestionnaireStep, in order
    answered: set[str] = field(default_factory=set)
    owner: str | None = None         # the session (connection) that speaks for this participant now
    gaze_profile: dict | None = None  # v1.4: their latest gaze calibration ({A, b, ...}), applied to their gaze
    stale: bool = False              # a step of theirs failed to be recorded: memory is ahead of the store

    @property
    def trials(self) -> list[TrialState]:
        return [s for s in self.steps if isinstance(s, TrialState)]


class StudyUnavailable(UserError):
    """A participant's progress cannot be read from the event store right now."""


class StudyRunner:
    def __init__(self, study_id: int, study: Study, participants: list[ParticipantState]):
        self.study_id = study_id
        self.study = study
        self.name = study.name
        self.by_code = {p.code: p for p in participants}
        self.participants = participants
        self.db: Path | None = None      # the event store it was loaded from (set by `load`)

    # -- loading ----------------------------------------------------------------------------------------------------
    @classmethod
    def load(cls, db: str | Path, name: str) -> "StudyRunner":
        from omokage.store import open_database
        conn = open_database(db, create=False)
        try:
            study_id, study = read_study(conn, name)
            conds = cls._conditions(conn, study_id, study)
            participants = [cls._read_participant(conn, study, conds, pid, code, pseudonym, db)
                            for pid, code, pseudonym in
                            conn.execute("SELECT id, code, pseudonym FROM participants WHERE study_id = ? ORDER BY idx",
                                         (study_id,)).fetchall()]
        finally:
            conn.close()
        runner = cls(study_id, study, participants)
        runner.db = Path(db)
        return runner

    @staticmethod
    def _conditions(conn, study_id: int, study: Study) -> dict[int, Condition]:
        return {cid: study.conditions[idx] for cid, idx in
                conn.execute("SELECT id, idx FROM conditions WHERE study_id = ?", (study_id,))}

    @classmethod
    def _read_participant(cls, conn, study: Study, conds: dict[int, Condition], pid: int, code: str,
                          pseudonym: str, path: str | Path) -> ParticipantState:
        """One participant's progress as the store has it (committed events only)."""
        trials = []
        block, last = -1, None
        for tid, idx, cid, practice, seed, task, target, query, started, completed in conn.execute(
                "SELECT id, idx, condition_id, practice, seed, task, target, query, started_at, completed_at "
                "FROM trials WHERE participant_id = ? ORDER BY idx", (pid,)).fetchall():
            if not practice and cid != last:
                block, last = block + 1, cid
            t = TrialState(tid, idx, conds[cid], bool(practice), seed, task, -1 if practice else block,
                           target=target, query=np.frombuffer(query, dtype=np.float32) if query else None,
                           started=started is not None, done=completed is not None)
            if t.started and not t.done:
                for seq, kind, body in conn.execute(
                        "SELECT seq, kind, body FROM events WHERE trial_id = ? AND direction = 'log' AND kind IN "
                        "('choose', 'skip', 'rate', 'gaze') ORDER BY seq", (tid,)):
                    rec = stored_json(body, path, f"events seq {seq}")
                    if kind == "gaze":   # only gaze that became evidence changes the grids
                        if rec.get("evidence") and "evidence_faces" in rec:
                            t.actions.append(("gaze", tuple(rec["evidence_faces"]), tuple(rec["evidence_units"])))
                        continue
                    t.actions.append(("choose", rec["item"]) if kind == "choose" else ("skip",) if kind == "skip"
                                     else ("rate", rec["item"], rec["rating"]))
            trials.append(t)
        answered = {r[0] for r in conn.execute(
            "SELECT DISTINCT questionnaire FROM answers WHERE participant_id = ?", (pid,))}
        profile = None
        for seq, body in conn.execute(   # the latest calibration that fitted (a failed one keeps the one before)
                "SELECT e.seq, e.body FROM events e JOIN sessions s ON s.id = e.session_id WHERE s.participant_id = ? "
                "AND e.direction = 'log' AND e.kind = 'calibration' ORDER BY e.seq DESC", (pid,)):
            profile = stored_json(body, path, f"events seq {seq}").get("profile")
            if profile:
                break
        return ParticipantState(pid, code, pseudonym, cls._steps(study, trials), answered, gaze_profile=profile or None)

    def _reload(self, p: ParticipantState) -> None:
        """Read `p`'s progress from the store again, in place (connections and `by_code` keep the same object)."""
        from omokage.store.db import connect
        if self.db is None:
            raise StudyUnavailable("this study was not loaded from an event store, so a participant whose step could "
                                   "not be recorded cannot be read back")
        try:
            conn = connect(self.db)    # read-write like `load`: a read-only open of a WAL file needs its -shm to exist
            try:
                fresh = self._read_participant(conn, self.study, self._conditions(conn, self.study_id, self.study),
                                               p.id, p.code, p.pseudonym, self.db)
            finally:
                conn.close()
        except Exception as exc:   # sqlite3 errors, a damaged row: the store cannot say where they stand
            raise StudyUnavailable(f"this participant's progress could not be read from the event store "
                                   f"({type(exc).__name__}); try again shortly") from None
        p.steps, p.answered, p.gaze_profile, p.stale = fresh.steps, fresh.answered, fresh.gaze_profile, False

    @staticmethod
    def _steps(study: Study, trials: list[TrialState]) -> list:
        """Trials in order, a questionnaire after each condition's block (when the study asks per condition), and the
        final questionnaire (when it asks at the end)."""
        per_condition = study.questionnaire_items("condition")
        final = study.questionnaire_items("study")
        order: list[Condition] = []
        steps: list = []
        for n, t in enumerate(trials):
            steps.append(t)
            if t.practice:
                continue
            if t.condition not in order:
                order.append(t.condition)
            last_of_block = n + 1 == len(trials) or trials[n + 1].block != t.block
            if last_of_block and per_condition:
                steps.append(QuestionnaireStep(f"block-{t.block + 1}", f"About {t.condition.label}", per_condition,
                                               {}, t.condition.name))
        if final:
            steps.append(QuestionnaireStep("final", "Comparing the systems", final,
                                           {c.label: c.name for c in order}))
        return steps

    def check_served(self, algorithms: Sequence[str], policies: Sequence[str]) -> None:
        for c in self.study.conditions:
            if c.model not in algorithms:
                raise UserError(f"study {self.name!r}, condition {c.name!r} needs the model {c.model!r}, which this "
                                f"server does not serve (it serves {', '.join(algorithms)}); fit it first "
                                f"(`omokage fit CATALOG --models {c.model} --out MODELS`)")
            if c.policy not in policies and not is_policy(c.policy):   # any belief policy may read gaze
                raise UserError(f"study {self.name!r}, condition {c.name!r} needs the policy {c.policy!r}; this server "
                                f"offers {', '.join(policies)}")

    # -- the connections' questions ------------------------------------------------------------------------------------
    def admit(self, code: str, session_id: str) -> ParticipantState | None:
        """The participant with this code, now spoken for by `session_id` (a reconnect takes over from a connection
        that has not noticed it is gone), or None for a code not in the study. StudyUnavailable when their progress
        must be read from the store again (`unrecorded`) and cannot be."""
        p = self.by_code.get(code)
        if p is not None:
            if p.stale:
                self._reload(p)
            p.owner = session_id
        return p

    def unrecorded(self, p: ParticipantState) -> None:
        """A step of `p` changed their state in memory (a pick, a finished trial, answers) but its events were not
        committed (the store failed to write). The store is the truth: their progress is read from it again when they
        next connect, so they resume where the store has them, not past a step that was never kept."""
        p.stale = True
        p.owner = None

    def owns(self, p: ParticipantState, session_id: str) -> bool:
        return p.owner == session_id

    def disconnected(self, session_id: str) -> None:
        for p in self.participants:
            if p.owner == session_id:
                p.owner = None

    def current(self, p: ParticipantState):
        """The participant's next step: a TrialState, a QuestionnaireStep, or None when they are done."""
        for s in p.steps:
            if isinstance(s, TrialState):
                if not s.done:
                    return s
            elif s.id not in p.answered:
                return s
        return None

    def position(self, p: ParticipantState) -> dict[str, Any]:
        """`welcome.study`: where the participant stands."""
        trials = p.trials
        step = self.current(p)
        nxt = "done" if step is None else "trial" if isinstance(step, TrialState) else "questionnaire"
        return {"name": self.name, "title": self.study.title, "trials": len(trials),
                "completed": sum(t.done for t in trials), "next": nxt}

    def trial_map(self, p: ParticipantState, t: TrialState, target: dict[str, Any] | None) -> dict[str, Any]:
        out: dict[str, Any] = {"index": t.idx + 1, "count": len(p.trials), "practice": t.practice,
                               "label": t.condition.label, "task": t.task}
        if target is not None:
            out["target"] = target
        return out
