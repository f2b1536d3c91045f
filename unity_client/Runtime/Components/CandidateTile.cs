using Omokage.Client;
using UnityEngine;

namespace Omokage.Client.Components
{
    /// <summary>
    /// One face of the 3×3 grid: a renderer showing the texture, a TextMesh with the title, and hover / armed feedback.
    /// <see cref="CandidateGrid"/> fills it. An <see cref="OmokagePointer"/> dwelling on it arms it (tinted, dwell bar
    /// full); the user's press (trigger, confirm) chooses it. Or wire an XR Interaction Toolkit interactable's
    /// <c>Select Entered</c> event to <see cref="Select"/> and <c>Hover Entered/Exited</c> to
    /// <see cref="HoverEnter"/>/<see cref="HoverExit"/>.
    /// </summary>
    [AddComponentMenu("Omokage/Candidate Tile")]
    public class CandidateTile : MonoBehaviour, IOmokageSelectable
    {
        [Tooltip("Renderer whose material shows the face (e.g. a Quad with an unlit textured material).")]
        [SerializeField] Renderer imageRenderer;

        [Tooltip("Shows the item's title (optional).")]
        [SerializeField] TextMesh titleText;

        [Tooltip("Scaled along X from 0 to 1 while the pointer dwells (optional).")]
        [SerializeField] Transform dwellBar;

        [SerializeField] Color normalColor = Color.white;
        [SerializeField] Color hoverColor = new Color(1f, 0.92f, 0.6f, 1f);
        [Tooltip("Armed by dwell: a press now chooses this face.")]
        [SerializeField] Color armedColor = new Color(0.55f, 1f, 0.6f, 1f);
        [SerializeField] Color busyColor = new Color(0.6f, 0.6f, 0.6f, 1f);

        [Tooltip("Titles longer than this are shortened with an ellipsis.")]
        [SerializeField] int maxTitleChars = 32;

        Material _material;
        bool _hovered;
        bool _armed;

        public CandidateGrid Grid { get; set; }

        /// <summary>Position in the grid, 0 … 8 (row-major).</summary>
        public int Index { get; set; }

        /// <summary>The face shown (null when the slot is empty).</summary>
        public CandidateItem Item { get; private set; }

        public Texture2D Texture { get; private set; }

        /// <summary>The transform of the face's panel for gaze (<c>layout</c> and hits): the image renderer's, a unit quad
        /// whose lossy scale is the panel's size (as built tiles are); the tile's own without a renderer.</summary>
        public Transform PanelTransform { get { return imageRenderer != null ? imageRenderer.transform : transform; } }

        public bool IsSelectable { get { return Item != null && Grid != null && Grid.CanChoose; } }

        /// <summary>Dwell armed this tile: a press chooses it.</summary>
        public bool IsArmed { get { return _armed; } }

        // each grid brings new CandidateItem objects, so a new grid under a resting gaze disarms the tile
        public object DwellKey { get { return Item; } }

        /// <summary>Sets the renderer and label (for tiles built from code).</summary>
        public void Configure(Renderer image, TextMesh title, Transform bar = null)
        {
            imageRenderer = image;
            titleText = title;
            dwellBar = bar;
            _material = null;
        }

        /// <summary>Shows an item (texture comes later with <see cref="SetTexture"/>); null hides the slot.</summary>
        public void Show(CandidateItem item)
        {
            Item = item;
            gameObject.SetActive(item != null);
            if (titleText != null) titleText.text = item == null ? "" : Shorten(item.Title);
            SetTexture(null);
            OnPointerHover(false, 0f, false);
        }

        public void SetTexture(Texture2D texture)
        {
            Texture = texture;
            var material = Material();
            if (material != null) material.mainTexture = texture;
            Tint();
        }

        /// <summary>Choose this face (the next grid shows it first with its nearest neighbours).</summary>
        public void Select()
        {
            if (IsSelectable) Grid.Choose(this);
        }

        /// <summary>Settle on this face: ends the selection; the product page opens after the user confirms.</summary>
        public void Decide()
        {
            if (IsSelectable) Grid.Decide(this);
        }

        public void HoverEnter() { OnPointerHover(true, 0f, false); }

        public void HoverExit() { OnPointerHover(false, 0f, false); }

        public void OnPointerHover(bool hovered, float dwellProgress, bool armed)
        {
            _hovered = hovered;
            _armed = hovered && armed;
            if (dwellBar != null)
            {
                var s = dwellBar.localScale;
                dwellBar.localScale = new Vector3(hovered ? Mathf.Clamp01(dwellProgress) : 0f, s.y, s.z);
            }
            Tint();
        }

        public void OnPointerSelect() { Select(); }

        /// <summary>Refreshes the tint (the grid calls it when it becomes busy or idle).</summary>
        public void Tint()
        {
            var material = Material();
            if (material == null) return;
            material.color = Grid != null && Grid.Busy ? busyColor : _armed ? armedColor : _hovered ? hoverColor : normalColor;
        }

        Material Material()
        {
            if (_material == null && imageRenderer != null) _material = imageRenderer.material;  // a per-tile instance
            return _material;
        }

        string Shorten(string title)
        {
            if (title == null) return "";
            if (maxTitleChars <= 1 || title.Length <= maxTitleChars) return title;
            return title.Substring(0, maxTitleChars - 1) + "…";
        }

        void OnDestroy()
        {
            if (_material != null) Destroy(_material);
        }
    }
}
