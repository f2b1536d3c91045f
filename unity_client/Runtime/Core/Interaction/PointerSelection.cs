using System;

namespace Omokage.Client
{
    /// <summary>
    /// Something a pointer can point at and select: a candidate tile, a grid button, a confirm button. Engine-free so the
    /// pointer logic (<see cref="PointerSelection"/>) is unit-tested; the Unity components implement it.
    /// </summary>
    public interface IOmokageSelectable
    {
        /// <summary>Whether selecting would do something now (false while a request is in flight).</summary>
        bool IsSelectable { get; }

        /// <summary>What the target shows (e.g. the candidate on a tile): when it changes under the pointer, the target is
        /// disarmed until the pointer leaves it and comes back.</summary>
        object DwellKey { get; }

        /// <summary>Pointer state: hovered or not, the dwell's progress 0 … 1, and whether it is armed (a press commits it).</summary>
        void OnPointerHover(bool hovered, float dwellProgress, bool armed);

        /// <summary>The user committed it (a trigger or confirm press; never dwell alone).</summary>
        void OnPointerSelect();
    }

    /// <summary>
    /// What one pointer (a controller ray or the head's gaze) does with its targets: hover feedback, dwell
    /// <em>arming</em> (<see cref="DwellArming"/>) and the commit on the user's press (<see cref="Press"/>). Dwell alone
    /// never selects anything. With <see cref="RequireArmed"/> (head gaze) a press commits only a target the user has
    /// dwelt on, so a trigger pressed for something else does not pick whatever the head happens to face.
    /// </summary>
    public sealed class PointerSelection
    {
        readonly DwellArming _dwell = new DwellArming();
        readonly Func<IOmokageSelectable, bool> _isAlive;
        IOmokageSelectable _hovered;

        /// <param name="isAlive">Whether a target still exists (Unity: a destroyed component compares equal to null).</param>
        public PointerSelection(Func<IOmokageSelectable, bool> isAlive = null)
        {
            _isAlive = isAlive ?? (t => t != null);
            DwellArms = true;
        }

        /// <summary>Dwelling arms the target (and shows progress); off: hover feedback only.</summary>
        public bool DwellArms { get; set; }

        /// <summary>A press commits only an armed target (for head gaze).</summary>
        public bool RequireArmed { get; set; }

        public double DwellSeconds { get { return _dwell.DwellSeconds; } set { _dwell.DwellSeconds = value; } }

        public IOmokageSelectable Hovered { get { return _hovered; } }

        /// <summary>The hovered target, when the dwell armed it.</summary>
        public IOmokageSelectable Armed { get { return _dwell.Armed && IsAlive(_hovered) ? _hovered : null; } }

        public double DwellProgress { get { return _dwell.Progress; } }

        /// <summary>One frame of pointing at <paramref name="target"/> (null for nothing).</summary>
        public void PointAt(IOmokageSelectable target, double deltaSeconds)
        {
            if (!IsAlive(target)) target = null;
            if (!ReferenceEquals(target, _hovered))
            {
                if (IsAlive(_hovered)) _hovered.OnPointerHover(false, 0f, false);
                _hovered = target;
            }
            if (target == null)
            {
                _dwell.Update(null, null, false, deltaSeconds);
                return;
            }
            bool selectable = target.IsSelectable;
            _dwell.Update(target, target.DwellKey, DwellArms && selectable, deltaSeconds);
            bool armed = DwellArms && selectable && _dwell.Armed;
            target.OnPointerHover(true, DwellArms && selectable ? (float)_dwell.Progress : 0f, armed);
        }

        /// <summary>
        /// The user's press (controller trigger, confirm button): commits the hovered target if it is selectable (and armed,
        /// with <see cref="RequireArmed"/>); then disarms it until the pointer leaves. True when something was committed.
        /// </summary>
        public bool Press()
        {
            var target = _hovered;
            if (!IsAlive(target) || !target.IsSelectable) return false;
            if (RequireArmed && !_dwell.Armed) return false;
            _dwell.Disarm();
            target.OnPointerHover(true, 0f, false);
            target.OnPointerSelect();
            return true;
        }

        /// <summary>Forgets the hovered target (e.g. the pointer was disabled).</summary>
        public void Clear()
        {
            if (IsAlive(_hovered)) _hovered.OnPointerHover(false, 0f, false);
            _hovered = null;
            _dwell.Reset();
        }

        bool IsAlive(IOmokageSelectable target) { return target != null && _isAlive(target); }
    }
}
