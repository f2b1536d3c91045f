using System;

namespace Omokage.Client
{
    /// <summary>
    /// Dwell arms; it never selects. Pointing at the same target for <see cref="DwellSeconds"/> arms it (the target shows
    /// it); only the user's explicit press commits (<see cref="PointerSelection.Press"/>). Gaze is a signal, the selection is
    /// the user's. When what the target shows changes under the pointer (a new grid), the target is disarmed and stays
    /// blocked until the pointer leaves it and comes back, so resting the eyes on one spot never walks through grids.
    /// Engine-free so it is unit-tested; the Unity pointer feeds it every frame.
    /// </summary>
    public sealed class DwellArming
    {
        object _target;
        object _content;
        double _elapsed;
        bool _armed;
        bool _blocked;

        public DwellArming(double dwellSeconds = 1.2) { DwellSeconds = dwellSeconds; }

        public double DwellSeconds { get; set; }

        /// <summary>What is pointed at now (null for nothing).</summary>
        public object Target { get { return _target; } }

        /// <summary>The current target was dwelt on long enough: a press would commit it.</summary>
        public bool Armed { get { return _armed; } }

        /// <summary>The content changed under the pointer, or the target was just committed: no dwell until the pointer leaves.</summary>
        public bool Blocked { get { return _blocked; } }

        /// <summary>0 … 1 towards arming the current target (1 once armed; 0 while blocked).</summary>
        public double Progress
        {
            get
            {
                if (_target == null || _blocked) return 0;
                if (_armed || DwellSeconds <= 0) return 1;
                return Math.Min(1.0, _elapsed / DwellSeconds);
            }
        }

        /// <summary>
        /// One frame of pointing at <paramref name="target"/>, which shows <paramref name="content"/> (e.g. the candidate on
        /// a tile); <paramref name="armable"/> false (e.g. a request in flight) holds the dwell at zero. True on the frame the
        /// target becomes armed.
        /// </summary>
        public bool Update(object target, object content, bool armable, double deltaSeconds)
        {
            if (!Same(target, _target))
            {
                _target = target;
                _content = content;
                Restart(false);
            }
            else if (!Same(content, _content))
            {
                _content = content;
                Restart(true);  // a new grid under a resting gaze arms nothing
            }
            if (_target == null || _blocked || _armed) return false;
            if (!armable)
            {
                _elapsed = 0;
                return false;
            }
            _elapsed += Math.Max(0, deltaSeconds);
            if (_elapsed < DwellSeconds) return false;
            _armed = true;
            return true;
        }

        /// <summary>Drops the arming and blocks the current target until the pointer leaves it (after a commit).</summary>
        public void Disarm() { Restart(_target != null); }

        /// <summary>Forgets the target (nothing pointed at, nothing blocked).</summary>
        public void Reset()
        {
            _target = null;
            _content = null;
            Restart(false);
        }

        void Restart(bool blocked)
        {
            _elapsed = 0;
            _armed = false;
            _blocked = blocked;
        }

        static bool Same(object a, object b) { return ReferenceEquals(a, b) || Equals(a, b); }
    }
}
