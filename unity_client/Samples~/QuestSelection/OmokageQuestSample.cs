using Omokage.Client.Components;
using UnityEngine;

namespace Omokage.Client.Samples
{
    /// <summary>
    /// Builds the whole avatar-selection setup at runtime, so the sample needs no prefab: a connection, a 3×3
    /// grid floating in front of the user, a "this one" and a "none of these" button, a pointer on the right controller
    /// and one on the head, the press that commits (<see cref="OmokageSamplePress"/>: the trigger), the confirm panel
    /// shown before the product page opens (<see cref="OmokageConfirmPanel"/>), the notice when the selection went on on
    /// another connection (<see cref="OmokageElsewherePanel"/>, "Start a new one here"), a gaze reporter and a status line; and,
    /// where the server offers them, "Draw a face" (a drawing corner on the left: <see cref="OmokageSketchStation"/>) and
    /// "What you seem to want" (the ideal face on the right: <see cref="OmokageIdealPanel"/>); and, once the user has picked,
    /// "How close is it?" with five stars that rate the pick (<see cref="OmokageRatingRow"/>; protocol v1.1).
    /// Gaze only arms a tile (it lights up); the trigger chooses. Put it on an empty GameObject in a scene with an XR
    /// Origin (see README.md; in the Editor, the XR Device Simulator), set the server URL, press Play or build to the Quest.
    /// </summary>
    public class OmokageQuestSample : MonoBehaviour
    {
        [Header("Server")]
        [Tooltip("ws://LAN-ADDRESS:8765/ws of `omokage serve --host 0.0.0.0 --token …`")]
        [SerializeField] string serverUrl = "ws://192.168.0.10:8765/ws";
        [SerializeField] string token = "";
        [SerializeField] string algorithm = "pca";
        [Tooltip("One of the server's welcome.policies; empty: the server's default.")]
        [SerializeField] string policy = "";

        [Header("Rig")]
        [Tooltip("The XR camera (head). Empty: Camera.main.")]
        [SerializeField] Transform head;
        [Tooltip("The right controller's ray origin (e.g. XR Origin/Camera Offset/Right Controller). Empty: head-gaze only.")]
        [SerializeField] Transform rightController;
        [Tooltip("Unlit textured material for the faces (URP: a material on Universal Render Pipeline/Unlit).")]
        [SerializeField] Material tileMaterial;

        [Header("Product page")]
        [Tooltip("Hosts the product page may be on (empty: any http/https host).")]
        [SerializeField] string[] allowedUrlHosts = new string[0];

        [Header("Layout")]
        [SerializeField] float distance = 1.4f;
        [SerializeField] float height = 1.45f;

        OmokageConnection _connection;
        CandidateGrid _grid;
        OmokagePointer _controllerPointer;
        OmokagePointer _gazePointer;
        OmokageSamplePress _press;
        OmokageSketchStation _sketch;
        OmokageIdealPanel _ideal;
        GameObject _drawButton;
        GameObject _idealButton;
        OmokageRatingRow _rating;
        TextMesh _status;

        /// <summary>The pointer on the controller.</summary>
        public OmokagePointer ControllerPointer { get { return _controllerPointer; } }

        /// <summary>The head's gaze pointer: dwelling arms, a press commits.</summary>
        public OmokagePointer GazePointer { get { return _gazePointer; } }

        /// <summary>The press (call <c>Press.Press()</c> from your own input if you do not use the Input System).</summary>
        public OmokageSamplePress Press { get { return _press; } }

        public CandidateGrid Grid { get { return _grid; } }

        /// <summary>The drawing corner ("Draw a face"); null without a right controller, which draws.</summary>
        public OmokageSketchStation SketchStation { get { return _sketch; } }

        /// <summary>The ideal face's panel ("What you seem to want").</summary>
        public OmokageIdealPanel IdealPanel { get { return _ideal; } }

        /// <summary>The five stars that rate the pick ("How close is it?").</summary>
        public OmokageRatingRow RatingRow { get { return _rating; } }

