using UnityEngine;

namespace Omokage.Client.Components
{
    /// <summary>
    /// A "this one" button in the scene: pressing it (the user's commit, never dwell) decides on the face chosen last;
    /// the grid then asks the user to confirm before the product page opens outside the app
    /// (<see cref="CandidateGrid.onOpenUrlRequested"/>). Put it on an object with a Collider (e.g. a small Cube).
    /// </summary>
    [AddComponentMenu("Omokage/Omokage Decide Button")]
    public class OmokageDecideButton : OmokageGridButton
    {
        public OmokageDecideButton()
            : base(new Color(0.25f, 0.6f, 0.35f, 1f), new Color(0.4f, 0.85f, 0.5f, 1f), new Color(0.35f, 0.35f, 0.35f, 1f)) { }

        public override bool IsSelectable { get { return grid != null && grid.CanDecide && grid.ChosenId.HasValue; } }

        protected override void Press() { grid.DecideChosen(); }
    }
}
