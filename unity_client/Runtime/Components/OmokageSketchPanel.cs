using System;
using System.Threading;
using System.Threading.Tasks;
using Omokage.Client;
using UnityEngine;

namespace Omokage.Client.Components
{
    /// <summary>The pen of an <see cref="OmokageSketchPanel"/>.</summary>
    public enum SketchTool
    {
        /// <summary>A pen line, compared with the faces' line art.</summary>
        Line,
        /// <summary>Colour, compared with the faces' colours under it (e.g. a stroke of hair colour).</summary>
        Paint,
    }

    /// <summary>
    /// Live sketch search (protocol v1.3): a world-space panel the user draws on with the controller's ray, with the faces
    /// the drawing fits best shown as it grows.
    /// <list type="bullet">
    /// <item>Input is the controller's <see cref="OmokagePointer"/> (the same ray that picks faces): while the user holds the
    /// press (<see cref="OmokagePointer.Held"/>, the trigger) and the ray hits the canvas, the hit becomes a canvas point
    /// ([0, 1]², x right, y down). Or drive the pen from code: <see cref="PenAt"/>, <see cref="PenUp"/>.</item>
    /// <item>A live stroke goes to the server in pieces, at most <c>maxRateHz</c> (30) a second (<c>append: true</c> for
    /// the continuation pieces), without waiting for results. Tool, colour and width come from the inspector or
    /// <see cref="Tool"/>, <see cref="Colour"/>, <see cref="Width"/>; <see cref="Undo"/> and <see cref="Clear"/> take strokes
    /// back.</item>
    /// <item>Each <c>sketch.result</c> (coalesced by the server; stale ones are dropped by the client) updates
    /// <see cref="PreviewTexture"/> (the face generated from the drawing, on the optional preview renderer) and shows the 9
    /// faces on the result grid as a preview (<see cref="CandidateGrid.ShowSketchResult"/>). <see cref="StartSelection"/>
    /// ("pick from these") sends what is left of the drawing, waits for its result and starts a selection from it on the
    /// grid (<c>start init=sketch</c>).</item>
    /// <item>The drawing is kept locally: a reconnection (a new server session, which has no drawing) opens a new one and
    /// replays the strokes.</item>
    /// </list>
    /// The per-frame path (ray → canvas point → the preallocated <see cref="Pad"/>, the local ink raster and its upload)
    /// allocates nothing; each piece sent (≤ 30 a second) allocates its message. The canvas is a unit quad (built under
    /// this transform unless one is assigned; it must be under this transform so that the pointer finds the panel).
    /// </summary>
    [AddComponentMenu("Omokage/Sketch Panel")]
    public class OmokageSketchPanel : MonoBehaviour, IOmokageSelectable
    {
        [SerializeField] OmokageConnection connection;

        [Tooltip("The grid a selection starts on (Start Selection: \"pick from these\"). Empty: found in the scene.")]
        [SerializeField] CandidateGrid grid;

        [Tooltip("Where the drawing's 9 faces are shown as results arrive. Empty: the grid above.")]
        [SerializeField] CandidateGrid resultGrid;

        [Tooltip("The controller's pointer: while its press is held (OmokagePointer.Held, the trigger) and its ray hits the " +
                 "canvas, the ray draws.")]
        [SerializeField] OmokagePointer pointer;

        [Header("Pen")]
        [SerializeField] SketchTool tool = SketchTool.Line;

        [SerializeField] Color colour = new Color(0.08f, 0.08f, 0.08f, 1f);

        [Tooltip("Stroke width, a fraction of the canvas side (0.001 … 0.25).")]
        [SerializeField] float width = 0.012f;

        [Tooltip("Stroke pieces sent per second at most while drawing (at most 30).")]
        [SerializeField] float maxRateHz = 30f;

        [Header("Surface")]
        [Tooltip("A unit quad with a collider, under this transform: the canvas (x right, y up in its plane). Empty: built.")]
        [SerializeField] Renderer canvasRenderer;

        [Tooltip("Shows the face the server generates from the drawing (optional). Empty: built beside the canvas when " +
                 "Build Preview is on.")]
        [SerializeField] Renderer previewRenderer;

        [SerializeField] bool buildPreview = true;

        [Tooltip("Material for built quads; use an unlit textured one (URP: Universal Render Pipeline/Unlit).")]
        [SerializeField] Material surfaceMaterial;