        void Awake()
        {
            Transform h = head != null ? head : (Camera.main != null ? Camera.main.transform : null);

            // 1. the connection (connects in Start, reconnects on its own)
            _connection = gameObject.AddComponent<OmokageConnection>();
            _connection.ServerUrl = serverUrl;
            _connection.Token = token;
            _connection.StateChanged += OnStateChanged;
            _connection.Connected += OnConnected;

            // 2. the grid, facing the user at a comfortable distance
            //    (added to an inactive object so its fields are set before its Awake builds the tiles)
            var gridObject = new GameObject("Omokage Grid");
            gridObject.SetActive(false);
            gridObject.transform.position = new Vector3(0f, height, distance);
            gridObject.transform.rotation = Quaternion.identity;  // quads face -Z, towards a user at the origin
            _grid = gridObject.AddComponent<CandidateGrid>();
            _grid.Algorithm = algorithm;
            _grid.Policy = policy;
            _grid.TileMaterial = tileMaterial;
            _grid.AllowedUrlHosts = allowedUrlHosts;
            _grid.Connection = _connection;
            gridObject.SetActive(true);
            _grid.Decided += OnDecided;
            _grid.Failed += e => SetStatus(e.Message);
            _grid.Restored += OnRestored;
            _grid.CandidatesShown += g => SetStatus(g.Step == 1 ? "look at a face to light it up, pull the trigger to choose it"
                                                               : "step " + g.Step + ": choose again, or press \"this one\" under the grid");

            // 3. a "this one" button under the grid
            var button = GameObject.CreatePrimitive(PrimitiveType.Cube);
            button.name = "Decide Button";
            button.transform.SetParent(gridObject.transform, false);
            button.transform.localPosition = new Vector3(-0.18f, -0.55f, 0f);
            button.transform.localScale = new Vector3(0.3f, 0.08f, 0.03f);
            var decide = button.AddComponent<OmokageDecideButton>();
            decide.Grid = _grid;
            decide.ButtonRenderer = button.GetComponent<Renderer>();
            OmokageActionButton.AddLabel(gridObject.transform, "this one", new Vector3(-0.18f, -0.55f, -0.02f));

            //    and a "none of these" button beside it (grey; disabled against a v1.0 server)
            var skipButton = GameObject.CreatePrimitive(PrimitiveType.Cube);
            skipButton.name = "Skip Button";
            skipButton.transform.SetParent(gridObject.transform, false);
            skipButton.transform.localPosition = new Vector3(0.18f, -0.55f, 0f);
            skipButton.transform.localScale = new Vector3(0.3f, 0.08f, 0.03f);
            var skip = skipButton.AddComponent<OmokageSkipButton>();
            skip.Grid = _grid;
            skip.ButtonRenderer = skipButton.GetComponent<Renderer>();
            OmokageActionButton.AddLabel(gridObject.transform, "none of these", new Vector3(0.18f, -0.55f, -0.02f));

            //    and a "back" button left of them (v1.7): undoes the last pick when the ray slipped; disabled on the first grid
            var backButton = GameObject.CreatePrimitive(PrimitiveType.Cube);
            backButton.name = "Back Button";
            backButton.transform.SetParent(gridObject.transform, false);
            backButton.transform.localPosition = new Vector3(-0.54f, -0.55f, 0f);
            backButton.transform.localScale = new Vector3(0.3f, 0.08f, 0.03f);
            var back = backButton.AddComponent<OmokageBackButton>();
            back.Grid = _grid;
            back.ButtonRenderer = backButton.GetComponent<Renderer>();
            OmokageActionButton.AddLabel(gridObject.transform, "back", new Vector3(-0.54f, -0.55f, -0.02f));

            //    and the confirm panel, in front of the grid, shown only when a product page asks to open
            OmokageConfirmPanel.Build(_grid, gridObject.transform, new Vector3(0f, 0f, -0.15f));

            //    and, in front of both, the notice when the selection went on elsewhere (v1.7: another connection presented
            //    the resume token and carries on with it; nothing reconnects here), with "Start a new one here"
            OmokageElsewherePanel.Build(_grid, gridObject.transform, new Vector3(0f, 0f, -0.17f));
            _grid.SelectionWentElsewhere += () => SetStatus(CandidateGrid.WentElsewhereTitle);

            // 4. pointers: the controller ray and the head's gaze. Dwelling arms (a highlight), never chooses; the press
            //    (trigger) commits: what the controller points at, else the tile the gaze armed.
            if (rightController != null)
            {
                _controllerPointer = rightController.gameObject.AddComponent<OmokagePointer>();
                _controllerPointer.RayOrigin = rightController;
            }
            if (h != null)
            {
                _gazePointer = h.gameObject.AddComponent<OmokagePointer>();
                _gazePointer.RayOrigin = h;
                _gazePointer.DwellSeconds = 1.5f;  // a little longer for the head: looking is not yet choosing
                _gazePointer.RequireArmed = true;  // a trigger commits only a tile the user has visibly armed
            }
            _press = GetComponent<OmokageSamplePress>();  // one added in the editor keeps its Press action
            if (_press == null) _press = gameObject.AddComponent<OmokageSamplePress>();
            _press.ControllerPointer = _controllerPointer;
            _press.GazePointer = _gazePointer;

            //    a second row of buttons under the grid, hidden until a welcome says the server can (OnConnected):
            //    "Draw a face" opens the drawing corner left of the grid (drawn on with the controller's ray while the
            //    trigger is held, so only with a right controller); "What you seem to want" asks for the ideal face, shown
            //    right of the grid, once the user has picked (a choice or "none of these": the selection has learnt something)
            var row = new Vector3(0.3f, 0.08f, 0.03f);
            if (_controllerPointer != null)
            {
                _sketch = OmokageSketchStation.Build(_grid, _connection, _controllerPointer, tileMaterial, gridObject.transform,
                                                     new Vector3(-0.95f, 0f, -0.1f), Quaternion.Euler(0f, -30f, 0f));
                _sketch.Failed += e => SetStatus(e.Message);
                _drawButton = OmokageActionButton.Build(gridObject.transform, "Draw a face", new Vector3(-0.18f, -0.66f, 0f), row,
                                                        OpenSketch, () => !_sketch.IsOpen);
                _drawButton.SetActive(false);
            }
            _ideal = OmokageIdealPanel.Build(_grid, tileMaterial, gridObject.transform, new Vector3(0.8f, 0f, -0.1f),
                                             Quaternion.Euler(0f, 30f, 0f));
            _ideal.Failed += e => SetStatus(e.Message);
            _grid.IdealShown += (ideal, texture) => SetStatus("what you seem to want (right): a face made from your picks, and the " +
                                                              ideal.Items.Count + " nearest faces you have not seen");
            _idealButton = OmokageActionButton.Build(gridObject.transform, "What you seem to want", new Vector3(0.18f, -0.66f, 0f), row,
                                                     _grid.ShowIdeal, () => _grid.CanShowIdeal && _grid.Current.Step > 1);
            _idealButton.SetActive(false);

            //    and under both rows, "How close is it?": five stars that rate the pick (the face chosen last, the one "this
            //    one" decides on), pressed with the controller's ray or the gaze and the trigger like every button; shown
            //    while there is a pick, from a v1.1 server, outside a study (protocol v1.1 rate: evidence for the next grids)
            _rating = OmokageRatingRow.Build(_grid, _controllerPointer, _gazePointer, gridObject.transform, new Vector3(0f, -0.8f, 0f));

            // 5. gaze to the server (protocol v1.2): head gaze every frame, eye gaze where the device delivers it, the
            //    tiles' layout, a gaze.batch every 100 ms (flushed before each pick); it never selects anything
            var reporter = gameObject.AddComponent<OmokageGazeReporter>();
            reporter.Head = h;
            reporter.Connection = _connection;
            reporter.Grid = _grid;

            // 6. a status line above the grid
            var statusObject = new GameObject("Omokage Status");
            statusObject.transform.SetParent(gridObject.transform, false);
            statusObject.transform.localPosition = new Vector3(0f, 0.55f, 0f);
            _status = statusObject.AddComponent<TextMesh>();
            _status.anchor = TextAnchor.LowerCenter;
            _status.alignment = TextAlignment.Center;
            _status.characterSize = 0.004f;
            _status.fontSize = 48;
            SetStatus("connecting to " + serverUrl + " …");
        }

