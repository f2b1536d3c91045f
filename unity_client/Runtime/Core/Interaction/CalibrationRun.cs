using System;
using System.Collections.Generic;

namespace Omokage.Client
{
    /// <summary>Where a <see cref="CalibrationRun"/> stands.</summary>
    public enum CalibrationPhase
    {
        /// <summary>No <see cref="CalibrationRun.Update"/> yet: nothing shown.</summary>
        NotStarted,
        /// <summary>A target is shown and the eyes move to it and settle (<c>settle_s</c>): its gaze is not used.</summary>
        Settling,
        /// <summary>A target is shown and its gaze is collected (<c>dwell_s</c>).</summary>
        Collecting,
        /// <summary>Every target has been shown: send <see cref="CalibrationRun.Shown"/> with <c>calibrate.end</c>.</summary>
        Done,
    }

    /// <summary>
    /// The engine-free half of a gaze calibration (protocol v1.4; <c>OmokageCalibration</c> is the MonoBehaviour half): from the
    /// <c>calibration</c> reply and the server's clock, which target to show and where, and when each was shown.
    /// <list type="bullet">
    /// <item>Call <see cref="Update"/> every frame with the server's time (<see cref="ClockSync.ServerNow"/>, the clock the gaze
    /// samples are stamped with). The first call shows target 0; each target then settles for <see cref="SettleS"/> and is
    /// collected for <see cref="DwellS"/>, and the next appears on the first frame after that.</item>
    /// <item>Each target shown is recorded as [index, t_start = appeared + settle_s, t_end = appeared + settle_s + dwell_s]
    /// (<see cref="Shown"/>, what <c>calibrate.end</c> carries): the interval lies within the frames the target was on
    /// screen, however late a frame comes (a late frame only keeps the target up longer).</item>
    /// <item>The current target's direction (<see cref="X"/>, <see cref="Y"/>, <see cref="Z"/>) is a unit vector in the
    /// protocol's scene frame (−z forward, +y up; <see cref="SceneFrame"/> converts to Unity's world): draw it
    /// <see cref="DistanceM"/> from the viewer.</item>
    /// </list>
    /// <see cref="Update"/> allocates nothing. Main thread only.
    /// </summary>
    public sealed class CalibrationRun
    {
        readonly CalibrationTarget[] _targets;
        readonly List<CalibrationShown> _shown;
        int _current = -1;
        double _appeared;
        CalibrationPhase _phase = CalibrationPhase.NotStarted;

        /// <summary>A run of the targets of a <c>calibration</c> reply.</summary>
        public CalibrationRun(CalibrationMessage calibration)
            : this(Require(calibration).Targets, calibration.DistanceM, calibration.SettleS, calibration.DwellS) { }

        /// <summary>A run of <paramref name="targets"/> (1 … 64), each settling <paramref name="settleS"/> ≥ 0 and collected
        /// <paramref name="dwellS"/> &gt; 0 seconds, drawn <paramref name="distanceM"/> &gt; 0 metres away.</summary>
        public CalibrationRun(IReadOnlyList<CalibrationTarget> targets, double distanceM, double settleS, double dwellS)
        {
            if (targets == null) throw new ArgumentNullException("targets");
            if (targets.Count < 1 || targets.Count > CalibrationShown.MaxPerMessage)
                throw new ArgumentOutOfRangeException("targets", targets.Count, "a calibration shows 1 … 64 targets");
            if (!(distanceM > 0) || double.IsInfinity(distanceM)) throw new ArgumentOutOfRangeException("distanceM", distanceM, "must be > 0");
            if (!(settleS >= 0) || double.IsInfinity(settleS)) throw new ArgumentOutOfRangeException("settleS", settleS, "must be ≥ 0");
            if (!(dwellS > 0) || double.IsInfinity(dwellS)) throw new ArgumentOutOfRangeException("dwellS", dwellS, "must be > 0");
            _targets = new CalibrationTarget[targets.Count];
            for (int i = 0; i < _targets.Length; i++) _targets[i] = targets[i];
            _shown = new List<CalibrationShown>(_targets.Length);  // filled to capacity at most: Add never grows it
            DistanceM = distanceM;
            SettleS = settleS;
            DwellS = dwellS;
        }

        static CalibrationMessage Require(CalibrationMessage calibration)
        {
            if (calibration == null) throw new ArgumentNullException("calibration");
            return calibration;
        }

        /// <summary>How many targets the run shows.</summary>
        public int Count { get { return _targets.Length; } }

        public CalibrationTarget Target(int index) { return _targets[index]; }

        /// <summary>Metres from the viewer to draw the targets at.</summary>
        public double DistanceM { get; private set; }

        public double SettleS { get; private set; }

        public double DwellS { get; private set; }

        /// <summary>The shortest the run can take: every target's settle and dwell time (seconds).</summary>
        public double Duration { get { return _targets.Length * (SettleS + DwellS); } }

        public CalibrationPhase Phase { get { return _phase; } }

        /// <summary>Every target has been shown.</summary>
        public bool Done { get { return _phase == CalibrationPhase.Done; } }

