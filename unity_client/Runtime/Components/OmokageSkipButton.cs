using UnityEngine;

namespace Omokage.Client.Components
{
    /// <summary>
    /// A "none of these" button in the scene (protocol v1.1): pressing it (the user's commit, never dwell; or an XR
    /// interactable's select event wired to <see cref="OmokageGridButton.OnPointerSelect"/>) tells the server that no
    /// face of the grid is close and shows nine faces not seen yet (<see cref="CandidateGrid.Skip"/>). Put it on an
    /// object with a Collider. It stays disabled against a v1.0 server, which has no skip.
    /// </summary>
    [AddComponentMenu("Omokage/Omokage Skip Button")]
    public class OmokageSkipButton : OmokageGridButton
    {
        public OmokageSkipButton()
            : base(new Color(0.45f, 0.42f, 0.5f, 1f), new Color(0.65f, 0.6f, 0.75f, 1f), new Color(0.3f, 0.3f, 0.3f, 1f)) { }

        public override bool IsSelectable { get { return grid != null && grid.CanSkip; } }

        protected override void Press() { grid.Skip(); }
    }
}
