using System;
using System.Collections.Generic;
using System.Threading.Tasks;
using UnityEngine;

namespace Omokage.Client.Components
{
    /// <summary>
    /// The 3×3 grid of candidate faces. It starts a selection when the connection is first welcomed, shows each
    /// <c>candidates</c> grid (titles at once, textures as they arrive: cached ones immediately, the others with one
    /// <c>texture.get</c>, turned into <c>Texture2D</c> with <c>LoadImage</c>), chooses a tile
    /// (<see cref="Choose(CandidateTile)"/>) and decides (<see cref="Decide(CandidateTile)"/> / <see cref="DecideChosen"/>).
    /// After a decision it never opens the product page by itself: the URL must pass the allow-list (http/https, and
    /// <c>allowedUrlHosts</c> when set) and the user must confirm (<see cref="onOpenUrlRequested"/> → your dialog →
    /// <see cref="ConfirmOpenUrl"/> or <see cref="CancelOpenUrl"/>). A reconnection (e.g. after the app was paused)
    /// does not start a new selection: the grid and the decision stay, and a lost server session is restored
    /// (<see cref="SelectionSession.RestoreAsync"/>; v1.7: a server that kept the selection goes on with it, and its grid is
    /// shown as it was, <see cref="RestoreOutcome.Resumed"/>). Requests are <c>…Async</c> methods returning Tasks; the void
    /// methods of the same name are for UnityEvents and route failures to <see cref="onError"/> / <see cref="Failed"/>.
    /// Without tiles assigned it builds nine quads with TextMesh titles under its own transform.
    /// <para>v1.3 sketch: <see cref="ShowSketchResult"/> shows a drawing's faces (from <see cref="OmokageSketchPanel"/>) as a
    /// preview nobody can choose from (<see cref="PreviewingSketch"/>); <see cref="StartFromSketchAsync"/> turns them into a
    /// selection.</para>
    /// <para>v1.7 back: <see cref="Back"/> / <see cref="BackAsync"/> undo the last choose or skip (a slipped controller ray):
    /// the grid before it is shown again as it was (<see cref="CanGoBack"/>; <see cref="OmokageBackButton"/> is a button for it).</para>
    /// <para>v1.7 superseded: when another connection presents the resume token while this one is still open, the selection goes
    /// on there and nothing reconnects (<see cref="OmokageConnection.IsSuperseded"/>). The grid then cannot be chosen from
    /// (<see cref="WentElsewhere"/>) and raises <see cref="SelectionWentElsewhere"/> / <see cref="onWentElsewhere"/>: show
    /// <see cref="WentElsewhereTitle"/> and <see cref="WentElsewhereText"/> with a <see cref="StartNewHereLabel"/> button that
    /// calls <see cref="StartNewHere"/> (a new connection without the token, and a new selection on it).</para>
    /// <para>v1.1 ratings: <see cref="Rate"/> / <see cref="RateAsync"/> say how close a face is to what the user wants, 1 … 5
    /// (<see cref="RatingLabel"/> and <see cref="RatingWords"/> are the web page's words). The grid keeps the selection's
    /// ratings as the server does (<see cref="RatingOf"/>, <see cref="Ratings"/>, <see cref="RatingsChanged"/>): a second
    /// rating of a face replaces the first, a back forgets those given on the grids it leaves, a new selection starts with
    /// none, a refused rating is taken back. <see cref="OffersRating"/> says whether to show a rating control at all (not
    /// against a v1.0 server, not in a study), <see cref="CanRate"/> whether it can be pressed now.</para>
    /// <para>v1.5 ideal face: <see cref="ShowIdeal"/> / <see cref="ShowIdealAsync"/> ask for a face generated from what the
    /// selection has learnt; its image (<see cref="IdealTexture"/>, on the optional ideal renderer) and the unseen faces
    /// nearest it come with <see cref="IdealShown"/> / <see cref="onIdealShown"/>; the grid stays.</para>
    /// </summary>
    [AddComponentMenu("Omokage/Candidate Grid")]
    public class CandidateGrid : MonoBehaviour
    {
        /// <summary>v1.7: what to tell the user when the selection went on on another connection (<see cref="WentElsewhere"/>);
        /// the web client's words.</summary>
        public const string WentElsewhereTitle = "This selection went on elsewhere";

        /// <summary>v1.7: the sentence under <see cref="WentElsewhereTitle"/>.</summary>
        public const string WentElsewhereText = "Another connection took it over, where it carries on. Continue there, or start a new selection here.";

        /// <summary>v1.7: the label of the button that calls <see cref="StartNewHere"/>.</summary>
        public const string StartNewHereLabel = "Start a new one here";

        /// <summary>v1.1: the question over a rating control (the web page's words): how close the face is to what the user
        /// wants.</summary>
        public const string RatingLabel = "How close is it?";

        /// <summary>v1.1: what each rating says, 1 … 5 at index 0 … 4 (the web page's words): "Not at all", "A little",
        /// "Somewhat", "Close", "Exactly it".</summary>
        public static readonly IReadOnlyList<string> RatingWords =
            Array.AsReadOnly(new[] { "Not at all", "A little", "Somewhat", "Close", "Exactly it" });

        static readonly IReadOnlyDictionary<int, int> NoRatings =
            new System.Collections.ObjectModel.ReadOnlyDictionary<int, int>(new Dictionary<int, int>());

        [SerializeField] OmokageConnection connection;

        [Header("Selection")]
        [Tooltip("Feature space: one of welcome.algorithms (raw, pca, nmf, ae).")]
        [SerializeField] string algorithm = "pca";

