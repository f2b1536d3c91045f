"""Head and eye gaze as implicit preference (issue 13): samples off the wire, the grid's layout and the ray-cast,
fixation detection (I-VT, I-DT), per-candidate figures per step, calibration, and the simulated gaze of the choice
benchmark. Pure numpy, no I/O: the connection (omokage.protocol.connection) drives it. docs/gaze.md."""

from omokage.gaze.fixations import Fixation, IDTConfig, IVTConfig, angle_deg, detect_idt, detect_ivt
from omokage.gaze.samples import (DROP_REASONS, EYE, HEAD, NO_HIT, NOT_CAST, Drops, Layout, LayoutError, Samples,
                                  parse_layout, parse_samples, ray_cast)
from omokage.gaze.stats import PanelStats, panel_stats
from omokage.gaze.tracker import (MAX_RATE_HZ, MAX_SAMPLES_PER_BATCH, GazeTracker, IngestResult, StepGaze)

__all__ = ["DROP_REASONS", "Drops", "EYE", "Fixation", "GazeTracker", "HEAD", "IDTConfig", "IVTConfig",
           "IngestResult", "Layout", "LayoutError", "MAX_RATE_HZ", "MAX_SAMPLES_PER_BATCH", "NOT_CAST", "NO_HIT",
           "PanelStats", "Samples", "StepGaze", "angle_deg", "detect_idt", "detect_ivt", "panel_stats",
           "parse_layout", "parse_samples", "ray_cast"]
