using UnityEngine;

namespace Omokage.Client.Components
{
    /// <summary>
    /// A "back" button in the scene (protocol v1.7): pressing it (the user's commit, never dwell; or an XR interactable's
    /// select event wired to <see cref="OmokageGridButton.OnPointerSelect"/>) undoes the last choose or skip, for when the
    /// controller's ray slipped onto the wrong face: the grid before it comes back as it was (<see cref="CandidateGrid.Back"/>).
    /// Put it on an object with a Collider. It is selectable (and tinted so) only while <see cref="CandidateGrid.CanGoBack"/>:
    /// not on a selection's first grid, not while a request is in flight, not after the decision, not in a study trial, not
    /// while offline or before a reconnection's restore, and not against a server older than v1.7. The grid that comes back
    /// disarms it, so one press goes back one step.
    /// </summary>
    [AddComponentMenu("Omokage/Omokage Back Button")]
    public class OmokageBackButton : OmokageGridButton
    {
        public OmokageBackButton()
            : base(new Color(0.35f, 0.45f, 0.6f, 1f), new Color(0.5f, 0.65f, 0.85f, 1f), new Color(0.3f, 0.3f, 0.3f, 1f)) { }

        public override bool IsSelectable { get { return grid != null && grid.CanGoBack; } }

        protected override void Press() { grid.Back(); }
    }
}
