using UnityEngine;

namespace Omokage.Unity
{
    /// <summary>
    /// A "none of these" button in the scene (protocol v1.1): selecting it (pointer dwell or trigger, or an XR
    /// interactable's select event wired to <see cref="OnPointerSelect"/>) tells the server that no face of the grid is
    /// close and shows nine faces not seen yet (<see cref="CandidateGrid.Skip"/>). Put it on an object with a Collider.
    /// It stays disabled against a v1.0 server, which has no skip.
    /// </summary>
    [AddComponentMenu("Omokage/Omokage Skip Button")]
    public class OmokageSkipButton : MonoBehaviour, IOmokageSelectable
    {
        [SerializeField] CandidateGrid grid;

        [Tooltip("Tinted on hover (optional).")]
        [SerializeField] Renderer buttonRenderer;

        [SerializeField] Color normalColor = new Color(0.45f, 0.42f, 0.5f, 1f);
        [SerializeField] Color hoverColor = new Color(0.65f, 0.6f, 0.75f, 1f);
        [SerializeField] Color disabledColor = new Color(0.3f, 0.3f, 0.3f, 1f);

        Material _material;
        bool _hovered;

        public CandidateGrid Grid { get { return grid; } set { grid = value; } }

        public Renderer ButtonRenderer { get { return buttonRenderer; } set { buttonRenderer = value; _material = null; } }

        public bool IsSelectable { get { return grid != null && grid.CanSkip; } }

        // a new grid restarts the dwell: resting on the button skips once per grid, not repeatedly
        public object DwellKey { get { return grid != null && grid.Current != null ? (object)grid.Current : this; } }

        public void OnPointerHover(bool hovered, float dwellProgress)
        {
            _hovered = hovered;
            Tint();
        }

        public void OnPointerSelect()
        {
            if (IsSelectable) grid.Skip();
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
