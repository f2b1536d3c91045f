using UnityEngine;

namespace Omokage.Unity
{
    /// <summary>
    /// A "this one" button in the scene: selecting it (pointer dwell or trigger, or an XR interactable's select
    /// event wired to <see cref="OmokageGridButton.OnPointerSelect"/>) decides on the face chosen last and opens its
    /// product page. Put it on an object with a Collider (e.g. a small Cube under the grid).
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