        [Tooltip("How the server picks the faces: one of welcome.policies (e.g. cover, infogain, thompson, study, random). " +
                 "Empty: the server's default_policy. A name the server does not offer falls back to its default, with a warning.")]
        [SerializeField] string policy = "";

        [Tooltip("Start a random selection when the connection is first welcomed (a reconnection restores the grid instead).")]
        [SerializeField] bool startOnConnect = true;

        [Tooltip("Seed of the random start (negative: a different first grid each time).")]
        [SerializeField] int seed = -1;

        [Header("Product page")]
        [Tooltip("After a decision, ask to open decided.item.url (onOpenUrlRequested; opens only on ConfirmOpenUrl).")]
        [SerializeField] bool openUrlOnDecide = true;

        [Tooltip("Hosts the product page may be on (e.g. shop.example, *.shop.example). Empty: any host. " +
                 "Only http and https URLs are ever opened.")]
        [SerializeField] string[] allowedUrlHosts = new string[0];

        [Header("Tiles")]
        [Tooltip("Nine tiles, row-major. Left empty, they are built from code (or from the prefab).")]
        [SerializeField] CandidateTile[] tiles = new CandidateTile[0];

        [Tooltip("Optional prefab for built tiles.")]
        [SerializeField] CandidateTile tilePrefab;

        [Tooltip("Material for built tiles; use an unlit textured one (URP: Universal Render Pipeline/Unlit).")]
        [SerializeField] Material tileMaterial;

        [Tooltip("Font for built titles (default: Unity's built-in font).")]
        [SerializeField] Font titleFont;

        [SerializeField] float tileSize = 0.25f;
        [SerializeField] float tileSpacing = 0.04f;
        [SerializeField] float titleHeight = 0.05f;

        [Header("Image start")]
        [Tooltip("Shows the model's reconstruction after an image start (optional).")]
        [SerializeField] Renderer reconstructionRenderer;

        [Header("Ideal face (protocol v1.5)")]
        [Tooltip("Shows the ideal face ShowIdeal asks for: a face generated from what the selection has learnt (optional).")]
        [SerializeField] Renderer idealRenderer;

        [Header("Events")]
        [Tooltip("The selection ended on a face; the argument is its product page URL (not opened yet).")]
        public OmokageUrlEvent onDecided = new OmokageUrlEvent();

        [Tooltip("Ask the user before leaving the app: show a dialog, then call ConfirmOpenUrl or CancelOpenUrl.")]
        public OmokageUrlEvent onOpenUrlRequested = new OmokageUrlEvent();

        [Tooltip("A request failed or a URL was refused: (code, message for people).")]
        public OmokageErrorEvent onError = new OmokageErrorEvent();

        [Tooltip("An ideal face arrived (ShowIdeal): the generated face's texture. The faces nearest it are in LastIdeal.Items.")]
        public OmokageTextureEvent onIdealShown = new OmokageTextureEvent();

        [Tooltip("v1.7: the selection went on on another connection: (title, text) to show, with a \"Start a new one here\" " +
                 "button that calls StartNewHere.")]
        public OmokageMessageEvent onWentElsewhere = new OmokageMessageEvent();

        readonly Dictionary<string, Texture2D> _textures = new Dictionary<string, Texture2D>(StringComparer.Ordinal);
        OmokageConnection _subscribed;
        SelectionSession _session;
        OpenUrlGate _urlGate;
        int _generation;
        Texture2D _reconstruction;
        IReadOnlyList<CandidateItem> _sketchItems;
        int _sketchShown;
        bool _sketchLoading;
        Texture2D _ideal;
        bool _idealPending;

        /// <summary>The selection (grid, chosen face, decision, server session); null before the first request.</summary>
        public SelectionSession Session { get { return _session; } }

        /// <summary>The grid shown (null before the first).</summary>
        public CandidatesMessage Current { get { return _session == null ? null : _session.Current; } }

        /// <summary>The last decision (null until one); kept across pauses and reconnections.</summary>
        public DecidedMessage LastDecision { get { return _session == null ? null : _session.LastDecision; } }

        /// <summary>The face chosen last (it is shown first in the current grid), or null.</summary>
        public int? ChosenId { get { return _session == null ? null : _session.ChosenId; } }

        /// <summary>A request is in flight: tiles ignore selection meanwhile.</summary>
        public bool Busy { get; private set; }

        /// <summary>Whether a tile may be chosen now: a grid is shown (not a drawing's preview), nothing in flight, not decided,
        /// and not waiting for the restore after a reconnection (<see cref="SelectionSession.CanChoose"/>: between the welcome
        /// and the restore a pick would reach the server and be dropped here). Allocation-free.</summary>
        public bool CanChoose { get { return !Busy && !PreviewingSketch && _session != null && _session.CanChoose && !WentElsewhere; } }

        /// <summary>v1.7: the selection went on on another connection (<see cref="OmokageConnection.IsSuperseded"/>): nothing can be
        /// chosen here until <see cref="StartNewHere"/>. Allocation-free.</summary>
        public bool WentElsewhere { get { return connection != null && connection.IsSuperseded; } }

        /// <summary>Whether the connection's client is connected now (the skip, decide and back buttons look disabled
        /// offline: their press would only fail with "not connected").</summary>
        bool Online { get { return connection != null && connection.IsConnected; } }

        /// <summary>v1.3: the tiles show a drawing's faces (<see cref="ShowSketchResult"/>), not the selection's grid: nothing
        /// can be chosen or decided until a selection starts (<see cref="StartFromSketchAsync"/> or any other start).</summary>
        public bool PreviewingSketch { get; private set; }

