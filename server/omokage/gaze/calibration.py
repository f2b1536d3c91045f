"""Gaze calibration: targets shown at known directions, samples collected while the user looks at each, and an affine
correction in yaw/pitch fitted on the server, reported as the standard eye-tracking quality figures:

- **accuracy**: the mean angle between each target and the corrected gaze's median on it (degrees);
- **precision**: the RMS of the angles between successive corrected samples on a target (RMS-S2S, degrees).

Yaw and pitch are measured in the scene frame with −z forward and +y up (the frame of `calibration/*.json` and of
`Layout.grid`): yaw = atan2(x, −z), pitch = asin(y). The correction is applied in that frame, which is right while
the head faces the grid as it does during calibration and selection (eye-in-head angles would need the head pose).

Profiles are JSON (no pickle), one per participant (`ProfileStore`), with a default per device in
`calibration/devices/`. A calibration that does not converge raises `CalibrationError` naming why; the store then
keeps the previous profile.
"""

from __future__ import annotations

import json
import math
import os
import re
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from omokage.gaze.fixations import angle_deg

MIN_TARGETS = 4
MIN_SAMPLES_PER_TARGET = 5
MAX_ACCURACY_DEG = 3.0       # a fit worse than this is not accepted
MAX_CONDITION = 1e4
MIN_SPREAD_DEG = 1.0         # the targets' gaze must spread at least this much in both directions (RMS)


class CalibrationError(ValueError):
    pass


def yaw_pitch(direction: np.ndarray) -> np.ndarray:
    d = np.asarray(direction, np.float64)
    return np.degrees(np.stack([np.arctan2(d[..., 0], -d[..., 2]), np.arcsin(np.clip(d[..., 1], -1, 1))], axis=-1))


def direction(yp: np.ndarray) -> np.ndarray:
    y, p = np.radians(yp[..., 0]), np.radians(yp[..., 1])
    return np.stack([np.cos(p) * np.sin(y), np.sin(p), -np.cos(p) * np.cos(y)], axis=-1)


@dataclass
class Profile:
    """true (yaw, pitch) ≈ A · measured (yaw, pitch) + b, degrees."""

    A: list[list[float]] = field(default_factory=lambda: [[1.0, 0.0], [0.0, 1.0]])
    b: list[float] = field(default_factory=lambda: [0.0, 0.0])
    accuracy_deg: float | None = None
    precision_deg: float | None = None
    targets: int = 0
    device: str | None = None
    participant: str | None = None
    fitted_at: str | None = None
    source: str | None = None    # the gaze it was fitted on (`head` or `eye`); None: a default for every source

    def apply(self, directions: np.ndarray) -> np.ndarray:
        yp = yaw_pitch(directions)
        out = yp @ np.asarray(self.A).T + np.asarray(self.b)
        return direction(out)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1) + "\n"

    @classmethod
    def from_json(cls, text: str) -> "Profile":
        return cls.from_dict(json.loads(text))

    @classmethod
    def from_dict(cls, d) -> "Profile":
        """From a profile's fields (a profile file's, or the `profile` of a logged calibration)."""
        if not isinstance(d, dict):
            raise CalibrationError("a profile is a map with A (2×2) and b (2)")
        A, b = d.get("A"), d.get("b")
        if not (isinstance(A, list) and len(A) == 2 and all(isinstance(r, list) and len(r) == 2 for r in A)
                and isinstance(b, list) and len(b) == 2
                and all(isinstance(x, (int, float)) and math.isfinite(x) for x in [*A[0], *A[1], *b])):
            raise CalibrationError("a profile needs A (2×2) and b (2) of finite numbers")
        keep = {k: d[k] for k in ("accuracy_deg", "precision_deg", "targets", "device", "participant", "fitted_at")
                if k in d}
        if d.get("source") in ("head", "eye"):
            keep["source"] = d["source"]
        return cls([[float(x) for x in r] for r in A], [float(x) for x in b], **keep)


@dataclass(frozen=True)
class TargetSamples:
    yaw: float                  # the target's direction, degrees
    pitch: float
    directions: np.ndarray      # (m, 3) gaze directions collected while it was shown (after the settle time)