        [Tooltip("Side of the built canvas in metres (the preview is half as wide).")]
        [SerializeField] float panelSize = 0.4f;

        [Tooltip("Side of the local ink texture in pixels.")]
        [SerializeField] int canvasPixels = 256;

        [Header("Session")]
        [Tooltip("Open a drawing (sketch.begin) on every welcome from a server that sketches; after a reconnection the local " +
                 "drawing is replayed.")]
        [SerializeField] bool beginOnConnect = true;

        [Tooltip("A sketch message was refused or a selection could not start: (code, message for people).")]
        public OmokageErrorEvent onError = new OmokageErrorEvent();

        SketchPad _pad;
        SketchRaster _raster;
        Texture2D _ink;
        Texture2D _preview;
        Material _canvasMaterial;
        Material _previewMaterial;
        OmokageConnection _subscribedConnection;
        OmokageClient _client;
        string _openSession;  // the server session whose drawing this panel has opened (null: none)
        int _lastRid;
        bool _showOnGrid = true;
        bool _pointerDown;
        bool _warnedNoSketch;
        SketchResultMessage _incoming;  // set on the client's thread, taken in LateUpdate: the newest wins
        SketchPreviewMessage _incomingSharper;  // v1.6: the same for a sharper preview of the result on show
        SketchResultMessage _latest;

        /// <summary>The drawing (strokes, what is still to be sent; engine-free).</summary>
        public SketchPad Pad { get { Prepare(); return _pad; } }

        /// <summary>The local ink the user sees on the canvas.</summary>
        public Texture2D InkTexture { get { return _ink; } }

        /// <summary>The face the server generated from the drawing (the latest result's preview; null before one).</summary>
        public Texture2D PreviewTexture { get { return _preview; } }

        /// <summary>The latest result shown (null before one).</summary>
        public SketchResultMessage LatestResult { get { return _latest; } }

        /// <summary>The canvas quad's transform (a unit quad: local x right, y up, −0.5 … 0.5).</summary>
        public Transform Canvas { get { return canvasRenderer != null ? canvasRenderer.transform : transform; } }

        /// <summary>Whether strokes go to the server now: connected to a server that sketches, with a drawing open.</summary>
        public bool IsOpen
        {
            get { return _client != null && _openSession != null && _client.IsConnected && _openSession == _client.SessionId; }
        }

        public OmokageConnection Connection
        {
            get { return connection; }
            set
            {
                connection = value;
                if (isActiveAndEnabled) Subscribe();
            }
        }

        public CandidateGrid Grid { get { return grid; } set { grid = value; } }

        /// <summary>Where the drawing's faces are shown (null: <see cref="Grid"/>).</summary>
        public CandidateGrid ResultGrid { get { return resultGrid; } set { resultGrid = value; } }

        public OmokagePointer Pointer { get { return pointer; } set { pointer = value; } }

        /// <summary>The pen for the next stroke (a stroke keeps the pen it began with).</summary>
        public SketchTool Tool { get { return tool; } set { tool = value; ApplyStyle(); } }

        public Color Colour { get { return colour; } set { colour = value; ApplyStyle(); } }

        /// <summary>Stroke width, a fraction of the canvas side (clamped to 0.001 … 0.25).</summary>
        public float Width { get { return width; } set { width = value; ApplyStyle(); } }

        /// <summary>Pieces sent per second at most (clamped to 1 … 30).</summary>
        public float MaxRateHz { get { return maxRateHz; } set { maxRateHz = value; ApplyStyle(); } }

        public bool BeginOnConnect { get { return beginOnConnect; } set { beginOnConnect = value; } }

        /// <summary>Material of built quads; set before Awake (add the component to an inactive GameObject).</summary>
        public Material SurfaceMaterial { get { return surfaceMaterial; } set { surfaceMaterial = value; } }

        /// <summary>Each result shown (main thread).</summary>
        public event Action<SketchResultMessage> ResultShown;

        /// <summary>A sketch message was refused, or a selection could not start (main thread).</summary>
        public event Action<OmokageError> Failed;

        // --- IOmokageSelectable: the pointer hovers the panel; drawing is the held press, not a commit ---------------

        bool IOmokageSelectable.IsSelectable { get { return true; } }

        object IOmokageSelectable.DwellKey { get { return this; } }

        /// <summary>Whether a pointer's ray is on the panel.</summary>
        public bool Hovered { get; private set; }