        void OnStateChanged(ConnectionState state)
        {
            if (state == ConnectionState.Reconnecting) SetStatus("connection lost, reconnecting …");
            else if (state == ConnectionState.Connecting) SetStatus("connecting to " + serverUrl + " …");
        }

        void OnConnected(WelcomeMessage welcome)
        {
            SetStatus("pick the face closest to the one you want (" + welcome.Catalog.Count + " avatars)");
            // each welcome (a reconnection may reach another server): offer what this server does; a study's trials have
            // their own starts, so neither is offered there
            bool canSketch = _sketch != null && welcome.Sketch != null && welcome.Study == null;
            if (_drawButton != null) _drawButton.SetActive(canSketch);
            if (!canSketch && _sketch != null) _sketch.Close();
            bool canIdeal = welcome.Ideal != null && welcome.Study == null;
            if (_idealButton != null) _idealButton.SetActive(canIdeal);
            if (!canIdeal && _ideal != null) _ideal.Hide();
        }

        void OpenSketch()
        {
            _sketch.Open();
            SetStatus("draw the face with the trigger held (left); \"use these\" starts from the faces your drawing finds");
        }

        void OnDecided(DecidedMessage decided)
        {
            SetStatus("chosen: " + decided.Item.Title + " after " + decided.Steps + " grids");
        }

        void OnRestored(RestoreOutcome outcome)
        {
            if (outcome == RestoreOutcome.Decided) SetStatus("welcome back: you chose " + _grid.LastDecision.Item.Title);
            else if (outcome != RestoreOutcome.SameSession) SetStatus("welcome back: the selection goes on where you were");
        }

        void SetStatus(string text)
        {
            if (_status != null) _status.text = text;
            Debug.Log("[omokage sample] " + text);
        }
    }
}
