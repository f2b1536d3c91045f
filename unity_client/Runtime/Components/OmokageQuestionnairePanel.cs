using System;
using System.Collections.Generic;
using Omokage.Client;
using UnityEngine;

namespace Omokage.Client.Components
{
    /// <summary>
    /// A button of the questionnaire panel (an option, a navigation button or a key of the fallback keyboard): an
    /// <see cref="OmokageButton"/>, so an <see cref="OmokagePointer"/> hovers it, gaze dwell <i>arms</i> it and only the
    /// user's press commits it (never gaze alone). Built by <see cref="OmokageQuestionnairePanel"/>.
    /// </summary>
    [AddComponentMenu("")]
    public class OmokagePanelButton : OmokageButton
    {
        public OmokagePanelButton()
            : base(new Color(0.3f, 0.34f, 0.42f, 1f), new Color(0.55f, 0.62f, 0.78f, 1f), new Color(0.2f, 0.2f, 0.2f, 1f)) { }

        /// <summary>What the press does.</summary>
        public Action OnPress;

        /// <summary>Whether it may be pressed now.</summary>
        public Func<bool> Enabled;

        /// <summary>Changes when the panel shows another item, so a resting gaze does not stay armed on the new one.</summary>
        public object Key;

        public TextMesh Label;

        public override bool IsSelectable { get { return OnPress != null && gameObject.activeInHierarchy && (Enabled == null || Enabled()); } }

        public override object DwellKey { get { return Key ?? this; } }

        protected override void Press() { OnPress(); }
    }

    /// <summary>
    /// A world-space questionnaire (protocol v1.2 studies): one item at a time, its text, and its answers as buttons —
    /// Likert 1 … 5 (up to 11 points, e.g. 0 … 10) with the anchors at the ends, best/worst as the conditions' labels, free text through the system keyboard
    /// (<c>TouchScreenKeyboard</c>) or, where there is none, a small on-panel keyboard (<see cref="FallbackKeyboard"/>).
    /// Answer with a controller ray and its trigger, or with head gaze and a press: dwell only arms a button
    /// (<see cref="OmokagePointer"/>), and a controller can also step through the options (<see cref="MoveHighlight"/>,
    /// <see cref="Confirm"/>, <see cref="NextItem"/>, <see cref="PreviousItem"/>). The logic is the engine-free
    /// <see cref="QuestionnaireForm"/>; <see cref="Submitted"/> hands it to <see cref="OmokageStudy"/>, which sends
    /// <c>answers</c>. Built from code under its own transform (quads with TextMesh labels; each quad has a collider).
    /// </summary>
    [AddComponentMenu("Omokage/Questionnaire Panel")]
    public class OmokageQuestionnairePanel : MonoBehaviour
    {
        const int MaxOptions = QuestionnaireForm.MaxOptions;  // a Likert scale of up to 11 points (0 … 10) fits the panel

        [Tooltip("Material for the buttons; use an unlit one (URP: Universal Render Pipeline/Unlit).")]
        [SerializeField] Material buttonMaterial;

        [SerializeField] Font font;

        [SerializeField] float width = 1.0f;

        [SerializeField] Color textColor = Color.white;

        [SerializeField] Color chosenColor = new Color(0.3f, 0.75f, 0.4f, 1f);

        readonly List<OmokagePanelButton> _options = new List<OmokagePanelButton>();
        readonly List<OmokagePanelButton> _keys = new List<OmokagePanelButton>();
        TextMesh _title, _question, _status, _lowAnchor, _highAnchor, _text;
        OmokagePanelButton _previous, _next, _submit, _type;
        Transform _keyboardRoot;
        TouchScreenKeyboard _keyboard;
        FallbackKeyboard _fallback;
        bool _built;

        /// <summary>The navigation buttons (null until first shown), e.g. to restyle them.</summary>
        public OmokagePanelButton PreviousButton { get { return _previous; } }
        public OmokagePanelButton NextButton { get { return _next; } }
        public OmokagePanelButton SubmitButton { get { return _submit; } }

        /// <summary>The form shown (null when hidden).</summary>
        public QuestionnaireForm Form { get; private set; }

        /// <summary>The participant submitted a complete form (main thread).</summary>
        public event Action<QuestionnaireForm> Submitted;

        /// <summary>Shows a questionnaire from its first item.</summary>
        public void Show(QuestionnaireMessage questionnaire)
        {
            Build();
            Form = new QuestionnaireForm(questionnaire);
            gameObject.SetActive(true);
            CloseKeyboards();
            Refresh();
        }

        public void Hide()
        {
            CloseKeyboards();
            Form = null;
            gameObject.SetActive(false);
        }

        /// <summary>Controller: moves the highlight among the current item's options.</summary>
        public void MoveHighlight(int delta)
        {
            if (Form == null) return;
            Form.MoveHighlight(delta);
            Refresh();
        }