        /// <summary>v1.5: whether <see cref="ShowIdeal"/> would do something: a tile could be chosen now, the server generates
        /// ideal faces (<see cref="OmokageClient.IdealAccepted"/>) and none is being asked for.</summary>
        public bool CanShowIdeal
        {
            get
            {
                var client = connection != null ? connection.Client : null;
                return CanChoose && !_idealPending && client != null && client.IdealAccepted;
            }
        }

        /// <summary>v1.5: the last ideal face's image (<see cref="ShowIdealAsync"/>; one texture, reloaded for each), or null
        /// before one.</summary>
        public Texture2D IdealTexture { get { return _ideal; } }

        /// <summary>v1.5: the last ideal face of this selection (its <see cref="IdealResultMessage.Items"/>: the unseen faces
        /// nearest to it), or null.</summary>
        public IdealResultMessage LastIdeal { get { return _session == null ? null : _session.LastIdeal; } }

        /// <summary>Whether <see cref="DecideChosen"/> would do something (connected, too).</summary>
        public bool CanDecide { get { return CanChoose && Current.Items.Count > 0 && Online; } }

        public IList<CandidateTile> Tiles { get { return tiles; } }

        public string Algorithm { get { return algorithm; } set { algorithm = value; } }

        /// <summary>The policy requested at the next start (null or empty: the server's default).</summary>
        public string Policy { get { return policy; } set { policy = value; } }

        /// <summary>Whether <see cref="Skip"/> would do something: a grid is shown, nothing in flight, not decided, connected,
        /// and the server speaks v1.1.</summary>
        public bool CanSkip
        {
            get
            {
                var client = connection != null ? connection.Client : null;
                var welcome = client != null ? client.Welcome : null;
                return CanChoose && Current.Items.Count > 0 && welcome != null && welcome.Supports(1) && client.IsConnected;
            }
        }

        /// <summary>v1.1: whether this selection offers ratings at all (show a rating control): the server speaks v1.1 (a v1.0
        /// server has no <c>rate</c>) and it is not a study (a study's trials show no rating). Allocation-free.</summary>
        public bool OffersRating
        {
            get
            {
                var client = connection != null ? connection.Client : null;
                var welcome = client != null ? client.Welcome : null;
                return welcome != null && welcome.Supports(1) && welcome.Study == null && (_session == null || !_session.IsStudy);
            }
        }

        /// <summary>v1.1: whether <see cref="Rate"/> would do something now: ratings are offered (<see cref="OffersRating"/>), a
        /// tile could be chosen (<see cref="CanChoose"/>: a grid, nothing in flight, not decided, no restore due) and the client
        /// is connected. Allocation-free: a rating control asks every frame.</summary>
        public bool CanRate { get { return CanChoose && OffersRating && _session.CanRate; } }

        /// <summary>v1.1: the rating 1 … 5 the user gave face <paramref name="id"/> in this selection, or null (see
        /// <see cref="RateAsync"/>). Allocation-free.</summary>
        public int? RatingOf(int id) { return _session == null ? null : _session.RatingOf(id); }

        /// <summary>v1.1: this selection's ratings, face id → 1 … 5 (read-only; empty before a selection).</summary>
        public IReadOnlyDictionary<int, int> Ratings { get { return _session == null ? NoRatings : _session.Ratings; } }

        /// <summary>v1.7: whether <see cref="Back"/> would do something: a grid after a choose or skip is shown (not the first),
        /// nothing in flight, not decided, not a study trial, not a drawing's preview, no restore due, connected, and the server
        /// speaks v1.7. Allocation-free: a button asks every frame.</summary>
        public bool CanGoBack { get { return CanChoose && _session.CanGoBack; } }

        /// <summary>Material of built tiles; set before Awake (add the component to an inactive GameObject).</summary>
        public Material TileMaterial { get { return tileMaterial; } set { tileMaterial = value; } }

        /// <summary>Font of built titles; set before Awake.</summary>
        public Font TitleFont { get { return titleFont; } set { titleFont = value; } }

        public bool StartOnConnect { get { return startOnConnect; } set { startOnConnect = value; } }

        public bool OpenUrlOnDecide { get { return openUrlOnDecide; } set { openUrlOnDecide = value; } }

        /// <summary>Hosts a product page may be on (empty: any; see <see cref="UrlPolicy"/>).</summary>
        public string[] AllowedUrlHosts { get { return allowedUrlHosts; } set { allowedUrlHosts = value ?? new string[0]; } }

        /// <summary>The URL waiting for the user's confirmation (null when none).</summary>
        public string PendingUrl { get { return _urlGate == null ? null : _urlGate.Pending; } }

        public OmokageConnection Connection
        {
            get { return connection; }
            set
            {
                connection = value;
                if (isActiveAndEnabled) Subscribe();
            }
        }

        /// <summary>Each grid shown (main thread).</summary>
        public event Action<CandidatesMessage> CandidatesShown;

        /// <summary>The selection ended (main thread); the product page is not open yet.</summary>
        public event Action<DecidedMessage> Decided;

        /// <summary>A URL passed the allow-list and waits for the user: show a dialog, then call <see cref="ConfirmOpenUrl"/>
        /// or <see cref="CancelOpenUrl"/> (main thread).</summary>
        public event Action<string> OpenUrlRequested;

        /// <summary>After a reconnection: what <see cref="RestoreAsync"/> did (main thread); v1.7 <see cref="RestoreOutcome.Resumed"/>:
        /// the server went on with the selection, and its grid (the one that was on screen) is shown again.</summary>
        public event Action<RestoreOutcome> Restored;

        /// <summary>A request failed or a URL was refused (main thread).</summary>
        public event Action<OmokageError> Failed;

