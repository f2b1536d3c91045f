using UnityEngine;

namespace Omokage.Unity
{
    /// <summary>
    /// A "this one" button in the scene: selecting it (pointer dwell or trigger, or an XR interactable's select
    /// event wired to <see cref="OnPointerSelect"/>) decides on the face chosen last and opens its product page.
    /// Put it on an object with a Collider (e.g. a small Cube under the grid).
    /// </summary>
    [AddComponentMenu("Omokage/Omokage Decide Button")]
    public class OmokageDecideButton : MonoBehaviour, IOmokageSelectable
    {
        [SerializeField] CandidateGrid grid;

        [Tooltip("Tinted on hover (optional).")]
        [SerializeField] Renderer buttonRenderer;

        [SerializeField] Color normalColor = new Color(0.25f, 0.6f, 0.35f, 1f);
        [SerializeField] Color hoverColor = new Color(0.4f, 0.85f, 0.5f, 1f);
        [SerializeField] Color disabledColor = new Color(0.35f, 0.35f, 0.35f, 1f);

        Material _material;
        bool _hovered;

        public CandidateGrid Grid { get { return grid; } set { grid = value; } }

        public Renderer ButtonRenderer { get { return buttonRenderer; } set { buttonRenderer = value; _material = null; } }

        public bool IsSelectable { get { return grid != null && grid.CanDecide && grid.ChosenId.HasValue; } }

        public object DwellKey { get { return grid != null && grid.Current != null ? (object)grid.Current : this; } }

        public void OnPointerHover(bool hovered, float dwellProgress)
        {
            _hovered = hovered;
            Tint();
        }

        public void OnPointerSelect()
        {
            if (IsSelectable) grid.DecideChosen();
        }

        void Update() { Tint(); }

        void Tint()
        {
            if (_material == null && buttonRenderer != null) _material = buttonRenderer.material;
            if (_material == null) return;
            _material.color = !IsSelectable ? disabledColor : _hovered ? hoverColor : normalColor;
        }

        void OnDestroy()
        {
            if (_material != null) Destroy(_material);
        }
    }
}
