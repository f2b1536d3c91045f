"""The selection loop: a sans-I/O session state machine, a belief over what the user wants, and display policies.

Policies by name (`make_policy`): `study` (the reference study's chosen + 8 nearest unseen), `random` (chosen + 8
random unseen: the benchmark's floor), and the belief policies of `omokage.selection.policies`: `cover`, `infogain`,
`thompson`, `top`. `DEFAULT_POLICY` is the one `omokage bench choice` ranks best (docs/preference-model.md).
"""

import inspect

from omokage.selection.belief import (Belief, ChoiceTerm, EvidenceTerm, GazeTerm, PassedOverTerm, QueryTerm,
                                      RatingTerm, SkipTerm)
from omokage.selection.policies import (GAZE_SUFFIX, BeliefPolicy, CoverPosterior, InformationGain, MostProbable,
                                        ThompsonSampling)
from omokage.selection.policy import (Candidate, CandidatePolicy, ChosenPlusNearest, FeatureSpace, PolicyContext,
                                      RandomPolicy)
from omokage.selection.session import (GRID_SIZE, Decision, Event, NotACandidate, SelectionSession, SessionError,
                                       SessionState, Step, WrongState)

POLICIES = {cls.name: cls for cls in (InformationGain, CoverPosterior, ThompsonSampling, MostProbable,
                                      ChosenPlusNearest, RandomPolicy)}
DEFAULT_POLICY = "thompson"
# what the server offers (welcome.policies), the default first; `top` is kept for the benchmark only (it starves the
# belief), `random` is offered as a control condition for studies; `thompson+gaze` (v1.2) also reads the gaze the
# client streams (docs/gaze.md). Any belief policy takes the suffix (`infogain+gaze`, ...): make_policy builds it.
SERVED_POLICIES = ((DEFAULT_POLICY,) + tuple(n for n in POLICIES if n not in (DEFAULT_POLICY, "top"))
                   + (DEFAULT_POLICY + GAZE_SUFFIX,))


class UnknownPolicy(ValueError):
    pass


def make_policy(name: str, **params) -> CandidatePolicy:
    """A fresh policy (policies keep per-session state). Parameters a policy does not take are ignored, so one set of
    fitted user-model parameters (e.g. `temperature`) can be passed to any policy."""
    base, gaze = (name[:-len(GAZE_SUFFIX)], True) if name.endswith(GAZE_SUFFIX) else (name, False)
    try:
        cls = POLICIES[base]
    except KeyError:
        raise UnknownPolicy(f"unknown policy {name!r}; choose from {', '.join(POLICIES)} (a belief policy also as "
                            f"NAME{GAZE_SUFFIX})") from None
    if gaze:
        if not issubclass(cls, BeliefPolicy):
            raise UnknownPolicy(f"policy {base!r} keeps no belief, so it cannot read gaze: {name!r} does not exist")
        params = {**params, "gaze": True}
    else:
        params = {k: v for k, v in params.items() if k != "gaze"}
    if cls.__init__ is object.__init__:
        return cls()
    accepted = inspect.signature(cls.__init__).parameters
    if any(p.kind is p.VAR_KEYWORD for p in accepted.values()) and issubclass(cls, BeliefPolicy):
        accepted = {**inspect.signature(BeliefPolicy.__init__).parameters, **accepted}
    params = {k: v for k, v in params.items() if k in accepted}
    return cls(**params)


def is_policy(name: str) -> bool:
    """A name make_policy accepts: a registered policy, or a belief policy with the gaze suffix."""
    base = name[:-len(GAZE_SUFFIX)] if name.endswith(GAZE_SUFFIX) else name
    return base in POLICIES and (base == name or issubclass(POLICIES[base], BeliefPolicy))


__all__ = ["Belief", "BeliefPolicy", "Candidate", "CandidatePolicy", "ChoiceTerm", "ChosenPlusNearest",
           "CoverPosterior", "DEFAULT_POLICY", "Decision", "Event", "EvidenceTerm", "FeatureSpace", "GAZE_SUFFIX",
           "GRID_SIZE", "GazeTerm", "is_policy",
           "InformationGain", "MostProbable", "NotACandidate", "POLICIES", "PassedOverTerm", "PolicyContext",
           "QueryTerm", "RandomPolicy", "RatingTerm", "SERVED_POLICIES", "SelectionSession", "SessionError",
           "SessionState", "SkipTerm", "Step", "ThompsonSampling", "UnknownPolicy", "WrongState", "make_policy"]
