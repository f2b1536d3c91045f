using Omokage.Client.Components;
using UnityEngine;

namespace Omokage.Client.Samples
{
    /// <summary>
    /// The sample's notice when the selection went on elsewhere (protocol v1.7): another connection presented this one's
    /// resume token while it was still open, the server closed this one, and nothing reconnects (that would start another
    /// selection over the user's head). A world-space panel in front of the grid says so in the web page's words
    /// (<see cref="CandidateGrid.WentElsewhereTitle"/>, <see cref="CandidateGrid.WentElsewhereText"/>) and has one button,
    /// "Start a new one here" (<see cref="CandidateGrid.StartNewHere"/>: a new connection without the token, and a new
    /// selection on it), pressed like every button (dwell only arms). Shown by <see cref="CandidateGrid.SelectionWentElsewhere"/>;
    /// it stays until the user presses it.
    /// </summary>
    public class OmokageElsewherePanel : MonoBehaviour
    {
        CandidateGrid _grid;

        /// <summary>Builds the panel under <paramref name="parent"/> (hidden until the selection goes on elsewhere).</summary>
        public static OmokageElsewherePanel Build(CandidateGrid grid, Transform parent, Vector3 localPosition)
        {
            var root = new GameObject("Omokage Elsewhere Panel");
            root.transform.SetParent(parent, false);
            root.transform.localPosition = localPosition;
            var panel = root.AddComponent<OmokageElsewherePanel>();
            panel._grid = grid;

            var backdrop = GameObject.CreatePrimitive(PrimitiveType.Quad);
            backdrop.name = "Backdrop";
            backdrop.transform.SetParent(root.transform, false);
            backdrop.transform.localPosition = new Vector3(0f, 0f, 0.02f);
            backdrop.transform.localScale = new Vector3(1.1f, 0.45f, 1f);
            Destroy(backdrop.GetComponent<Collider>());  // the backdrop must not block the button's raycasts
            var backdropRenderer = backdrop.GetComponent<Renderer>();
            if (backdropRenderer != null) backdropRenderer.material.color = new Color(0.1f, 0.1f, 0.12f, 1f);

            var title = OmokageActionButton.AddLabel(root.transform, CandidateGrid.WentElsewhereTitle, new Vector3(0f, 0.15f, 0f));
            title.fontSize = 48;
            var text = OmokageActionButton.AddLabel(root.transform, WentElsewhereLines(), new Vector3(0f, 0.04f, 0f));
            text.fontSize = 32;

            OmokageActionButton.Build(root.transform, CandidateGrid.StartNewHereLabel, new Vector3(0f, -0.13f, 0f),
                                      new Vector3(0.4f, 0.08f, 0.03f), panel.StartNewHere, () => grid.WentElsewhere);
            panel.SetVisible(false);
            grid.SelectionWentElsewhere += panel.Show;
            return panel;
        }

        /// <summary>The sentence, one line per sentence (a TextMesh does not wrap).</summary>
        static string WentElsewhereLines() { return CandidateGrid.WentElsewhereText.Replace(". ", ".\n"); }

        void Show() { SetVisible(true); }

        void StartNewHere()
        {
            _grid.StartNewHere();
            SetVisible(false);
        }

        void SetVisible(bool visible)
        {
            foreach (Transform child in transform) child.gameObject.SetActive(visible);
        }

        void OnDestroy()
        {
            if (_grid != null) _grid.SelectionWentElsewhere -= Show;
        }
    }
}