        /// <summary>Controller press: commits the highlighted option (a text item opens the keyboard).</summary>
        public void Confirm()
        {
            if (Form == null) return;
            if (Form.Current != null && Form.Current.Kind == QuestionKinds.Text) OpenKeyboard();
            else if (Form.ConfirmHighlight()) Refresh();
        }

        public void NextItem()
        {
            if (Form != null && Form.Next()) { CloseKeyboards(); Refresh(); }
        }

        public void PreviousItem()
        {
            if (Form != null && Form.Previous()) { CloseKeyboards(); Refresh(); }
        }

        /// <summary>Hands the answers on when every required item is answered; otherwise shows what is missing.</summary>
        public void Submit()
        {
            if (Form == null) return;
            if (!Form.CanSubmit)
            {
                SetText(_status, "Still to answer: " + string.Join(", ", Form.Missing()));
                return;
            }
            var handler = Submitted;
            if (handler != null) handler(Form);
        }

        /// <summary>Shows a line under the question (e.g. "saving…" or a server error).</summary>
        public void SetStatus(string text) { SetText(_status, text); }

        void Update()
        {
            if (_keyboard == null || Form == null) return;
            if (_keyboard.status == TouchScreenKeyboard.Status.Done)
            {
                Form.SetText(Form.Index, _keyboard.text);
                _keyboard = null;
                Refresh();
            }
            else if (_keyboard.status != TouchScreenKeyboard.Status.Visible)
            {
                _keyboard = null;  // cancelled or lost focus: keep the text as it was
            }
        }

        void OpenKeyboard()
        {
            string current = Form.Text(Form.Index) ?? "";
            if (TouchScreenKeyboard.isSupported)
            {
                _keyboard = TouchScreenKeyboard.Open(current, TouchScreenKeyboardType.Default, false, true);
                return;
            }
            _fallback = new FallbackKeyboard(current);
            Refresh();
        }

        void CloseKeyboards()
        {
            _keyboard = null;
            _fallback = null;
        }

        void OnKey(string key)
        {
            if (_fallback == null || Form == null) return;
            bool done = _fallback.Press(key);
            Form.SetText(Form.Index, _fallback.Text);
            if (done) _fallback = null;
            Refresh();
        }

        void Refresh()
        {
            if (Form == null || !_built) return;
            QuestionnaireItem item = Form.Current;
            SetText(_title, Form.Questionnaire.Title + (Form.Count > 1 ? "   (" + (Form.Index + 1) + " / " + Form.Count + ")" : ""));
            SetText(_question, item == null ? "" : item.Text + (item.Required ? "" : "  (optional)"));
            SetText(_status, "");
            IReadOnlyList<string> options = item == null ? (IReadOnlyList<string>)new string[0] : Form.Options(Form.Index);
            bool likert = item != null && item.Kind == QuestionKinds.Likert;
            SetText(_lowAnchor, likert && item.Labels.Count > 0 ? item.Labels[0] : "");
            SetText(_highAnchor, likert && item.Labels.Count > 1 ? item.Labels[item.Labels.Count - 1] : "");
            int shown = Math.Min(options.Count, MaxOptions);
            float pitch = width / Math.Max(1, shown);
            for (int i = 0; i < _options.Count; i++)
            {
                var button = _options[i];
                bool on = i < shown;
                button.gameObject.SetActive(on);
                if (button.Label != null) button.Label.gameObject.SetActive(on);
                if (!on) continue;
                button.Key = item;  // a new item under a resting gaze is not armed
                var position = new Vector3(-width / 2 + pitch * (i + 0.5f), -0.05f, 0f);
                button.transform.localPosition = position;
                if (button.Label != null) button.Label.transform.localPosition = position + new Vector3(0f, 0f, -0.005f);
                button.transform.localScale = new Vector3(pitch * 0.9f, 0.12f, 1f);
                SetText(button.Label, options[i] + (Form.Highlight == i && Form.Selected(Form.Index) != i ? " ◂" : ""));
                bool chosen = Form.Selected(Form.Index) == i;
                if (button.Label != null) button.Label.color = chosen ? chosenColor : textColor;
            }
            bool text = item != null && item.Kind == QuestionKinds.Text;
            _type.gameObject.SetActive(text);
            if (_type.Label != null) _type.Label.gameObject.SetActive(text);
            SetText(_text, text ? "“" + (Form.Text(Form.Index) ?? "") + "”" : "");
            if (item != null && !QuestionnaireForm.CanRender(item))
                SetText(_status, "This question cannot be shown here (" + QuestionnaireForm.CannotRenderReason(item) + ").");
            _keyboardRoot.gameObject.SetActive(text && _fallback != null);
            for (int i = 0; i < _keys.Count; i++) _keys[i].Key = _fallback;
        }

        static void SetText(TextMesh mesh, string text)
        {
            if (mesh != null) mesh.text = text;
        }

        // --- building from code ------------------------------------------------------------------