        /// <summary>v1.1: <see cref="Ratings"/> changed (a rating given, replaced, taken back after a refusal, forgotten by a
        /// back, or a new selection began; main thread). Read <see cref="RatingOf"/> for the face you show.</summary>
        public event Action RatingsChanged;

        /// <summary>v1.5: an ideal face arrived (<see cref="ShowIdealAsync"/>): the reply (the faces nearest it, their texture
        /// hashes to fetch like a grid's) and its decoded image, <see cref="IdealTexture"/> (main thread).</summary>
        public event Action<IdealResultMessage, Texture2D> IdealShown;

        /// <summary>v1.7: the selection went on on another connection (<see cref="WentElsewhere"/>; main thread): show
        /// <see cref="WentElsewhereTitle"/>, <see cref="WentElsewhereText"/> and a <see cref="StartNewHereLabel"/> button
        /// (<see cref="StartNewHere"/>).</summary>
        public event Action SelectionWentElsewhere;

        void Awake()
        {
            OmokageDispatcher.EnsureExists();
            if (tiles == null || tiles.Length == 0) BuildTiles();
            for (int i = 0; i < tiles.Length; i++)
            {
                if (tiles[i] == null) continue;
                tiles[i].Grid = this;
                tiles[i].Index = i;
                tiles[i].Show(null);
            }
        }

        void OnEnable() { Subscribe(); }

        void OnDisable() { Unsubscribe(); }

        void Subscribe()
        {
            if (_subscribed == connection) return;
            Unsubscribe();
            if (connection == null) return;
            connection.Connected += OnConnected;
            connection.SelectionSuperseded += OnSuperseded;
            _subscribed = connection;
            if (connection.IsConnected) OnConnected(connection.Welcome);
        }

        void Unsubscribe()
        {
            if (_subscribed != null)
            {
                _subscribed.Connected -= OnConnected;
                _subscribed.SelectionSuperseded -= OnSuperseded;
            }
            _subscribed = null;
        }

        // Every welcome: the first starts a selection; later ones (a reconnection, e.g. after a pause) keep what the user
        // had and restore a lost server session (v1.7: or show the grid of the selection the server went on with).
        void OnConnected(WelcomeMessage welcome)
        {
            if (PreviewingSketch) return;  // the user is drawing: the sketch panel replays the drawing, its faces follow
            if (Current != null)
            {
                if (_session.NeedsRestore) Observe(RestoreAsync());
                return;
            }
            if (welcome != null && welcome.Study != null) return;  // a study participant: OmokageStudy asks study.next
            if (LastDecision != null || !startOnConnect || Busy) return;
            var client = connection != null ? connection.Client : null;
            if (client != null && client.ResumedGrid != null) Observe(RestoreAsync());  // the start's reply was lost; the server kept it
            else StartSelection();
        }

        // v1.7: another connection took the selection over; the grid stays on screen, and nothing can be chosen from it
        void OnSuperseded()
        {
            var handler = SelectionWentElsewhere;
            if (handler != null) handler();
            onWentElsewhere.Invoke(WentElsewhereTitle, WentElsewhereText);
        }

        /// <summary>
        /// v1.7, "Start a new one here": after the selection went on on another connection (<see cref="WentElsewhere"/>),
        /// leaves it there and starts a new one here: the grid forgets its selection (grid, chosen face, decision, drawing
        /// preview; the tiles are cleared) and the connection connects again without the resume token
        /// (<see cref="OmokageConnection.StartAfresh"/>); its welcome then starts a new selection as a first welcome does
        /// (<see cref="StartOnConnect"/>). Does nothing unless <see cref="WentElsewhere"/>.
        /// </summary>
        public void StartNewHere()
        {
            if (!WentElsewhere) return;
            _generation++;  // whatever was in flight belongs to the selection left behind
            bool rated = _session != null && _session.Ratings.Count > 0;
            if (_session != null) _session.RatingsChanged -= OnRatingsChanged;
            _session = null;
            if (rated) OnRatingsChanged();
            PreviewingSketch = false;
            Clear();
            ShowReconstruction(null);
            SetBusy(false);
            connection.StartAfresh();
        }

        /// <summary>
        /// <c>study.next</c> (v1.2): a trial's grid is shown like any other (then choose, skip and decide as usual; its model,
        /// policy and start are the study's); a <c>questionnaire</c> or <c>study.done</c> reply is returned and the grid is
        /// cleared. <see cref="OmokageStudy"/> drives this.
        /// </summary>
        public async Task<ServerMessage> StudyNextAsync(byte[] image = null)
        {
            if (Busy) throw new InvalidOperationException("a request is in flight");
            var session = ReadySession();
            SetBusy(true);
            int generation = ++_generation;
            try
            {
                ServerMessage reply = await session.StudyNextAsync(image);
                if (this == null || generation != _generation) return reply;
                var grid = reply as CandidatesMessage;
                if (grid != null)
                {
                    Show(grid);
                    SetBusy(false);
                    await LoadTextures(session.Client, grid, generation);
                }
                else Clear();
                return reply;
            }
            finally
            {
                if (this != null && generation == _generation) SetBusy(false);
            }
        }

        /// <summary>Hides every tile (between study trials, while a questionnaire is shown).</summary>
        public void Clear()
        {
            for (int i = 0; i < tiles.Length; i++)
                if (tiles[i] != null) tiles[i].Show(null);
        }

        // --- requests as Tasks ---------------------------------------------------------------------

