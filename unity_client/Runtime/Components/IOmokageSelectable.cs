namespace Omokage.Unity
{
    /// <summary>
    /// Something an <see cref="OmokagePointer"/> can point at and select: a <see cref="CandidateTile"/> or the
    /// <see cref="OmokageDecideButton"/>. Needs a Collider on its GameObject or a child for Physics.Raycast.
    /// </summary>
    public interface IOmokageSelectable
    {
        /// <summary>Whether selecting would do something now (false while a request is in flight).</summary>
        bool IsSelectable { get; }

        /// <summary>Identifies what is shown, for the dwell timer: when it changes (a new grid), dwelling starts over.</summary>
        object DwellKey { get; }

        /// <summary>Pointer entered (true, progress 0 … 1 of the dwell) or left (false, 0).</summary>
        void OnPointerHover(bool hovered, float dwellProgress);

        /// <summary>The pointer selected it (trigger press or dwell).</summary>
        void OnPointerSelect();
    }
}
