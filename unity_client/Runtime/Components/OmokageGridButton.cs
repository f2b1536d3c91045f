using UnityEngine;

namespace Omokage.Client.Components
{
    /// <summary>
    /// A button in the scene that an <see cref="OmokagePointer"/> can point at: tinted by state (disabled, hovered, armed),
    /// pressed only by the user's commit (<see cref="OmokagePointer.SelectHovered"/>, or an XR interactable's select event
    /// wired to <see cref="OnPointerSelect"/>), never by dwell alone. Needs a Collider.
    /// </summary>
    public abstract class OmokageButton : MonoBehaviour, IOmokageSelectable
    {
        [Tooltip("Tinted by state (optional).")]
        [SerializeField] Renderer buttonRenderer;

        [SerializeField] Color normalColor;
        [SerializeField] Color hoverColor;
        [SerializeField] Color armedColor;
        [SerializeField] Color disabledColor;

        Material _material;
        bool _hovered;
        bool _armed;

        // Unity constructs components with the parameterless constructor of the subclass, which passes its colours
        // here; values saved in a scene override them afterwards.
        protected OmokageButton(Color normal, Color hover, Color disabled)
        {
            normalColor = normal;
            hoverColor = hover;
            armedColor = Color.Lerp(hover, Color.white, 0.5f);
            disabledColor = disabled;
        }

        public Renderer ButtonRenderer { get { return buttonRenderer; } set { buttonRenderer = value; _material = null; } }

        public abstract bool IsSelectable { get; }

        /// <summary>What pressing the button does (called only when <see cref="IsSelectable"/>).</summary>
        protected abstract void Press();

        /// <summary>What the button stands for now; when it changes under the pointer, the pointer disarms it.</summary>
        public virtual object DwellKey { get { return this; } }

        public void OnPointerHover(bool hovered, float dwellProgress, bool armed)
        {
            _hovered = hovered;
            _armed = hovered && armed;
            Tint();
        }

        public void OnPointerSelect()
        {
            if (IsSelectable) Press();
        }

        protected virtual void Update() { Tint(); }

        void Tint()
        {
            if (_material == null && buttonRenderer != null) _material = buttonRenderer.material;
            if (_material == null) return;
            _material.color = !IsSelectable ? disabledColor : _armed ? armedColor : _hovered ? hoverColor : normalColor;
        }

        protected virtual void OnDestroy()
        {
            if (_material != null) Destroy(_material);
        }
    }

    /// <summary>A button acting on a <see cref="CandidateGrid"/> (decide, none of these); a new grid disarms it.</summary>
    public abstract class OmokageGridButton : OmokageButton
    {
        [SerializeField] protected CandidateGrid grid;

        protected OmokageGridButton(Color normal, Color hover, Color disabled) : base(normal, hover, disabled) { }

        public CandidateGrid Grid { get { return grid; } set { grid = value; } }

        public override object DwellKey { get { return grid != null && grid.Current != null ? (object)grid.Current : this; } }
    }
}