        /// <summary>Starts a new random selection (abandons the current one and its decision).</summary>
        public Task StartSelectionAsync()
        {
            int? s = seed >= 0 ? (int?)seed : null;
            return RunGrid(session => session.StartRandomAsync(algorithm, s, OfferedPolicy(session.Client)), true);
        }

        /// <summary>Starts from an encoded image (JPEG/PNG): the nine nearest faces; the reconstruction is shown.</summary>
        public Task StartFromImageAsync(byte[] image)
        {
            if (image == null) throw new ArgumentNullException("image");
            return RunGrid(session => session.StartImageAsync(algorithm, image, OfferedPolicy(session.Client)), true);
        }

        /// <summary>v1.3: starts a selection from the drawing of this grid's connection (<c>start init=sketch</c>): the faces
        /// of its latest <c>sketch.result</c> become the first grid (with the grid's algorithm and policy). Send the drawing
        /// first (<see cref="OmokageSketchPanel.StartSelectionAsync"/> waits for the result of the last stroke, then calls
        /// this).</summary>
        public Task StartFromSketchAsync()
        {
            return RunGrid(session => session.StartSketchAsync(algorithm, OfferedPolicy(session.Client)), true);
        }

        /// <summary>
        /// v1.3: shows a drawing's faces on the tiles (titles at once, textures as they arrive; the newest result wins) as a
        /// preview: <see cref="PreviewingSketch"/> is set, tiles cannot be chosen, gaze is not sent for them. Ignored while a
        /// request is in flight. The next grid shown (e.g. after <see cref="StartFromSketchAsync"/>) ends the preview.
        /// </summary>
        public void ShowSketchResult(SketchResultMessage result)
        {
            if (result == null) throw new ArgumentNullException("result");
            if (Busy) return;
            var client = connection != null ? connection.Client : null;
            PreviewingSketch = true;
            _sketchShown++;
            _sketchItems = result.Items;
            ShowItems(result.Items);
            ShowReconstruction(null);
            if (client != null && !_sketchLoading) Observe(LoadSketchTextures(client));
        }

        /// <summary>Ends a drawing's preview: the tiles show the current grid again (the faces a choose refers to), or are
        /// left as they are when no selection has started yet. A reconnection during the preview (which skipped the restore)
        /// is caught up on here: the selection is restored (<see cref="RestoreAsync"/>).</summary>
        public void EndSketchPreview()
        {
            if (!PreviewingSketch) return;
            PreviewingSketch = false;
            if (Current == null) return;
            ShowItems(Current.Items);
            ShowReconstruction(Current.Reconstruction);
            var client = connection != null ? connection.Client : null;
            if (client == null) return;
            if (client.IsConnected && !Busy && ReadySession().NeedsRestore) Observe(RestoreAsync());  // it shows the restored grid
            else Observe(LoadTextures(client, Current, _generation));
        }

        async Task LoadSketchTextures(OmokageClient client)
        {
            _sketchLoading = true;
            try
            {
                int loaded = -1;
                while (this != null && PreviewingSketch && loaded != _sketchShown)
                {
                    int shown = _sketchShown;
                    loaded = shown;
                    await LoadTextures(client, _sketchItems, () => PreviewingSketch && shown == _sketchShown);
                }
            }
            finally
            {
                _sketchLoading = false;
            }
        }

        /// <summary>
        /// v1.5: asks for the ideal face (<c>ideal</c>): a face generated from what this selection's belief likes best near
        /// <paramref name="near"/> (a face shown in this selection; null: the face chosen last, or the most probable one on
        /// screen), and the unseen faces nearest to it. The grid stays as it is (choose, skip and decide go on). The image is
        /// decoded into <see cref="IdealTexture"/> (shown on the ideal renderer when one is assigned), then
        /// <see cref="IdealShown"/> and <see cref="onIdealShown"/> are raised — unless a new selection started meanwhile.
        /// Throws <see cref="InvalidOperationException"/> before a grid, while the tiles show a drawing's faces or after the
        /// decision; the server's <c>wrong_state</c> when it does not generate ideal faces (<see cref="OmokageClient.IdealAccepted"/>).
        /// </summary>
        public async Task<IdealResultMessage> ShowIdealAsync(int? near = null)
        {
            if (PreviewingSketch) throw new InvalidOperationException("the tiles show a drawing's faces; start a selection from it first");
            var session = ReadySession();
            _idealPending = true;
            try
            {
                IdealResultMessage ideal = await session.IdealAsync(near);
                if (this == null || session.LastIdeal != ideal) return ideal;  // a newer selection began meanwhile
                DecodeInto(ref _ideal, ideal.Preview, "omokage ideal face");
                if (idealRenderer != null) idealRenderer.material.mainTexture = _ideal;
                var handler = IdealShown;
                if (handler != null) handler(ideal, _ideal);
                onIdealShown.Invoke(_ideal);
                return ideal;
            }
            finally
            {
                _idealPending = false;
            }
        }

        /// <summary>Chooses a face of the current grid: the next grid shows it first. Throws
        /// <see cref="InvalidOperationException"/> while <see cref="Busy"/>, after a decision, or after a reconnection until the
        /// selection is restored (so do <see cref="SkipAsync"/>, <see cref="BackAsync"/> and <see cref="DecideAsync"/>).</summary>
        public Task ChooseAsync(int id)
        {
            RequireIdle();
            return RunGrid(session => session.ChooseAsync(id), false);
        }

        /// <summary>"None of these": the next grid of unseen faces (no chosen face first). Needs a v1.1 server.</summary>
        public Task SkipAsync()
        {
            RequireIdle();
            return RunGrid(session => session.SkipAsync(), false);
        }

