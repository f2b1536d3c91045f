"""The selection loop: a sans-I/O session state machine, a belief over what the user wants, and display policies.

Policies by name (`make_policy`): `study` (the reference study's chosen + 8 nearest unseen), `random` (chosen + 8
random unseen: the benchmark's floor), and the belief policies of `omokage.selection.policies`: `cover`, `infogain`,
`thompson`, `top`. `DEFAULT_POLICY` is the one `omokage bench choice` ranks best (docs/preference-model.md).
"""

import inspect

from omokage.selection.belief import (Belief, ChoiceTerm, EvidenceTerm, PassedOverTerm, QueryTerm, RatingTerm,
                                      SkipTerm)
from omokage.selection.policies import (BeliefPolicy, CoverPosterior, InformationGain, MostProbable,
                                        ThompsonSampling)
from omokage.selection.policy import (Candidate, CandidatePolicy, ChosenPlusNearest, FeatureSpace, PolicyContext,
                                      RandomPolicy)
from omokage.selection.session import (GRID_SIZE, Decision, Event, NotACandidate, SelectionSession, SessionError,
                                       SessionState, Step, WrongState)

POLICIES = {cls.name: cls for cls in (InformationGain, CoverPosterior, ThompsonSampling, MostProbable,
                                      ChosenPlusNearest, RandomPolicy)}
DEFAULT_POLICY = "thompson"
# what the server offers (welcome.policies), the default first; `top` is kept for the benchmark only (it starves the
# belief), `random` is offered as a control condition for studies
SERVED_POLICIES = (DEFAULT_POLICY,) + tuple(n for n in POLICIES if n not in (DEFAULT_POLICY, "top"))


class UnknownPolicy(ValueError):
    pass


def make_policy(name: str, **params) -> CandidatePolicy:
    """A fresh policy (policies keep per-session state). Parameters a policy does not take are ignored, so one set of
    fitted user-model parameters (e.g. `temperature`) can be passed to any policy."""
    try:
        cls = POLICIES[name]
    except KeyError:
        raise UnknownPolicy(f"unknown policy {name!r}; choose from {', '.join(POLICIES)}") from None
    if cls.__init__ is object.__init__:
        return cls()
    accepted = inspect.signature(cls.__init__).parameters
    if any(p.kind is p.VAR_KEYWORD for p in accepted.values()) and issubclass(cls, BeliefPolicy):
        accepted = {**inspect.signature(BeliefPolicy.__init__).parameters, **accepted}
    params = {k: v for k, v in params.items() if k in accepted}
    return cls(**params)


__all__ = ["Belief", "BeliefPolicy", "Candidate", "CandidatePolicy", "ChoiceTerm", "ChosenPlusNearest",
           "CoverPosterior", "DEFAULT_POLICY", "Decision", "Event", "EvidenceTerm", "FeatureSpace", "GRID_SIZE",
           "InformationGain", "MostProbable", "NotACandidate", "POLICIES", "PassedOverTerm", "PolicyContext",
           "QueryTerm", "RandomPolicy", "RatingTerm", "SERVED_POLICIES", "SelectionSession", "SessionError",
           "SessionState", "SkipTerm", "Step", "ThompsonSampling", "UnknownPolicy", "WrongState", "make_policy"]