        void Build()
        {
            if (_built) return;
            _built = true;
            _title = Label("Title", new Vector3(0f, 0.36f, 0f), 0.045f);
            _question = Label("Question", new Vector3(0f, 0.24f, 0f), 0.035f);
            _lowAnchor = Label("Low anchor", new Vector3(-width / 2 + 0.1f, 0.06f, 0f), 0.025f);
            _highAnchor = Label("High anchor", new Vector3(width / 2 - 0.1f, 0.06f, 0f), 0.025f);
            _text = Label("Text", new Vector3(0f, -0.05f, 0f), 0.03f);
            _status = Label("Status", new Vector3(0f, -0.2f, 0f), 0.025f);
            for (int i = 0; i < MaxOptions; i++)
            {
                int option = i;
                _options.Add(Button("Option " + i, transform, Vector3.zero, new Vector3(0.1f, 0.1f, 1f), "", () =>
                {
                    if (Form == null) return;
                    Form.Select(Form.Index, option);
                    Refresh();
                }, null));
            }
            _previous = Button("Previous", transform, new Vector3(-width / 2 + 0.12f, -0.32f, 0f), new Vector3(0.22f, 0.08f, 1f), "‹ back",
                               PreviousItem, () => Form != null && Form.Index > 0);
            _next = Button("Next", transform, new Vector3(0f, -0.32f, 0f), new Vector3(0.22f, 0.08f, 1f), "next ›",
                           NextItem, () => Form != null && Form.Index < Form.Count - 1);
            _submit = Button("Submit", transform, new Vector3(width / 2 - 0.12f, -0.32f, 0f), new Vector3(0.22f, 0.08f, 1f), "submit",
                             Submit, () => Form != null && Form.CanSubmit);
            _type = Button("Type", transform, new Vector3(0f, -0.12f, 0f), new Vector3(0.3f, 0.07f, 1f), "type an answer", OpenKeyboard, null);

            var keyboard = new GameObject("Fallback keyboard");
            keyboard.transform.SetParent(transform, false);
            keyboard.transform.localPosition = new Vector3(0f, -0.45f, 0f);
            _keyboardRoot = keyboard.transform;
            float key = width / 10f;
            for (int row = 0; row < FallbackKeyboard.Rows.Length; row++)
            {
                string[] keys = FallbackKeyboard.Rows[row];
                float keyWidth = row == FallbackKeyboard.Rows.Length - 1 ? key * 3 : key;
                for (int col = 0; col < keys.Length; col++)
                {
                    string k = keys[col];
                    float x = -keyWidth * keys.Length / 2 + keyWidth * (col + 0.5f);
                    _keys.Add(Button("Key " + k, _keyboardRoot, new Vector3(x, -row * key, 0f), new Vector3(keyWidth * 0.9f, key * 0.9f, 1f),
                                     k, () => OnKey(k), null));
                }
            }
            keyboard.SetActive(false);
        }

        TextMesh Label(string name, Vector3 position, float height)
        {
            var go = new GameObject(name);
            go.transform.SetParent(transform, false);
            go.transform.localPosition = position;
            var text = go.AddComponent<TextMesh>();
            text.anchor = TextAnchor.MiddleCenter;
            text.alignment = TextAlignment.Center;
            text.fontSize = 48;
            text.characterSize = height / 10f;
            text.color = textColor;
            if (font != null)
            {
                text.font = font;
                var renderer = go.GetComponent<MeshRenderer>();
                if (renderer != null) renderer.sharedMaterial = font.material;
            }
            return text;
        }

        OmokagePanelButton Button(string name, Transform parent, Vector3 position, Vector3 scale, string label, Action press, Func<bool> enabled)
        {
            var quad = GameObject.CreatePrimitive(PrimitiveType.Quad);  // comes with a MeshCollider for the pointer
            quad.name = name;
            quad.transform.SetParent(parent, false);
            quad.transform.localPosition = position;
            quad.transform.localScale = scale;
            var renderer = quad.GetComponent<Renderer>();
            if (buttonMaterial != null) renderer.sharedMaterial = buttonMaterial;
            var button = quad.AddComponent<OmokagePanelButton>();
            button.ButtonRenderer = renderer;
            button.OnPress = press;
            button.Enabled = enabled;
            var text = new GameObject("Label");
            text.transform.SetParent(parent, false);
            text.transform.localPosition = position + new Vector3(0f, 0f, -0.005f);
            var mesh = text.AddComponent<TextMesh>();
            mesh.anchor = TextAnchor.MiddleCenter;
            mesh.alignment = TextAlignment.Center;
            mesh.fontSize = 48;
            mesh.characterSize = 0.003f;
            mesh.color = textColor;
            mesh.text = label;
            if (font != null)
            {
                mesh.font = font;
                var labelRenderer = text.GetComponent<MeshRenderer>();
                if (labelRenderer != null) labelRenderer.sharedMaterial = font.material;
            }
            button.Label = mesh;
            return button;
        }
    }
}