        /// <summary>v1.7: undoes the last choose or skip: the grid before it is shown again (the same faces in the same order,
        /// its step one less; textures from the cache), <see cref="ChosenId"/> is the face chosen on it, and
        /// <see cref="CandidatesShown"/> is raised as for any grid. Throws <see cref="InvalidOperationException"/> while
        /// <see cref="Busy"/>, while the tiles show a drawing's faces or after a decision; on the first grid or in a study trial
        /// the server's <c>wrong_state</c> (<see cref="OmokageServerException"/>), and the grid stays.</summary>
        public Task BackAsync()
        {
            RequireIdle();
            return RunGrid(session => session.BackAsync(), false);
        }

        /// <summary>v1.1: rates a face shown in this selection, 1 (not at all) … 5 (exactly it; <see cref="RatingWords"/>); the
        /// grid stays and the next one takes it in. The grid keeps it at once (<see cref="RatingOf"/>,
        /// <see cref="RatingsChanged"/>): a second rating of the face replaces the first (the same value again sends nothing:
        /// the result is null), a back forgets ratings given on the grids it leaves, a new selection starts with none, and a
        /// rating the server refuses is taken back (the Task throws; see <see cref="SelectionSession.RateAsync"/>). Throws
        /// <see cref="InvalidOperationException"/> while the tiles show a drawing's faces, before a grid, after the decision and
        /// against a v1.0 server.</summary>
        public Task<RatedMessage> RateAsync(int id, int rating)
        {
            if (PreviewingSketch) throw new InvalidOperationException("the tiles show a drawing's faces; start a selection from it first");
            return ReadySession().RateAsync(id, rating);
        }

        /// <summary>Ends the selection on a face of the current grid; then (with <see cref="OpenUrlOnDecide"/>) asks the
        /// user to confirm opening its product page. Throws <see cref="InvalidOperationException"/> while busy or decided.</summary>
        public async Task<DecidedMessage> DecideAsync(int id)
        {
            RequireIdle();
            var session = ReadySession();
            SetBusy(true);
            int generation = ++_generation;
            try
            {
                DecidedMessage decided = await session.DecideAsync(id);
                if (this == null || generation != _generation) return decided;
                var handler = Decided;
                if (handler != null) handler(decided);
                onDecided.Invoke(decided.Item.Url);
                if (openUrlOnDecide) RequestOpenUrl(decided.Item.Url);
                return decided;
            }
            finally
            {
                if (this != null && generation == _generation) SetBusy(false);
            }
        }

        /// <summary>Puts the user back after a reconnection (the grid connects this itself; see
        /// <see cref="SelectionSession.RestoreAsync"/> for exactly what is sent).</summary>
        public async Task<RestoreOutcome> RestoreAsync()
        {
            var session = ReadySession();
            SetBusy(true);
            int generation = ++_generation;
            try
            {
                CandidatesMessage before = session.Current;
                RestoreOutcome outcome = await session.RestoreAsync();
                if (this == null || generation != _generation) return outcome;
                if (session.Current != before)
                {
                    Show(session.Current);
                    SetBusy(false);
                    await LoadTextures(session.Client, session.Current, generation);
                }
                var handler = Restored;
                if (handler != null) handler(outcome);
                return outcome;
            }
            catch (Exception) when (this == null || generation != _generation)
            {
                return RestoreOutcome.SameSession;  // superseded by a newer request
            }
            finally
            {
                if (this != null && generation == _generation) SetBusy(false);
            }
        }

        // --- fire-and-forget wrappers for UnityEvents: failures go to onError / Failed -------------------

        /// <summary>Starts a new random selection (abandons the current one).</summary>
        public void StartSelection() { Observe(StartSelectionAsync()); }

        public void StartFromImage(byte[] image) { Observe(StartFromImageAsync(image)); }

        public void Choose(CandidateTile tile)
        {
            if (tile != null && tile.Item != null) Choose(tile.Item.Id);
        }

        /// <summary>Chooses a face of the current grid (ignored while busy or decided).</summary>
        public void Choose(int id)
        {
            if (CanChoose) Observe(ChooseAsync(id));
        }

        /// <summary>"None of these" (ignored unless <see cref="CanSkip"/>).</summary>
        public void Skip()
        {
            if (CanSkip) Observe(SkipAsync());
        }

        /// <summary>v1.7: "back": undoes the last choose or skip (ignored unless <see cref="CanGoBack"/>); see <see cref="BackAsync"/>.</summary>
        public void Back()
        {
            if (CanGoBack) Observe(BackAsync());
        }

        /// <summary>v1.5: asks for the ideal face near the face chosen last (ignored unless <see cref="CanShowIdeal"/>); see
        /// <see cref="ShowIdealAsync"/>.</summary>
        public void ShowIdeal()
        {
            if (CanShowIdeal) Observe(ShowIdealAsync());
        }

        /// <summary>v1.1: rates a face 1 … 5 (ignored unless <see cref="CanRate"/>; a refusal goes to <see cref="onError"/> /
        /// <see cref="Failed"/>, and the rating is taken back); see <see cref="RateAsync"/>.</summary>
        public void Rate(int id, int rating)
        {
            if (CanRate) Observe(RateAsync(id, rating));
        }

        public void Decide(CandidateTile tile)
        {
            if (tile != null && tile.Item != null) Decide(tile.Item.Id);
        }

        /// <summary>Decides on a face of the current grid (ignored while busy or decided).</summary>
        public void Decide(int id)
        {
            if (CanChoose) Observe(DecideAsync(id));
        }

        /// <summary>Decides on the face chosen last (or the first face of a fresh grid).</summary>
        public void DecideChosen()
        {
            if (!CanDecide) return;
            Decide(ChosenId.HasValue ? ChosenId.Value : Current.Items[0].Id);
        }