def fit(targets: list[TargetSamples], device: str | None = None, participant: str | None = None) -> Profile:
    """Fit the affine correction; raises CalibrationError when it does not converge."""
    usable = [t for t in targets if len(t.directions) >= MIN_SAMPLES_PER_TARGET
              and np.isfinite(np.asarray(t.directions)).all()]
    if len(usable) < MIN_TARGETS:
        raise CalibrationError(f"only {len(usable)} target(s) with at least {MIN_SAMPLES_PER_TARGET} samples; "
                               f"need {MIN_TARGETS}")
    measured = np.array([np.median(yaw_pitch(t.directions), axis=0) for t in usable])   # (n, 2)
    true = np.array([[t.yaw, t.pitch] for t in usable])
    X = np.hstack([measured, np.ones((len(usable), 1))])
    spread = np.linalg.svd(measured - measured.mean(axis=0), compute_uv=False) / math.sqrt(len(usable))
    if spread.min() < MIN_SPREAD_DEG or np.linalg.cond(X) > MAX_CONDITION:
        raise CalibrationError("the targets' gaze does not span two dimensions (all on one line?); repeat the "
                               "calibration looking at each target")
    coef, *_ = np.linalg.lstsq(X, true, rcond=None)     # (3, 2)
    A, b = coef[:2].T, coef[2]
    profile = Profile(A.tolist(), b.tolist(), device=device, participant=participant, targets=len(usable),
                      fitted_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
    acc, prec = quality(profile, usable)
    profile.accuracy_deg, profile.precision_deg = round(acc, 4), round(prec, 4)
    if not acc <= MAX_ACCURACY_DEG:
        raise CalibrationError(f"accuracy {acc:.2f}° after the fit, worse than {MAX_ACCURACY_DEG:g}°; the previous "
                               "profile is kept")
    return profile


def quality(profile: Profile, targets: list[TargetSamples]) -> tuple[float, float]:
    """(accuracy, precision) in degrees of `profile` on these targets."""
    errs, s2s = [], []
    for t in targets:
        d = profile.apply(np.asarray(t.directions, np.float64))
        med = direction(np.median(yaw_pitch(d), axis=0))
        errs.append(float(angle_deg(med, direction(np.array([t.yaw, t.pitch])))))
        if len(d) > 1:
            s2s.append(angle_deg(d[1:], d[:-1]) ** 2)
    prec = float(np.sqrt(np.concatenate(s2s).mean())) if s2s else float("nan")
    return float(np.mean(errs)), prec


MIN_CONFIDENCE = 0.5   # samples below this count as gaps (as in fixation detection)


def targets_from_samples(layout: dict, shown, t: np.ndarray, source: np.ndarray, directions: np.ndarray,
                         confidence: np.ndarray, source_code: int) -> list[TargetSamples]:
    """The samples of one source taken while each target was on screen: `shown` = [(target index, t_start, t_end)]
    on the samples' clock; indices beyond the layout's targets raise CalibrationError."""
    out = []
    targets = layout["targets"]
    for index, t0, t1 in shown:
        if not 0 <= int(index) < len(targets):
            raise CalibrationError(f"target {index} is not in the pattern (it has {len(targets)} targets, 0 to "
                                   f"{len(targets) - 1})")
        keep = (source == source_code) & (t >= t0) & (t <= t1) & (confidence >= MIN_CONFIDENCE)
        tg = targets[int(index)]
        out.append(TargetSamples(float(tg["yaw"]), float(tg["pitch"]), np.asarray(directions[keep], np.float64)))
    return out


def default_layouts_dir() -> Path | None:
    """The repository's calibration/ folder (beside server/), where the patterns are; None when omokage runs from
    somewhere without it."""
    here = Path(__file__).resolve().parents[3] / "calibration"
    return here if here.is_dir() else None


def load_patterns(folder: str | os.PathLike | None = None) -> dict[str, dict]:
    """Every calibration pattern (folder/*.json, by its `name`), checked; {} when there is no folder."""
    folder = Path(folder) if folder is not None else default_layouts_dir()
    if folder is None:
        return {}
    patterns = {}
    for path in sorted(folder.glob("*.json")):
        layout = load_layout(path)
        patterns[str(layout.get("name") or path.stem)] = layout
    return patterns


def load_device_profiles(folder: str | os.PathLike | None = None) -> dict[str, "Profile"]:
    """The default profile of each headset model (folder/devices/NAME.json, by file name: `hello.device` names one),
    checked; {} when there is none. A calibration replaces a device's default for its session (and, for a study
    participant, for good)."""
    folder = Path(folder) if folder is not None else default_layouts_dir()
    if folder is None or not (folder / "devices").is_dir():
        return {}
    profiles = {}
    for path in sorted((folder / "devices").glob("*.json")):
        try:
            profiles[path.stem] = Profile.from_dict(json.loads(path.read_text()))
        except (ValueError, CalibrationError) as exc:
            raise CalibrationError(f"{path}: {exc}") from None
    return profiles


def load_layout(path: str | os.PathLike) -> dict:
    """A calibration layout (calibration/*.json): {name, distance_m, settle_s, dwell_s, targets: [{yaw, pitch}]}."""
    d = json.loads(Path(path).read_text())
    targets = d.get("targets")
    if not isinstance(targets, list) or len(targets) < MIN_TARGETS or not all(
            isinstance(t, dict) and all(isinstance(t.get(k), (int, float)) for k in ("yaw", "pitch"))
            for t in targets):
        raise CalibrationError(f"{path}: `targets` must list at least {MIN_TARGETS} {{yaw, pitch}} in degrees")
    return d


_SAFE = re.compile(r"[^A-Za-z0-9_.-]")


class ProfileStore:
    """Profiles per participant as JSON files under `root` (written atomically), and defaults per device."""

    def __init__(self, root: str | os.PathLike, devices: str | os.PathLike | None = None):
        self.root = Path(root)
        self.devices = Path(devices) if devices is not None else None

    def _path(self, participant: str) -> Path:
        return self.root / f"{_SAFE.sub('_', participant)[:64]}.json"

    def load(self, participant: str, device: str | None = None) -> Profile | None:
        for path in (self._path(participant),
                     *([self.devices / f"{_SAFE.sub('_', device)}.json"] if device and self.devices else [])):
            try:
                return Profile.from_json(path.read_text())
            except (OSError, ValueError):
                continue
        return None

    def calibrate(self, participant: str, targets: list[TargetSamples], device: str | None = None
                  ) -> tuple[Profile | None, str | None]:
        """Fit and save. Returns (the profile now in force, the error if the fit failed): on failure the previous
        profile stays, untouched."""
        try:
            profile = fit(targets, device, participant)
        except CalibrationError as exc:
            return self.load(participant, device), str(exc)
        self.root.mkdir(parents=True, exist_ok=True)
        path = self._path(participant)
        tmp = path.with_suffix(f".tmp-{os.getpid()}")
        tmp.write_text(profile.to_json())
        os.replace(tmp, path)
        return profile, None
