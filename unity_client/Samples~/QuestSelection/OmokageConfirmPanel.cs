using System;
using Omokage.Client.Components;
using UnityEngine;

namespace Omokage.Client.Samples
{
    /// <summary>
    /// The sample's confirm dialog before the product page opens outside the app: a world-space panel with the question,
    /// the URL's host, and two buttons, "Open" and "Stay". Pressing them takes the user's commit (trigger / confirm), like
    /// every button: dwell only arms. Shown by <see cref="CandidateGrid.OpenUrlRequested"/>; answers with
    /// <see cref="CandidateGrid.ConfirmOpenUrl"/> or <see cref="CandidateGrid.CancelOpenUrl"/>.
    /// </summary>
    public class OmokageConfirmPanel : MonoBehaviour
    {
        CandidateGrid _grid;
        TextMesh _question;
        GameObject _backdrop;

        /// <summary>Builds the panel under <paramref name="parent"/> (hidden until a URL is requested).</summary>
        public static OmokageConfirmPanel Build(CandidateGrid grid, Transform parent, Vector3 localPosition)
        {
            var root = new GameObject("Omokage Confirm Panel");
            root.transform.SetParent(parent, false);
            root.transform.localPosition = localPosition;
            var panel = root.AddComponent<OmokageConfirmPanel>();
            panel._grid = grid;

            panel._backdrop = GameObject.CreatePrimitive(PrimitiveType.Quad);
            panel._backdrop.name = "Backdrop";
            panel._backdrop.transform.SetParent(root.transform, false);
            panel._backdrop.transform.localPosition = new Vector3(0f, 0f, 0.02f);
            panel._backdrop.transform.localScale = new Vector3(0.9f, 0.4f, 1f);
            Destroy(panel._backdrop.GetComponent<Collider>());  // the backdrop must not block the buttons' raycasts
            var backdrop = panel._backdrop.GetComponent<Renderer>();
            if (backdrop != null) backdrop.material.color = new Color(0.1f, 0.1f, 0.12f, 1f);

            var text = new GameObject("Question");
            text.transform.SetParent(root.transform, false);
            text.transform.localPosition = new Vector3(0f, 0.15f, 0f);
            panel._question = text.AddComponent<TextMesh>();
            panel._question.anchor = TextAnchor.UpperCenter;
            panel._question.alignment = TextAlignment.Center;
            panel._question.characterSize = 0.004f;
            panel._question.fontSize = 40;

            panel.AddButton("Open", new Vector3(-0.2f, -0.1f, 0f), () => grid.ConfirmOpenUrl());
            panel.AddButton("Stay", new Vector3(0.2f, -0.1f, 0f), () => grid.CancelOpenUrl());
            panel.Hide();
            grid.OpenUrlRequested += panel.Ask;
            return panel;
        }

        void AddButton(string label, Vector3 position, Action press)
        {
            OmokageActionButton.Build(transform, label, position, new Vector3(0.3f, 0.08f, 0.03f), () => { press(); Hide(); });
        }

        void Ask(string url)
        {
            Uri uri;
            string host = Uri.TryCreate(url, UriKind.Absolute, out uri) ? uri.Host : url;
            _question.text = "Leave the app and open\n" + host + " in the browser?";
            SetVisible(true);
        }

        void Hide() { SetVisible(false); }

        void SetVisible(bool visible)
        {
            foreach (Transform child in transform) child.gameObject.SetActive(visible);
        }

        void OnDestroy()
        {
            if (_grid != null) _grid.OpenUrlRequested -= Ask;
        }
    }

    /// <summary>A scene button that runs an action on the user's press (never on dwell); greyed out while its condition
    /// is false.</summary>
    public class OmokageActionButton : OmokageButton
    {
        Action _press;
        Func<bool> _enabled;

        public OmokageActionButton()
            : base(new Color(0.4f, 0.4f, 0.45f, 1f), new Color(0.6f, 0.6f, 0.7f, 1f), new Color(0.3f, 0.3f, 0.3f, 1f)) { }

        /// <summary>What a press does, and when it may be pressed (null: always). The condition is read every frame (the
        /// tint): keep it to reading fields and properties, so that nothing is allocated per frame.</summary>
        public void Configure(Action press, Func<bool> enabled = null)
        {
            _press = press;
            _enabled = enabled;
        }

        public override bool IsSelectable { get { return _press != null && (_enabled == null || _enabled()); } }

        protected override void Press() { _press(); }

        /// <summary>Builds a labelled button under <paramref name="parent"/>: an object named after the label holding a cube
        /// (its collider takes the pointer's ray) and the label in front of it. Hide both with the returned object.</summary>
        public static GameObject Build(Transform parent, string label, Vector3 localPosition, Vector3 size, Action press,
                                       Func<bool> enabled = null)
        {
            var root = new GameObject(label + " Button");
            root.transform.SetParent(parent, false);
            root.transform.localPosition = localPosition;

            var cube = GameObject.CreatePrimitive(PrimitiveType.Cube);
            cube.name = "Bar";
            cube.transform.SetParent(root.transform, false);
            cube.transform.localScale = size;
            var button = root.AddComponent<OmokageActionButton>();  // found from the cube's collider (its parent)
            button.Configure(press, enabled);
            button.ButtonRenderer = cube.GetComponent<Renderer>();

            AddLabel(root.transform, label, new Vector3(0f, 0f, -size.z * 0.5f - 0.005f));
            return root;
        }

        /// <summary>A centred label (a TextMesh, no collider: it never blocks a ray) at <paramref name="localPosition"/>.</summary>
        public static TextMesh AddLabel(Transform parent, string text, Vector3 localPosition)
        {
            var label = new GameObject("Label");
            label.transform.SetParent(parent, false);
            label.transform.localPosition = localPosition;
            var mesh = label.AddComponent<TextMesh>();
            mesh.text = text;
            mesh.anchor = TextAnchor.MiddleCenter;
            mesh.alignment = TextAlignment.Center;
            mesh.characterSize = 0.004f;
            mesh.fontSize = 40;
            return mesh;
        }
    }
}