        // --- leaving the app ---------------------------------------------------------------------

        /// <summary>
        /// Checks <paramref name="url"/> against the allow-list and, if it passes, asks the user
        /// (<see cref="OpenUrlRequested"/> / <see cref="onOpenUrlRequested"/>); nothing opens until
        /// <see cref="ConfirmOpenUrl"/>. A refused URL is reported as <see cref="OmokageError.UrlBlocked"/>.
        /// </summary>
        public bool RequestOpenUrl(string url)
        {
            var gate = UrlGate();
            string reason;
            if (!gate.Request(url, out reason))
            {
                Fail(new OmokageError(OmokageError.UrlBlocked, "The product page was not opened: " + reason + " (" + url + ")."));
                return false;
            }
            var handler = OpenUrlRequested;
            if (handler != null) handler(url);
            onOpenUrlRequested.Invoke(url);
            return true;
        }

        /// <summary>The user confirmed: opens the pending URL with Application.OpenURL (the app goes to the background).</summary>
        public bool ConfirmOpenUrl() { return UrlGate().Confirm(); }

        /// <summary>The user declined: forgets the pending URL.</summary>
        public void CancelOpenUrl() { UrlGate().Cancel(); }

        OpenUrlGate UrlGate()
        {
            if (_urlGate == null) _urlGate = new OpenUrlGate(null, Application.OpenURL);
            _urlGate.Policy = new UrlPolicy(allowedUrlHosts);  // the inspector may have changed
            return _urlGate;
        }

        // --- plumbing ----------------------------------------------------------------------------

        SelectionSession ReadySession()
        {
            var client = connection != null ? connection.Client : null;
            if (client == null) throw new OmokageConnectionException("the grid has no connection yet");
            if (_session == null)
            {
                _session = new SelectionSession(client);
                _session.RatingsChanged += OnRatingsChanged;
            }
            else if (_session.Client != client) _session.Client = client;  // the connection made a new client
            return _session;
        }

        void RequireIdle()
        {
            if (Busy) throw new InvalidOperationException("a request is in flight");
            if (PreviewingSketch) throw new InvalidOperationException("the tiles show a drawing's faces; start a selection from it first");
            if (LastDecision != null) throw new InvalidOperationException("the selection was decided; start a new one");
            if (_session != null && _session.NeedsRestore)  // its reply would be dropped by the restore that follows
                throw new InvalidOperationException("the selection is being restored after a reconnection");
        }

        /// <summary>The inspector's policy if the server offers it; else null (the server's default), with a warning.</summary>
        string OfferedPolicy(OmokageClient client)
        {
            if (string.IsNullOrEmpty(policy)) return null;
            var welcome = client.Welcome;
            if (welcome == null || !welcome.Supports(1)) return null;  // a v1.0 server has no policies
            foreach (string offered in welcome.Policies)
                if (offered == policy) return policy;
            Debug.LogWarning("[omokage] the server does not offer the policy '" + policy + "' (it offers " +
                             string.Join(", ", welcome.Policies) + "); using its default, " + welcome.DefaultPolicy);
            return null;
        }

        // `await` inside a MonoBehaviour resumes on Unity's main thread (UnitySynchronizationContext), so the code
        // after each await may touch Unity objects. A newer request bumps _generation and wins over older ones.
        async Task RunGrid(Func<SelectionSession, Task<CandidatesMessage>> request, bool restart)
        {
            var session = ReadySession();
            SetBusy(true);
            int generation = ++_generation;
            try
            {
                CandidatesMessage grid = await request(session);
                if (this == null || generation != _generation) return;
                Show(grid);
                SetBusy(false);
                await LoadTextures(session.Client, grid, generation);
            }
            catch (Exception) when (this == null || generation != _generation)
            {
                // superseded by a newer request (e.g. a restart): its outcome is what the user sees
            }
            finally
            {
                if (this != null && generation == _generation) SetBusy(false);
            }
        }

        void Observe(Task task) { TaskObserver.Observe(task, OnTaskFailed); }

        void OnRatingsChanged()
        {
            if (this == null) return;
            var handler = RatingsChanged;
            if (handler != null) handler();
        }

        void OnTaskFailed(Exception e)
        {
            if (this != null) Fail(OmokageError.From(e));
        }

        void Show(CandidatesMessage grid)
        {
            PreviewingSketch = false;
            ShowItems(grid.Items);
            ShowReconstruction(grid.Reconstruction);
            var handler = CandidatesShown;
            if (handler != null) handler(grid);
        }

        void ShowItems(IReadOnlyList<CandidateItem> items)
        {
            for (int i = 0; i < tiles.Length; i++)
            {
                if (tiles[i] == null) continue;
                CandidateItem item = i < items.Count ? items[i] : null;
                tiles[i].Show(item);
                Texture2D cached;
                if (item != null && _textures.TryGetValue(item.Texture, out cached)) tiles[i].SetTexture(cached);
            }
        }

        Task LoadTextures(OmokageClient client, CandidatesMessage grid, int generation)
        {
            return LoadTextures(client, grid.Items, () => generation == _generation && !PreviewingSketch);
        }

