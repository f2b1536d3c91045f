"""The selection loop: a sans-I/O session state machine and the policies that pick candidates."""

from omokage.selection.policy import (Candidate, CandidatePolicy, ChosenPlusNearest, FeatureSpace, PolicyContext,
                                      RandomPolicy)
from omokage.selection.session import (GRID_SIZE, Decision, Event, NotACandidate, SelectionSession, SessionError,
                                       SessionState, Step, WrongState)

__all__ = ["Candidate", "CandidatePolicy", "ChosenPlusNearest", "Decision", "Event", "FeatureSpace", "GRID_SIZE",
           "NotACandidate", "PolicyContext", "RandomPolicy", "SelectionSession", "SessionError", "SessionState", "Step",
           "WrongState"]
