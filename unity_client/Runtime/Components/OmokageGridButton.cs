using UnityEngine;

namespace Omokage.Unity
{
    /// <summary>
    /// The shared part of the scene buttons that act on a <see cref="CandidateGrid"/> (decide, none of these):
    /// selectable by pointer dwell or trigger (or an XR interactable's select event wired to
    /// <see cref="OnPointerSelect"/>), tinted by state, and one dwell per grid. Needs a Collider.
    /// </summary>
    public abstract class OmokageGridButton : MonoBehaviour, IOmokageSelectable
    {
        [SerializeField] protected CandidateGrid grid;

        [Tooltip("Tinted on hover (optional).")]
        [SerializeField] Renderer buttonRenderer;

        [SerializeField] Color normalColor;
        [SerializeField] Color hoverColor;
        [SerializeField] Color disabledColor;

        Material _material;
        bool _hovered;

        // Unity constructs components with the parameterless constructor of the subclass, which passes its colours
        // here; values saved in a scene override them afterwards.
        protected OmokageGridButton(Color normal, Color hover, Color disabled)
        {
            normalColor = normal;
            hoverColor = hover;
            disabledColor = disabled;
        }

        public CandidateGrid Grid { get { return grid; } set { grid = value; } }

        public Renderer ButtonRenderer { get { return buttonRenderer; } set { buttonRenderer = value; _material = null; } }

        public abstract bool IsSelectable { get; }

        /// <summary>What selecting the button does (called only when <see cref="IsSelectable"/>).</summary>
        protected abstract void Press();

        // a new grid restarts the dwell: resting on the button acts once per grid, not repeatedly
        public object DwellKey { get { return grid != null && grid.Current != null ? (object)grid.Current : this; } }

        public void OnPointerHover(bool hovered, float dwellProgress)
        {
            _hovered = hovered;
            Tint();
        }

        public void OnPointerSelect()
        {
            if (IsSelectable) Press();
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