        void IOmokageSelectable.OnPointerHover(bool hovered, float dwellProgress, bool armed) { Hovered = hovered; }

        void IOmokageSelectable.OnPointerSelect() { }  // the press on the canvas draws (Held); it commits nothing

        // --- lifecycle ---------------------------------------------------------------------------

        void Awake()
        {
            OmokageDispatcher.EnsureExists();
            if (grid == null) grid = FindObjectOfType<CandidateGrid>();
            if (connection == null && grid != null) connection = grid.Connection;
            Prepare();
            BuildSurface();
        }

        void OnEnable() { Subscribe(); }

        void OnDisable()
        {
            Unsubscribe();
            if (_pad != null) _pad.EndStroke();
            _pointerDown = false;
        }

        void Prepare()
        {
            if (_pad != null) return;
            _raster = new SketchRaster(Math.Max(16, Math.Min(1024, canvasPixels)));
            _pad = new SketchPad { Ink = _raster };
            ApplyStyle();
        }

        void BuildSurface()
        {
            if (canvasRenderer == null)
            {
                var quad = GameObject.CreatePrimitive(PrimitiveType.Quad);  // with a MeshCollider for the ray
                quad.name = "Sketch Canvas";
                quad.transform.SetParent(transform, false);
                quad.transform.localScale = new Vector3(panelSize, panelSize, 1f);
                canvasRenderer = quad.GetComponent<Renderer>();
                if (surfaceMaterial != null) canvasRenderer.sharedMaterial = surfaceMaterial;
            }
            if (previewRenderer == null && buildPreview)
            {
                var quad = GameObject.CreatePrimitive(PrimitiveType.Quad);
                quad.name = "Sketch Preview";
                quad.transform.SetParent(transform, false);
                quad.transform.localPosition = new Vector3(panelSize * 0.75f + 0.03f, panelSize * 0.25f, 0f);
                quad.transform.localScale = new Vector3(panelSize * 0.5f, panelSize * 0.5f, 1f);
                Destroy(quad.GetComponent<Collider>());  // the ray draws on the canvas only
                previewRenderer = quad.GetComponent<Renderer>();
                if (surfaceMaterial != null) previewRenderer.sharedMaterial = surfaceMaterial;
            }
            _ink = new Texture2D(_raster.Size, _raster.Size, TextureFormat.RGBA32, false);
            _ink.name = "omokage sketch ink";
            _ink.wrapMode = TextureWrapMode.Clamp;
            _ink.filterMode = FilterMode.Bilinear;
            UploadInk();
            if (canvasRenderer != null)
            {
                _canvasMaterial = canvasRenderer.material;  // a per-panel instance
                _canvasMaterial.mainTexture = _ink;
                _canvasMaterial.color = Color.white;
            }
        }

        void Subscribe()
        {
            if (_subscribedConnection == connection) return;
            Unsubscribe();
            if (connection == null) return;
            connection.Connected += OnConnected;
            _subscribedConnection = connection;
            if (connection.IsConnected) OnConnected(connection.Welcome);
        }

        void Unsubscribe()
        {
            if (_subscribedConnection != null) _subscribedConnection.Connected -= OnConnected;
            _subscribedConnection = null;
            AttachClient(null);
        }

        // the connection may make a new client (Disconnect, Connect): follow it
        void AttachClient(OmokageClient client)
        {
            if (client == _client) return;
            if (_client != null)
            {
                _client.SketchResultReceived -= OnClientResult;
                _client.SketchPreviewReceived -= OnClientSharper;
                _client.SketchRejected -= OnClientRejected;
            }
            _client = client;
            _openSession = null;
            if (_client != null)
            {
                _client.SketchResultReceived += OnClientResult;
                _client.SketchPreviewReceived += OnClientSharper;
                _client.SketchRejected += OnClientRejected;
            }
        }

        // every welcome (main thread): a new server session has no drawing; open one and replay ours
        void OnConnected(WelcomeMessage welcome)
        {
            var client = connection != null ? connection.Client : null;
            if (client != null && client == _client && welcome != null && _openSession == welcome.SessionId) return;  // open already
            AttachClient(client);
            _openSession = null;
            if (welcome == null || _client == null) return;
            if (welcome.Sketch == null)
            {
                if (!_warnedNoSketch)
                {
                    _warnedNoSketch = true;
                    Debug.LogWarning("[omokage] the server does not sketch (no welcome.sketch: it has no sketch model, or it " +
                                     "speaks protocol 1.2 or older); the sketch panel draws locally only");
                }
                return;
            }
            Pad.Configure(welcome.Sketch);
            if (beginOnConnect) Open();
        }