        async Task LoadTextures(OmokageClient client, IReadOnlyList<CandidateItem> items, Func<bool> stillShown)
        {
            var hashes = new List<string>();
            foreach (var item in items) hashes.Add(item.Texture);
            TextureFetchResult result = await client.FetchTexturesAsync(hashes);
            if (this == null || !stillShown()) return;
            var keep = new HashSet<string>(hashes, StringComparer.Ordinal);
            for (int i = 0; i < tiles.Length; i++)
            {
                var tile = tiles[i];
                if (tile == null || tile.Item == null) continue;
                TextureData data;
                if (result.Textures.TryGetValue(tile.Item.Texture, out data)) tile.SetTexture(ToTexture(data));
            }
            // keep GPU memory flat over a long session: drop textures the grid no longer shows
            var drop = new List<string>();
            foreach (var kv in _textures)
                if (!keep.Contains(kv.Key)) drop.Add(kv.Key);
            foreach (var hash in drop)
            {
                Destroy(_textures[hash]);
                _textures.Remove(hash);
            }
            if (result.NotFound.Count > 0)
                Debug.LogWarning("[omokage] the server does not know " + result.NotFound.Count + " texture(s)");
        }

        Texture2D ToTexture(TextureData data)
        {
            Texture2D texture;
            if (_textures.TryGetValue(data.Hash, out texture)) return texture;
            texture = Decode(data);
            _textures[data.Hash] = texture;
            return texture;
        }

        static Texture2D NewTexture(string name)
        {
            var texture = new Texture2D(2, 2, TextureFormat.RGBA32, false);
            texture.name = name;
            texture.wrapMode = TextureWrapMode.Clamp;
            texture.filterMode = FilterMode.Bilinear;
            return texture;
        }

        static Texture2D Decode(TextureData data)
        {
            var texture = NewTexture("omokage " + data.Hash.Substring(0, 12));
            if (!texture.LoadImage(data.Data, true))  // JPEG or PNG; resizes the texture; no CPU copy kept
                Debug.LogWarning("[omokage] could not decode texture " + data.Hash + " (" + data.Format + ")");
            return texture;
        }

        /// <summary>Decodes an inline image (an ideal face, a sketch's preview) into <paramref name="target"/>, made on
        /// first use and reused after: one texture, resized, however many images come.</summary>
        internal static void DecodeInto(ref Texture2D target, TextureData data, string name)
        {
            if (target == null) target = NewTexture(name);
            if (!target.LoadImage(data.Data, false))
                Debug.LogWarning("[omokage] could not decode " + name + " (" + data.Format + ")");
        }

        void ShowReconstruction(TextureData data)
        {
            if (_reconstruction != null)
            {
                Destroy(_reconstruction);
                _reconstruction = null;
            }
            if (data == null || reconstructionRenderer == null) return;
            _reconstruction = Decode(data);
            reconstructionRenderer.material.mainTexture = _reconstruction;
        }

        void SetBusy(bool busy)
        {
            Busy = busy;
            for (int i = 0; i < tiles.Length; i++)
                if (tiles[i] != null) tiles[i].Tint();
        }

        void Fail(OmokageError error)
        {
            Debug.LogWarning("[omokage] " + error);
            var handler = Failed;
            if (handler != null) handler(error);
            onError.Invoke(error.Code, error.Message);
        }

        // --- building tiles from code --------------------------------------------------------------

        void BuildTiles()
        {
            var font = titleFont != null ? titleFont : BuiltinFont();
            tiles = new CandidateTile[9];
            float pitchX = tileSize + tileSpacing;
            float pitchY = tileSize + tileSpacing + titleHeight;
            for (int i = 0; i < 9; i++)
            {
                int row = i / 3, col = i % 3;
                CandidateTile tile;
                if (tilePrefab != null)
                {
                    tile = Instantiate(tilePrefab, transform);
                }
                else
                {
                    var root = new GameObject("Tile " + i);
                    root.transform.SetParent(transform, false);
                    var quad = GameObject.CreatePrimitive(PrimitiveType.Quad);  // comes with a MeshCollider for raycasts
                    quad.name = "Image";
                    quad.transform.SetParent(root.transform, false);
                    quad.transform.localScale = new Vector3(tileSize, tileSize, 1f);
                    var renderer = quad.GetComponent<Renderer>();
                    if (tileMaterial != null) renderer.sharedMaterial = tileMaterial;

                    var label = new GameObject("Title");
                    label.transform.SetParent(root.transform, false);
                    label.transform.localPosition = new Vector3(0f, -tileSize * 0.5f - 0.01f, 0f);
                    var text = label.AddComponent<TextMesh>();
                    text.anchor = TextAnchor.UpperCenter;
                    text.alignment = TextAlignment.Center;
                    text.fontSize = 48;
                    text.characterSize = titleHeight / 10f;
                    text.color = Color.white;
                    if (font != null)
                    {
                        text.font = font;
                        var labelRenderer = label.GetComponent<MeshRenderer>();
                        if (labelRenderer != null) labelRenderer.sharedMaterial = font.material;
                    }
                    tile = root.AddComponent<CandidateTile>();
                    tile.Configure(renderer, text);
                }
                tile.transform.localPosition = new Vector3((col - 1) * pitchX, (1 - row) * pitchY, 0f);
                tiles[i] = tile;
            }
        }

        static Font BuiltinFont()
        {
            // Unity 2022.2+ ships LegacyRuntime.ttf; older versions Arial.ttf
            foreach (var name in new[] { "LegacyRuntime.ttf", "Arial.ttf" })
            {
                try
                {
                    var font = Resources.GetBuiltinResource<Font>(name);
                    if (font != null) return font;
                }
                catch (ArgumentException) { }
            }
            return null;
        }

        void OnDestroy()
        {
            Unsubscribe();
            foreach (var texture in _textures.Values) Destroy(texture);
            _textures.Clear();
            if (_reconstruction != null) Destroy(_reconstruction);
            if (_ideal != null) Destroy(_ideal);
        }
    }
}
