using System;

namespace Omokage.Client
{
    /// <summary>
    /// Dwell selection: pointing at the same target for <see cref="DwellSeconds"/> fires once. Moving to
    /// another target (or to none) restarts the timer; after firing, the target must be left and re-entered
    /// (or <see cref="Rearm"/> called) before it fires again. Engine-free so it is unit-tested; the Unity
    /// pointer feeds it every frame.
    /// </summary>
    public sealed class DwellTimer
    {
        object _target;
        double _elapsed;
        bool _fired;

        public DwellTimer(double dwellSeconds = 1.2) { DwellSeconds = dwellSeconds; }

        public double DwellSeconds { get; set; }

        /// <summary>What is pointed at now (null for nothing).</summary>
        public object Target { get { return _target; } }

        /// <summary>0 … 1 towards firing on the current target.</summary>
        public double Progress
        {
            get
            {
                if (_target == null) return 0;
                if (_fired || DwellSeconds <= 0) return 1;
                return Math.Min(1.0, _elapsed / DwellSeconds);
            }
        }

        /// <summary>Advances by <paramref name="deltaSeconds"/> while pointing at <paramref name="target"/>; true on the frame it fires.</summary>
        public bool Update(object target, double deltaSeconds)
        {
            if (!ReferenceEquals(target, _target) && !Equals(target, _target))
            {
                _target = target;
                _elapsed = 0;
                _fired = false;
                if (target == null) return false;
            }
            if (_target == null || _fired) return false;
            _elapsed += Math.Max(0, deltaSeconds);
            if (_elapsed < DwellSeconds) return false;
            _fired = true;
            return true;
        }

        /// <summary>Lets the current target fire again after a full dwell (e.g. when the grid under it changed).</summary>
        public void Rearm()
        {
            _elapsed = 0;
            _fired = false;
        }

        public void Reset()
        {
            _target = null;
            Rearm();
        }
    }
}