        void Open()
        {
            _pad.MarkAllUnsent();  // the new drawing gets every stroke again
            if (Send(() => _client.SendSketchBegin())) _openSession = _client.SessionId;
        }

        void OnDestroy()
        {
            Unsubscribe();
            if (_ink != null) Destroy(_ink);
            if (_preview != null) Destroy(_preview);
            if (_canvasMaterial != null) Destroy(_canvasMaterial);
            if (_previewMaterial != null) Destroy(_previewMaterial);
        }

        // --- the per-frame path: allocates nothing unless a piece is due -----------------------------

        void LateUpdate()  // after the pointers' Update: this frame's ray
        {
            if (connection != null && connection.Client != _client && connection.IsConnected) OnConnected(connection.Welcome);
            double now = ClockSync.LocalNow();
            float x = 0f, y = 0f;
            bool down = pointer != null && pointer.Held && pointer.HasHit && ReferenceEquals(pointer.Hovered, this) &&
                        CanvasPoint(pointer.HitPoint, out x, out y);
            if (down) _pad.Pen(x, y);
            else if (_pointerDown) _pad.EndStroke();
            _pointerDown = down;
            if (_pad.PieceDue(now)) SendPieces(now, false);
            UploadInk();
            // the sharper preview first: the client's thread sets a result before its preview, so a preview taken
            // here has its result taken below at the latest (the other order could take a preview whose result
            // came between the two exchanges, and drop it as not matching the result on show)
            SketchPreviewMessage sharper = Interlocked.Exchange(ref _incomingSharper, null);
            SketchResultMessage result = Interlocked.Exchange(ref _incoming, null);
            if (result != null) Show(result);
            if (sharper != null && _latest != null && sharper.Revision == _latest.Revision) ShowPreview(sharper.Preview);
        }

        /// <summary>The canvas point under a world-space point on the canvas's plane; false when it is off the canvas.</summary>
        public bool CanvasPoint(Vector3 world, out float x, out float y)
        {
            Vector3 local = Canvas.InverseTransformPoint(world);
            x = local.x + 0.5f;
            y = 0.5f - local.y;
            const float edge = 0.02f;  // a ray on the very rim still draws (clamped onto the canvas)
            return x >= -edge && x <= 1f + edge && y >= -edge && y <= 1f + edge && Math.Abs(local.z) < 0.05f;
        }

        void SendPieces(double now, bool all)
        {
            if (!IsOpen) return;  // kept until a drawing is open (then sent in order)
            SketchPiece piece;
            while (all ? _pad.TakePieceNow(out piece) : _pad.TakePiece(now, out piece))
            {
                int first = piece.FirstPoint, count = piece.Count;
                SketchStyle style = piece.Style;
                bool append = piece.Append;
                if (!Send(() => _client.SendSketchStroke(_pad.Points, first, count, style, append))) return;
                _showOnGrid = true;
            }
        }

        void UploadInk()
        {
            if (_ink == null || !_raster.Dirty) return;
            _ink.LoadRawTextureData(_raster.Pixels);
            _ink.Apply(false);
            _raster.Dirty = false;
        }

        // --- results and refusals ------------------------------------------------------------------

        void OnClientResult(SketchResultMessage result) { Interlocked.Exchange(ref _incoming, result); }

        void OnClientSharper(SketchPreviewMessage preview) { Interlocked.Exchange(ref _incomingSharper, preview); }

        void OnClientRejected(ErrorMessage error)
        {
            OmokageDispatcher.Post(() =>
            {
                if (this != null) Fail(new OmokageError(error.Code, "The server refused a stroke: " + error.Message));
            });
        }

        void Show(SketchResultMessage result)
        {
            _latest = result;
            ShowPreview(result.Preview);
            CandidateGrid target = resultGrid != null ? resultGrid : grid;
            if (_showOnGrid && target != null) target.ShowSketchResult(result);
            var handler = ResultShown;
            if (handler != null) handler(result);
        }

