"""The selection loop as a pure state machine: no clock, no sockets, no files.

    NEW --start--> BROWSING --choose / skip / rate / back--> BROWSING --decide--> DECIDED

Every transition appends an `Event`; the caller (server, test, simulated user) decides what to do
with them (send, log, learn). Which faces are shown next is delegated to a `CandidatePolicy`.
"""

from __future__ import annotations

import copy
import enum
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from omokage.selection.policy import Candidate, CandidatePolicy, ChosenPlusNearest, FeatureSpace, PolicyContext

GRID_SIZE = 9


class SessionError(Exception):
    """A request the session cannot honour. `code` maps onto protocol error codes."""

    code = "bad_request"


class WrongState(SessionError):
    code = "wrong_state"


class NotACandidate(SessionError):
    code = "not_found"


class SessionState(enum.Enum):
    NEW = "new"
    BROWSING = "browsing"
    DECIDED = "decided"


@dataclass(frozen=True)
class Event:
    """One transition. `at` is the caller's timestamp (seconds), passed in: the session has no clock."""

    kind: str                      # "start" | "choose" | "skip" | "rate" | "evidence" | "back" | "decide"
    step: int
    algorithm: str
    item: int | None
    candidates: tuple[int, ...]
    at: float | None = None
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Step:
    step: int                      # 1 for the first grid
    candidates: tuple[Candidate, ...]

    @property
    def ids(self) -> tuple[int, ...]:
        return tuple(c.id for c in self.candidates)


@dataclass(frozen=True)
class Decision:
    item: int
    step: int