        /// <summary>The index of the target shown now; −1 before the first <see cref="Update"/> and when done.</summary>
        public int Current { get { return _phase == CalibrationPhase.Settling || _phase == CalibrationPhase.Collecting ? _current : -1; } }

        /// <summary>The server time at which the current target appeared.</summary>
        public double Appeared { get { return _appeared; } }

        /// <summary>The current target's unit direction in the scene frame (−z forward, +y up), from the viewer.</summary>
        public double X { get; private set; }

        public double Y { get; private set; }

        public double Z { get; private set; }

        /// <summary>How far the current target is through its settle time, 0 … 1 (1 while collecting): e.g. to shrink it as the
        /// eyes settle.</summary>
        public double SettleProgress { get; private set; }

        /// <summary>The targets shown so far, in order: [index, t_start, t_end] on the server's clock, for <c>calibrate.end</c>
        /// (all <see cref="Count"/> once <see cref="Done"/>).</summary>
        public IReadOnlyList<CalibrationShown> Shown { get { return _shown; } }

        /// <summary>
        /// Advances the run to <paramref name="serverNow"/> (seconds on the server's clock, as the gaze samples are stamped) and
        /// returns the phase: the first call shows target 0; a target whose settle and dwell time have passed is recorded in
        /// <see cref="Shown"/> and the next is shown from now. Allocates nothing.
        /// </summary>
        public CalibrationPhase Update(double serverNow)
        {
            if (_phase == CalibrationPhase.Done) return _phase;
            if (double.IsNaN(serverNow) || double.IsInfinity(serverNow)) throw new ArgumentOutOfRangeException("serverNow", serverNow, "must be finite");
            if (_current < 0) Show(0, serverNow);
            double start = _appeared + SettleS, end = start + DwellS;
            if (serverNow >= end)
            {
                _shown.Add(new CalibrationShown(_current, start, end));
                if (_current + 1 >= _targets.Length)
                {
                    _phase = CalibrationPhase.Done;
                    SettleProgress = 1;
                    return _phase;
                }
                Show(_current + 1, serverNow);
                start = _appeared + SettleS;
            }
            _phase = serverNow < start ? CalibrationPhase.Settling : CalibrationPhase.Collecting;
            SettleProgress = SettleS <= 0 ? 1 : Math.Max(0, Math.Min(1, (serverNow - _appeared) / SettleS));
            return _phase;
        }

        void Show(int index, double now)
        {
            _current = index;
            _appeared = now;
            double x, y, z;
            Direction(_targets[index].Yaw, _targets[index].Pitch, out x, out y, out z);
            X = x;
            Y = y;
            Z = z;
        }

        /// <summary>The unit direction of (<paramref name="yawDeg"/>, <paramref name="pitchDeg"/>) in the scene frame (−z forward,
        /// +y up, +x right): (cos p sin y, sin p, −cos p cos y), so that yaw = atan2(x, −z) and pitch = asin(y).</summary>
        public static void Direction(double yawDeg, double pitchDeg, out double x, out double y, out double z)
        {
            double yaw = yawDeg * Math.PI / 180, pitch = pitchDeg * Math.PI / 180;
            x = Math.Cos(pitch) * Math.Sin(yaw);
            y = Math.Sin(pitch);
            z = -Math.Cos(pitch) * Math.Cos(yaw);
        }

        /// <summary>The yaw and pitch (degrees) of a direction in the scene frame, as the server measures gaze: yaw = atan2(x, −z),
        /// pitch = asin(y) of the normalised direction.</summary>
        public static void YawPitch(double x, double y, double z, out double yawDeg, out double pitchDeg)
        {
            double norm = Math.Sqrt(x * x + y * y + z * z);
            if (!(norm > 0)) throw new ArgumentException("a direction must not be zero");
            yawDeg = Math.Atan2(x, -z) * 180 / Math.PI;
            pitchDeg = Math.Asin(Math.Max(-1, Math.Min(1, y / norm))) * 180 / Math.PI;
        }
    }

    /// <summary>
    /// The protocol's scene frame and Unity's world. Gaze rays, <c>layout</c> panels and calibration targets are in the scene
    /// frame: right-handed, −z forward, +y up, +x right (as OpenXR and WebXR), in which the server measures yaw = atan2(x, −z)
    /// and pitch = asin(y) and applies a calibration's correction. Unity's world is left-handed with +z forward, so the
    /// conversion mirrors z: a point or direction (x, y, z) ↔ (x, y, −z), a rotation (x, y, z, w) ↔ (−x, −y, z, w) (what
    /// Unity's OpenXR plugin does). It is its own inverse, and it keeps every ray's hit on every panel (u, v) unchanged. A user
    /// facing Unity's +z (the sample's grid straight ahead) looks at yaw 0, pitch 0.
    /// </summary>
    public static class SceneFrame
    {
        /// <summary>Mirrors a point or direction between Unity's world and the scene frame (z negated).</summary>
        public static double MirrorZ(double z) { return -z; }

        /// <summary>A panel pose from Unity's world in the scene frame, or back.</summary>
        public static PanelPose Mirror(PanelPose pose)
        {
            pose.Pz = -pose.Pz;
            pose.Qx = -pose.Qx;
            pose.Qy = -pose.Qy;
            return pose;
        }
    }
}