        // a result's preview, or v1.6 the sharper one that followed it, on the preview renderer
        void ShowPreview(TextureData preview)
        {
            if (preview == null || preview.Data == null) return;
            CandidateGrid.DecodeInto(ref _preview, preview, "omokage sketch preview");
            if (previewRenderer != null)
            {
                if (_previewMaterial == null) _previewMaterial = previewRenderer.material;
                _previewMaterial.mainTexture = _preview;
            }
        }

        // --- the user's commands ----------------------------------------------------------------------

        /// <summary>Pen down at a canvas point (x right, y down, 0 … 1), for input other than the pointer; call it every
        /// frame while drawing, then <see cref="PenUp"/>.</summary>
        public void PenAt(float x, float y) { Pad.Pen(x, y); }

        /// <summary>Ends the stroke drawn with <see cref="PenAt"/>.</summary>
        public void PenUp() { Pad.EndStroke(); }

        /// <summary>Takes back the last whole stroke (also on the server, if it has some of it).</summary>
        public void Undo()
        {
            if (Pad.Undo() && IsOpen) Send(() => _client.SendSketchUndo());
            _showOnGrid = true;
        }

        /// <summary>Empties the drawing (also on the server).</summary>
        public void Clear()
        {
            if (Pad.Clear() && IsOpen) Send(() => _client.SendSketchClear());
            _showOnGrid = true;
        }

        /// <summary>A new, empty drawing: clears the local one and opens a new one on the server (<c>sketch.begin</c>).
        /// Call it yourself when <c>beginOnConnect</c> is off.</summary>
        public void Begin()
        {
            Pad.Clear();
            _showOnGrid = true;
            var welcome = _client != null ? _client.Welcome : null;
            if (welcome != null && welcome.Sketch != null && _client.IsConnected) Open();
        }

        public void UseLine() { Tool = SketchTool.Line; }

        public void UsePaint() { Tool = SketchTool.Paint; }

        public void SetColour(Color value) { Colour = value; }

        public void SetWidth(float value) { Width = value; }

        /// <summary>"Pick from these" for UnityEvents: <see cref="StartSelectionAsync"/>, failures to <see cref="onError"/>.</summary>
        public void StartSelection() { TaskObserver.Observe(StartSelectionAsync(), e => { if (this != null) Fail(OmokageError.From(e)); }); }

        /// <summary>
        /// "Pick from these": sends what is left of the drawing at once, waits for the result that includes it (so that the
        /// selection starts from the faces the user sees), then starts a selection from the drawing on the grid
        /// (<see cref="CandidateGrid.StartFromSketchAsync"/>). The grid's first 9 faces are the drawing's.
        /// </summary>
        public async Task StartSelectionAsync()
        {
            if (grid == null) throw new InvalidOperationException("the sketch panel has no grid to start a selection on");
            if (!IsOpen) throw new OmokageConnectionException("no drawing is open on the server (not connected, or the server does not sketch)");
            _pad.EndStroke();
            SendPieces(0, true);
            if (_client.SketchPending) await _client.WaitSketchResultAsync(_lastRid);
            _showOnGrid = false;  // the selection's grid replaces the drawing's faces until the user draws again
            await grid.StartFromSketchAsync();
        }

        // --- plumbing ------------------------------------------------------------------------------------

        void ApplyStyle()
        {
            if (_pad == null) return;
            double w = Math.Max(SketchStyle.MinWidth, Math.Min(SketchStyle.MaxWidth, width));
            _pad.Style = new SketchStyle(tool == SketchTool.Paint ? SketchTools.Paint : SketchTools.Line,
                                         Channel(colour.r), Channel(colour.g), Channel(colour.b), SketchStyle.Wire((float)w));
            _pad.MaxRateHz = Math.Max(1f, Math.Min(30f, maxRateHz));
        }

        static byte Channel(float c) { return (byte)(Mathf.Clamp01(c) * 255f + 0.5f); }

        /// <summary>Sends one sketch message; a link lost meanwhile is not an error here (the reconnection replays the drawing).</summary>
        bool Send(Func<int> send)
        {
            try
            {
                _lastRid = send();
                return true;
            }
            catch (OmokageConnectionException)
            {
                _openSession = null;
                return false;
            }
        }

        void Fail(OmokageError error)
        {
            Debug.LogWarning("[omokage] " + error);
            var handler = Failed;
            if (handler != null) handler(error);
            onError.Invoke(error.Code, error.Message);
        }
    }
}