class SelectionSession:
    def __init__(self, space: FeatureSpace, *, seed: int | None = None, policy: CandidatePolicy | None = None,
                 grid_size: int = GRID_SIZE):
        if grid_size < 2:
            raise ValueError("grid_size must be at least 2 (the chosen face plus one more)")
        self.space = space
        self.seed = seed
        self.policy = policy if policy is not None else ChosenPlusNearest()
        self.policy_name = str(getattr(self.policy, "name", type(self.policy).__name__))
        self.grid_size = grid_size
        # `back` rebuilds the session from its inputs, so it needs the same random stream again: a seed is drawn
        # when none was given (the same distribution as an unseeded generator), and the policy is kept as `start`
        # finds it (no belief yet: a small copy)
        self._seed = seed if seed is not None else int(np.random.SeedSequence().generate_state(1, np.uint64)[0] >> 1)
        self.rng = np.random.default_rng(self._seed)
        self._pristine_policy = None       # the policy as `start` found it (set there)
        self._inputs: list[tuple] = []     # what was asked of it, in order: ("start" | "choose" | ..., args...)
        self.state = SessionState.NEW
        self.shown: set[int] = set()
        self.history: list[Step] = []
        self.events: list[Event] = []
        self.decision: Decision | None = None
        self.ratings: dict[int, int] = {}   # the latest rating of each rated face (re-rating replaces it)

    @property
    def algorithm(self) -> str:
        return self.space.name

    @property
    def current(self) -> Step | None:
        return self.history[-1] if self.history else None

    def _context(self) -> PolicyContext:
        return PolicyContext(space=self.space, rng=self.rng, shown=frozenset(self.shown), grid_size=self.grid_size,
                             history=tuple(self.history))

    def _emit(self, kind: str, item: int | None, step: Step | None, at: float | None, **detail) -> None:
        ids = step.ids if step is not None else ()
        event = Event(kind, len(self.history), self.algorithm, item, ids, at, detail)
        self.events.append(event)
        self.policy.observe(event)

    def _show(self, candidates: Sequence[Candidate]) -> Step:
        ids = [c.id for c in candidates]
        if len(set(ids)) != len(ids):
            raise AssertionError(f"policy {type(self.policy).__name__} returned duplicate items: {ids}")
        step = Step(len(self.history) + 1, tuple(candidates))
        self.history.append(step)
        self.shown.update(ids)
        return step

    def start(self, query: np.ndarray | None = None, *, at: float | None = None, evidence: Sequence = ()) -> Step:
        """First grid: random faces, or the faces nearest to `query` (an image projected into the space), or the ones
        `evidence` (terms such as a drawing's `SketchTerm`) makes most likely; the evidence stays in the belief."""
        if self.state is not SessionState.NEW:
            raise WrongState(f"start is allowed once, at the beginning; this session is {self.state.value}")
        if query is not None:
            query = np.asarray(query, dtype=np.float32).reshape(-1)
            if query.shape[0] != self.space.dim or not np.isfinite(query).all():
                raise ValueError(f"query must be a finite {self.space.dim}-d vector")
        if self._pristine_policy is None:   # a rebuild for `back` brings its own
            self._pristine_policy = copy.deepcopy(self.policy)
        if evidence:
            step = self._show(self.policy.initial(self._context(), query, evidence))
        else:
            step = self._show(self.policy.initial(self._context(), query))
        self.state = SessionState.BROWSING
        self._inputs.append(("start", query, tuple(evidence), at))
        init = "image" if query is not None else "sketch" if evidence else "random"
        self._emit("start", None, step, at, init=init, seed=self.seed, policy=self.policy_name)
        return step

    def choose(self, item_id: int, *, at: float | None = None) -> Step:
        """The user picked `item_id` from the current grid: show it first, then the policy's next faces."""
        self._require_candidate(item_id, "choose")
        step = self._show(self.policy.next(self._context(), int(item_id)))
        if step.candidates[0].id != item_id:
            raise AssertionError("policy must put the chosen item first")
        self._inputs.append(("choose", int(item_id), at))
        self._emit("choose", int(item_id), step, at)
        return step

    def skip(self, *, at: float | None = None) -> Step:
        """"None of these": every face of the current grid is worse than what the user wants; 9 unseen faces follow."""
        if self.state is not SessionState.BROWSING:
            raise WrongState(f"skip needs a started, undecided session; this session is {self.state.value}")
        if len(self.shown) >= self.space.n_items:
            raise WrongState("every face of the catalog has been shown: choose or decide from this grid")
        skipped = self.current.ids
        step = self._show(self.policy.skip(self._context()))
        self._inputs.append(("skip", at))
        self._emit("skip", None, step, at, skipped=list(skipped))
        return step

    def rate(self, item_id: int, rating: int, *, at: float | None = None) -> None:
        """An explicit 1-5 rating of a face shown in this session (5: very like what I want). Evidence only: the grid
        stays; the next one reflects it."""
        from omokage.selection.belief import RatingTerm
        if self.state is not SessionState.BROWSING:
            raise WrongState(f"rate needs a started, undecided session; this session is {self.state.value}")
        if int(item_id) not in self.shown:
            raise NotACandidate(f"item {item_id} has not been shown in this session")
        if isinstance(rating, bool) or not 1 <= int(rating) <= 5:
            raise SessionError(f"a rating is an integer from 1 to 5, not {rating!r}")
        previous = self.ratings.get(int(item_id))   # replaced, not added to
        # the policy's own term where it has one (parameters fitted from logs), else the defaults
        make = getattr(self.policy, "rating_term", None)
        term = (make(int(item_id), int(rating), previous) if make is not None
                else RatingTerm(int(item_id), int(rating), previous=previous))
        self._add_evidence(term, at=at, kind="rate",
                           item=int(item_id), rating=int(rating))
        self.ratings[int(item_id)] = int(rating)
        self._inputs.append(("rate", int(item_id), int(rating), at))

    def add_evidence(self, term, *, at: float | None = None, kind: str = "evidence", item: int | None = None,
                     **detail) -> None:
        """Any other evidence about what the user wants (an `EvidenceTerm`: gaze dwell, a sketch, ...), for the
        policy's belief. The session does not need to know what kind it is."""
        self._add_evidence(term, at=at, kind=kind, item=item, **detail)
        self._inputs.append(("evidence", term, at, kind, item, detail))

    def _add_evidence(self, term, *, at, kind, item, **detail) -> None:
        if self.state is not SessionState.BROWSING:
            raise WrongState(f"{kind} needs a started, undecided session; this session is {self.state.value}")
        self.policy.add_evidence(self._context(), term)
        detail.setdefault("term", type(term).__name__)
        self._emit(kind, item, None, at, **detail)

    def back(self, *, at: float | None = None) -> Step:
        """Undo the last `choose` or `skip` (a misclick: a controller ray slips): the grid before it returns, exactly
        as it was, and the belief forgets that pick, the gaze evidence that came with it and everything since. Ratings
        given on the grid that returns are kept. Built by replaying the inputs before it on the pristine policy with
        the same seed (the grids are the same ones), so it costs one replay, and nothing per step. A server may run
        `rebuilt_without_last_pick` off its event loop and `adopt` the result (what this does in one go)."""
        return self.adopt(self.rebuilt_without_last_pick(), at=at)

    def check_back(self) -> None:
        """The errors `back` would raise now (a decided or unstarted selection, the first grid)."""
        if self.state is not SessionState.BROWSING:
            raise WrongState(f"back needs a started, undecided session; this session is {self.state.value}")
        if not any(inp[0] in ("choose", "skip") for inp in self._inputs):
            raise WrongState("this is the selection's first grid: there is no earlier one to go back to")

    def rebuilt_without_last_pick(self, inputs: Sequence[tuple] | None = None) -> "SelectionSession":
        """A new session: this one as it was before its last choose or skip (see `back`). Reads `inputs` (default: a
        copy of this session's, taken now) and the pristine policy only, so it may run on another thread while this
        session is left alone."""
        inputs = list(self._inputs if inputs is None else inputs)
        picks = [i for i, inp in enumerate(inputs) if inp[0] in ("choose", "skip")]
        if not picks:
            raise WrongState("this is the selection's first grid: there is no earlier one to go back to")
        since = picks[-2] if len(picks) > 1 else 0   # where the grid that returns was shown
        # its gaze was evidence added at the pick being undone: the user looks at that grid afresh
        keep = [inp for i, inp in enumerate(inputs[:picks[-1]])
                if not (i > since and inp[0] == "evidence" and inp[3] == "gaze")]
        fresh = SelectionSession(self.space, seed=self._seed, policy=copy.deepcopy(self._pristine_policy),
                                 grid_size=self.grid_size)
        fresh.seed, fresh._pristine_policy = self.seed, self._pristine_policy   # the seed its events name: as given
        for inp in keep:
            fresh._replay(inp)
        fresh._undone = (inputs[picks[-1]][0], sum(1 for inp in inputs if inp[0] in ("start", "choose", "skip")))
        return fresh

    def adopt(self, fresh: "SelectionSession", *, at: float | None = None) -> Step:
        """Become `fresh` (from `rebuilt_without_last_pick`): its state and its events, then a `back` event."""
        self.check_back()
        undone, left = fresh.__dict__.pop("_undone")
        self.__dict__.update(fresh.__dict__)
        step = self.current
        # `events` become the events of the state it is back in (what the ideal face reads; the log already has what
        # happened), and this one
        self.events.append(Event("back", step.step, self.algorithm, None, step.ids, at,
                                 {"undone": undone, "left_step": left}))
        return step

    def _replay(self, inp: tuple) -> None:
        kind = inp[0]
        if kind == "start":
            self.start(inp[1], at=inp[3], evidence=inp[2])
        elif kind == "choose":
            self.choose(inp[1], at=inp[2])
        elif kind == "skip":
            self.skip(at=inp[1])
        elif kind == "rate":
            self.rate(inp[1], inp[2], at=inp[3])
        else:
            term, at, ev_kind, item, detail = inp[1:]
            self.add_evidence(term, at=at, kind=ev_kind, item=item, **detail)

    def decide(self, item_id: int, *, at: float | None = None) -> Decision:
        """The user settled on `item_id` from the current grid: the session ends."""
        self._require_candidate(item_id, "decide")
        self.state = SessionState.DECIDED
        self.decision = Decision(int(item_id), len(self.history))
        self._emit("decide", int(item_id), None, at)
        return self.decision

    def _require_candidate(self, item_id: int, action: str) -> None:
        if self.state is not SessionState.BROWSING:
            raise WrongState(f"{action} needs a started, undecided session; this session is {self.state.value}")
        if item_id not in self.current.ids:
            raise NotACandidate(f"item {item_id} is not among the current candidates {list(self.current.ids)}")
