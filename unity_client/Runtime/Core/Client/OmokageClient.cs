using System;
using System.Collections.Concurrent;
using System.Collections.Generic;
using System.IO;
using System.Net.WebSockets;
using System.Threading;
using System.Threading.Tasks;
using Omokage.Client.MessagePack;

namespace Omokage.Client
{
    /// <summary>
    /// An async client for omokage protocol v1.7 over <see cref="ClientWebSocket"/>.
    /// <list type="bullet">
    /// <item>One sender: every frame goes through one queue drained by one task (ClientWebSocket forbids
    /// concurrent sends).</item>
    /// <item>One permanent receive loop: a receive is always pending, so WebSocket pings are answered and
    /// replies are routed to their request by <c>rid</c> (a <c>texture.get</c> gets one <c>texture</c> per
    /// known hash, then possibly one <c>error not_found</c>).</item>
    /// <item>Protocol pings keep a clock offset (<see cref="Clock"/>) and notice dead links; a lost
    /// connection is re-opened with exponential back-off and a new <c>hello</c> (a new server session:
    /// listen to <see cref="Connected"/> and start the selection again, unless it resumed: v1.7 below).</item>
    /// <item>Textures are cached by content hash (<see cref="Textures"/>); only missing hashes are fetched.</item>
    /// <item>v1.2 gaze: samples recorded into <see cref="Gaze"/> go out as <c>gaze.batch</c> with <see cref="FlushGaze"/>
    /// (no reply; a refusal raises <see cref="GazeRejected"/>), and the pending batch is always sent before
    /// <c>choose</c>, <c>skip</c>, <c>back</c> and <c>decide</c> (the server closes a grid's gaze when the pick arrives).</item>
    /// <item>v1.2 studies: <see cref="OmokageClientOptions.Participant"/> goes in the hello; <see cref="StudyNextAsync"/>
    /// and <see cref="AnswersAsync"/>.</item>
    /// <item>v1.2 <c>models</c>, sent unasked: <see cref="ModelsChanged"/> and <see cref="Algorithms"/>.</item>
    /// <item>v1.3 sketch: <see cref="SendSketchStroke(float[], int, int, SketchStyle, bool)"/> and the other <c>SendSketch…</c>
    /// methods send without waiting (a live stroke is many messages); each <c>sketch.result</c> raises
    /// <see cref="SketchResultReceived"/> (stale ones are dropped), <see cref="WaitSketchResultAsync"/> awaits the result
    /// that includes a given message, and refusals raise <see cref="SketchRejected"/>.</item>
    /// <item>v1.4 gaze calibration: <see cref="CalibrateBeginAsync"/> (the targets; the gaze sent until the end is the
    /// calibration's) and <see cref="CalibrateEndAsync"/> (when each target was shown; the fit's accuracy and precision, or
    /// <c>calibration_failed</c>); both send the pending gaze first. <see cref="CalibrationRun"/> runs the procedure.</item>
    /// <item>v1.5: <see cref="OmokageClientOptions.Device"/> goes in the hello (the headset's default gaze correction;
    /// <see cref="GazeProfile"/> says what corrects the gaze), <see cref="CalibrateCancelAsync"/> abandons a calibration, and
    /// <see cref="IdealAsync"/> asks for the ideal face (<see cref="IdealAccepted"/>, <see cref="IdealImageSize"/>).</item>
    /// <item>v1.6: sharper sketch previews after the results (<see cref="SketchPreviewReceived"/>).</item>
    /// <item>v1.7: <see cref="BackAsync"/> undoes the last choose or skip (the grid before it comes back).</item>
    /// <item>v1.7: the selection outlives its connection. The client keeps the resume token of the latest welcome (in memory
    /// only: it outlasts a pause of the app, not the client) and presents it in the hello of its next connection; when the
    /// server went on with the selection, the grid it was showing is <see cref="ResumedGrid"/> (raised with
    /// <see cref="SelectionResumed"/>, before <see cref="Connected"/>), and choose, skip, rate and decide work on it as if
    /// nothing had happened. <see cref="SelectionSession.RestoreAsync"/> takes it up (<see cref="RestoreOutcome.Resumed"/>).</item>
    /// <item>v1.7: when another connection presents the token while this one is still open, the server closes this one (close
    /// 1000, <see cref="Protocol.SupersededReason"/>) and the selection goes on there: the client goes
    /// <see cref="ConnectionState.Superseded"/>, does not reconnect (that would start another selection over the user's head)
    /// and drops the spent token; <see cref="StartAfreshAsync"/> starts a new connection without it when the user asks.</item>
    /// </list>
    /// Events are raised on background threads; keep handlers short (the Unity components marshal them onto
    /// the main thread). Awaited results continue on the awaiting context (the main thread in Unity).
    /// </summary>
    public sealed class OmokageClient : IDisposable
    {
        readonly object _gate = new object();
        readonly OmokageClientOptions _options;
        readonly Dictionary<int, Pending> _pending = new Dictionary<int, Pending>();
        readonly CancellationTokenSource _lifetime = new CancellationTokenSource();
        readonly TextureCache _textures;
        readonly ClockSync _clock = new ClockSync();
        readonly GazeStream _gaze;
        readonly GazeWireSample[] _gazeBatch = new GazeWireSample[GazeWireSample.MaxPerBatch];
        readonly int[] _noReplyRids = new int[64];
        int _noReplyNext;
        long _gazeSent;
        long _gazeBatches;
        long _gazeDropped;
        ModelsMessage _models;
        readonly SketchTracker _sketch = new SketchTracker();
        // v1.7: the latest welcome's resume token (spent on presentation: each welcome's replaces it) and the sessions whose
        // selection it carries (that welcome's, after those it went on from); what the current connection went on with,
        // published whole with the welcome so that a reader never pairs one connection's grid with the next one's session
        // (and again without the grid once a selection request goes out on that connection)
        const int MaxResumeChain = 16;
        string _resumeToken;
        string[] _resumeChain;
        ResumeSnapshot _resumption = ResumeSnapshot.None;

        Link _link;
        ConnectionState _state = ConnectionState.Disconnected;
        bool _closing;
        bool _reconnecting;
        int _ridCounter;
        int _generation;
        long _hashesRequested;
        long _textureRequests;
        WelcomeMessage _welcome;

        public OmokageClient(OmokageClientOptions options)
        {
            if (options == null) throw new ArgumentNullException("options");
            _options = options;
            _textures = new TextureCache(options.TextureCacheMaxBytes);
            _gaze = new GazeStream(_clock);
        }

        public OmokageClient(string serverUrl) : this(new OmokageClientOptions(serverUrl)) { }

        // --- events ------------------------------------------------------------------------------

        /// <summary>The connection state changed (background thread).</summary>
        public event Action<ConnectionState> StateChanged;

        /// <summary>A hello was welcomed: the first connection and every reconnection (a new server session; v1.7: one that may
        /// go on with the selection of the previous one, see <see cref="ResumedGrid"/> and <see cref="SelectionResumed"/>).</summary>
        public event Action<WelcomeMessage> Connected;

        /// <summary>An established connection was lost (the exception says why; null for a clean close; v1.7
        /// <see cref="OmokageSupersededException"/> when another connection took the selection over, and the state is then
        /// <see cref="ConnectionState.Superseded"/>).</summary>
        public event Action<Exception> Disconnected;

        /// <summary>A message that answers no pending request: a server-initiated message, an <c>error</c>
        /// without <c>rid</c> (e.g. <c>bad_frame</c>), or a late reply to a request that timed out.</summary>
        public event Action<ServerMessage> MessageReceived;

        /// <summary>Something went wrong off the caller's path: an undecodable frame, a failed reconnect
        /// attempt, an exception thrown by an event handler.</summary>
        public event Action<Exception> BackgroundError;

        /// <summary>v1.2: the server's models changed (a <c>models</c> message: a model finished training or made progress).
        /// <see cref="Algorithms"/> already says what <c>start</c> accepts now. Background thread.</summary>
        public event Action<ModelsMessage> ModelsChanged;

        /// <summary>v1.2: the server refused a <c>gaze.batch</c> or <c>layout</c> in part or whole (<c>bad_field</c> or
        /// <c>overloaded</c> with <see cref="ErrorMessage.Dropped"/>, <c>too_large</c>). These requests get no reply
        /// otherwise, so their errors come here rather than through <see cref="MessageReceived"/>. Background thread.</summary>
        public event Action<ErrorMessage> GazeRejected;

        /// <summary>Every message sent or received, decoded (for logs and transcripts). Costs nothing when unused.</summary>
        public event Action<MessageTrace> Trace;

        /// <summary>v1.7: this connection went on with the selection of the previous one (the hello presented its resume token
        /// and the welcome said <c>resumed: true</c>): the grid that was on screen, with its step, algorithm, policy and items,
        /// to show and choose from as before. Raised once per such connection, before <see cref="Connected"/>; also
        /// <see cref="ResumedGrid"/>. Background thread.</summary>
        public event Action<CandidatesMessage> SelectionResumed;

        /// <summary>v1.3: a <c>sketch.result</c> newer than every one before it on this connection (results are coalesced: one
        /// answers the newest sketch message it includes; an older or repeated result, or one of a drawing a later
        /// <c>sketch.begin</c> replaced, is dropped, see <see cref="SketchResultsIgnored"/>). Background thread.</summary>
        public event Action<SketchResultMessage> SketchResultReceived;

        /// <summary>v1.6: a sharper preview of the result on show (<see cref="LatestSketchResult"/>, same revision), from a
        /// server whose <see cref="SketchLimits.Sharpens"/>: show its <see cref="SketchPreviewMessage.Preview"/> in place of
        /// the result's. One for another revision, or for a drawing a later <c>sketch.begin</c> replaced, is dropped.
        /// Background thread.</summary>
        public event Action<SketchPreviewMessage> SketchPreviewReceived;

        /// <summary>v1.3: the server refused a sketch message (<c>bad_field</c>, <c>too_large</c>, <c>wrong_state</c>,
        /// <c>overloaded</c>): the error carries the refused message's rid, and the drawing is unchanged by it. Sketch
        /// messages get no reply otherwise, so their errors come here rather than through <see cref="MessageReceived"/>.
        /// Background thread.</summary>
        public event Action<ErrorMessage> SketchRejected;

        // --- state -------------------------------------------------------------------------------

        public OmokageClientOptions Options { get { return _options; } }

        public ConnectionState State { get { lock (_gate) return _state; } }

        public bool IsConnected { get { return State == ConnectionState.Connected; } }

        /// <summary>The last <c>welcome</c> (null before the first).</summary>
        public WelcomeMessage Welcome { get { lock (_gate) return _welcome; } }

        /// <summary>The server session of the current connection.</summary>
        public string SessionId { get { var w = Welcome; return w == null ? null : w.SessionId; } }

        /// <summary>v1.7: the token the next connection presents (<c>hello.resume</c>): the latest welcome's
        /// <c>resume.token</c>; null when it gave none (a study, an older server, <see cref="OmokageClientOptions.ProtocolMinor"/>
        /// below 7), before the first welcome, after <see cref="CloseAsync"/> / <see cref="Dispose"/>, and once the selection went
        /// on on another connection (<see cref="ConnectionState.Superseded"/>: the token is spent) or <see cref="StartAfreshAsync"/>
        /// forgot it. A secret: kept in
        /// memory only, never written anywhere by the client.</summary>
        public string ResumeToken { get { lock (_gate) return _resumeToken; } }

        /// <summary>v1.7: the grid the server resumed the current connection with (a <c>candidates</c> without rid that followed a
        /// welcome with <c>resumed: true</c>); null when this connection did not resume a selection. Kept until a selection
        /// request (<c>start</c>, <c>choose</c>, <c>skip</c>, <c>back</c>, <c>decide</c>, <c>study.next</c>) is sent on this
        /// connection, then null (with <see cref="ResumedFrom"/> and <see cref="GoesOnFrom"/>): the server shows another grid
        /// by then, and a <see cref="SelectionSession"/> that takes a grid up later (one enabled after a scene load) must not
        /// show this one. <see cref="SelectionSession.RestoreAsync"/> takes it up whenever it runs before that.</summary>
        public CandidatesMessage ResumedGrid { get { return Resumption.Grid; } }

        /// <summary>v1.7: the server session whose selection the current connection went on with (the one whose welcome gave
        /// the token); null unless <see cref="ResumedGrid"/> is set.</summary>
        public string ResumedFrom { get { return Resumption.ResumedFrom; } }

        /// <summary>v1.7: whether the current connection goes on with the selection that was in <paramref name="sessionId"/>:
        /// the session that gave the token it presented, or one that session had itself gone on from (a selection resumed
        /// twice, or through an attempt that failed after its welcome). False when it did not resume a selection, and once a
        /// selection request was sent on it (see <see cref="ResumedGrid"/>).</summary>
        public bool GoesOnFrom(string sessionId) { return Resumption.GoesOnFrom(sessionId); }

        /// <summary>v1.7: the current connection's session, resumed grid and the sessions it went on from, as one immutable
        /// value (a reconnection publishes a new one, and the first selection request sent on the connection one without the
        /// grid): read it once where they must belong together
        /// (<see cref="SelectionSession.TryResume"/>). Before the first welcome: no session, no grid.</summary>
        internal ResumeSnapshot Resumption { get { lock (_gate) return _resumption; } }

        /// <summary>Textures received so far, by content hash.</summary>
        public TextureCache Textures { get { return _textures; } }

        /// <summary>Clock offset to the server, from pings.</summary>
        public ClockSync Clock { get { return _clock; } }

        /// <summary>v1.2: the gaze samples waiting for the next <c>gaze.batch</c> (record into it every frame; see
        /// <see cref="FlushGaze"/>). Cleared on every new connection.</summary>
        public GazeStream Gaze { get { return _gaze; } }

        /// <summary>Whether the server takes gaze: it sent <c>welcome.gaze</c> (a v1.2 server, to a client that announced
        /// minor 2).</summary>
        public bool GazeAccepted { get { var w = Welcome; return w != null && w.Gaze != null; } }

        /// <summary>Gaze samples sent so far (<see cref="GazeBatchesSent"/> messages).</summary>
        public long GazeSamplesSent { get { return Interlocked.Read(ref _gazeSent); } }

        public long GazeBatchesSent { get { return Interlocked.Read(ref _gazeBatches); } }

        /// <summary>Gaze samples the server said it dropped (<see cref="ErrorMessage.Dropped"/> of <see cref="GazeRejected"/>).</summary>
        public long GazeSamplesDroppedByServer { get { return Interlocked.Read(ref _gazeDropped); } }

        /// <summary>The feature spaces <c>start</c> accepts now: the welcome's, or the last <c>models</c> message's (v1.2).</summary>
        public IReadOnlyList<string> Algorithms
        {
            get
            {
                lock (_gate)
                {
                    if (_models != null) return _models.Algorithms;
                    return _welcome == null ? (IReadOnlyList<string>)new string[0] : _welcome.Algorithms;
                }
            }
        }

        /// <summary>v1.2: models still training (from the welcome or the last <c>models</c>); empty when none.</summary>
        public IReadOnlyList<TrainingModel> Training
        {
            get
            {
                lock (_gate)
                {
                    if (_models != null) return _models.Training;
                    return _welcome == null ? (IReadOnlyList<TrainingModel>)new TrainingModel[0] : _welcome.Training;
                }
            }
        }

        /// <summary>v1.3: whether the server sketches (it sent <c>welcome.sketch</c>: a v1.3 server with a sketch model, to a
        /// client that announced minor 3).</summary>
        public bool SketchAccepted { get { var w = Welcome; return w != null && w.Sketch != null; } }

        /// <summary>v1.4: the calibration patterns the server offers (<c>welcome.gaze.calibration</c>); empty when it cannot
        /// calibrate: no patterns, an older server, or a client that announced a minor below 4.</summary>
        public IReadOnlyList<string> CalibrationPatterns
        {
            get
            {
                var w = Welcome;
                return w == null || w.Gaze == null ? (IReadOnlyList<string>)new string[0] : w.Gaze.Calibration;
            }
        }

        /// <summary>v1.4: whether the server can calibrate this session's gaze (<see cref="CalibrationPatterns"/> is not empty).</summary>
        public bool CalibrationAccepted { get { return CalibrationPatterns.Count > 0; } }

        /// <summary>v1.5: what corrects this session's gaze from its start (<c>welcome.gaze.profile</c>): one of
        /// <see cref="GazeProfiles"/> — <c>none</c>, <c>device</c> (the default correction of <see cref="OmokageClientOptions.Device"/>'s
        /// model), <c>participant</c> (the participant's saved calibration) or, v1.7, <c>calibration</c> (a resumed selection's
        /// calibration from its earlier connection); null before a welcome, from an older server, or for a client that announced
        /// a minor below 5. Offer a calibration unless <see cref="GazeCalibrated"/>.</summary>
        public string GazeProfile
        {
            get
            {
                var w = Welcome;
                return w == null || w.Gaze == null ? null : w.Gaze.Profile;
            }
        }

        /// <summary>v1.5: whether this session's gaze is already corrected by a calibration fitted to this user
        /// (<see cref="GazeProfile"/> is <c>participant</c> or, v1.7, <c>calibration</c>): no need to offer one.</summary>
        public bool GazeCalibrated { get { return GazeProfiles.IsCalibrated(GazeProfile); } }

        /// <summary>v1.5: whether the server generates ideal faces (it sent <c>welcome.ideal</c>: a v1.5 server with a PCA
        /// model, to a client that announced minor 5); see <see cref="IdealAsync"/>.</summary>
        public bool IdealAccepted { get { var w = Welcome; return w != null && w.Ideal != null; } }

        /// <summary>v1.5: the side of an ideal face's preview in pixels (<c>welcome.ideal.image_size</c>); 0 when the server
        /// does not generate them.</summary>
        public int IdealImageSize { get { var w = Welcome; return w == null || w.Ideal == null ? 0 : w.Ideal.ImageSize; } }

        /// <summary>v1.3: the newest <c>sketch.result</c> of this connection (null before the first, and after a reconnection:
        /// a new connection has no drawing).</summary>
        public SketchResultMessage LatestSketchResult { get { return _sketch.Latest; } }

        /// <summary>v1.3: a sketch message was sent that no result includes yet (and the server did not refuse it).</summary>
        public bool SketchPending { get { return _sketch.Pending; } }

        /// <summary>v1.3: sketch messages sent so far.</summary>
        public long SketchMessagesSent { get { return _sketch.SentCount; } }

        /// <summary>v1.3: <c>sketch.result</c>s taken (raised through <see cref="SketchResultReceived"/>).</summary>
        public long SketchResults { get { return _sketch.Results; } }

        /// <summary>v1.6: sharper previews taken (raised through <see cref="SketchPreviewReceived"/>).</summary>
        public long SketchPreviews { get { return _sketch.Sharpened; } }

        /// <summary>v1.3: <c>sketch.result</c>s dropped as stale: they included no sketch message newer than a result
        /// already taken, showed a drawing a later <c>sketch.begin</c> replaced, or came over an earlier connection.</summary>
        public long SketchResultsIgnored { get { return _sketch.Ignored; } }

        /// <summary>Texture hashes requested over the wire so far (cache hits are not counted).</summary>
        public long HashesRequested { get { return Interlocked.Read(ref _hashesRequested); } }

        /// <summary><c>texture.get</c> requests sent so far.</summary>
        public long TextureRequests { get { return Interlocked.Read(ref _textureRequests); } }

        // --- connecting --------------------------------------------------------------------------

        /// <summary>Opens the WebSocket and says hello (one attempt). Throws <see cref="OmokageConnectionException"/>
        /// when the server cannot be reached, <see cref="OmokageServerException"/> when it refuses the hello.</summary>
        public Task<WelcomeMessage> ConnectAsync(CancellationToken ct = default(CancellationToken))
        {
            return ConnectOnceAsync(false, ct);
        }

        /// <summary>One attempt. When another attempt, the reconnect loop or a connection already holds the link, it throws,
        /// or for the retry loop (<paramref name="retrying"/>) returns null: that one has it in hand, nothing failed.</summary>
        async Task<WelcomeMessage> ConnectOnceAsync(bool retrying, CancellationToken ct)
        {
            lock (_gate)
            {
                if (_state == ConnectionState.Closed) throw new ObjectDisposedException("OmokageClient", "the client was closed; create a new one");
                if (_state == ConnectionState.Connected || _state == ConnectionState.Connecting || _reconnecting)
                {
                    if (retrying) return null;
                    throw new InvalidOperationException("already " + _state.ToString().ToLowerInvariant());
                }
                _state = ConnectionState.Connecting;  // claimed under the lock: two attempts never both pass the check
            }
            Raise(StateChanged, ConnectionState.Connecting);
            try
            {
                return await OpenAsync(ct).ConfigureAwait(false);
            }
            catch (Exception e)
            {
                SetState(e is OmokageSupersededException ? ConnectionState.Superseded : ConnectionState.Disconnected);
                throw;
            }
        }

        /// <summary>Connects, retrying with back-off until it succeeds, <paramref name="ct"/> is cancelled, or the
        /// server refuses the hello for a reason retrying cannot fix (<c>unauthorized</c>, <c>bad_field</c>; v1.7: an attempt the
        /// server closed because another connection took the selection over, <see cref="OmokageSupersededException"/>). When another
        /// attempt (a second retry loop, <see cref="ConnectAsync"/>, the reconnect loop) or a connection already holds the
        /// link, it leaves it to that one and returns the last welcome (null before the first): not a failure.</summary>
        public async Task<WelcomeMessage> ConnectWithRetryAsync(CancellationToken ct = default(CancellationToken))
        {
            var backoff = NewBackoff();
            int failures = 0;
            while (true)
            {
                Exception failure;
                try
                {
                    WelcomeMessage welcome = await ConnectOnceAsync(true, ct).ConfigureAwait(false);
                    return welcome ?? Welcome;
                }
                catch (OmokageServerException e)
                {
                    if (IsFatal(e)) throw;
                    failure = e;
                }
                catch (OmokageSupersededException) { throw; }  // v1.7: the selection went on elsewhere; retrying would start another
                catch (OmokageConnectionException e) { failure = e; }
                catch (OmokageTimeoutException e) { failure = e; }
                RaiseError(failure);
                failures++;
                if (_options.MaxReconnectAttempts > 0 && failures >= _options.MaxReconnectAttempts) throw failure;
                await Task.Delay(backoff.Next(), ct).ConfigureAwait(false);
            }
        }

        /// <summary>
        /// v1.7, "Start a new one here": forgets the resume token and connects as <see cref="ConnectWithRetryAsync"/> does, so
        /// the hello presents none and the welcome is a new server session with no selection (start one on it). For
        /// <see cref="ConnectionState.Superseded"/>, where the selection went on on another connection and the client waits
        /// for the user to ask (its token is already gone); from <see cref="ConnectionState.Disconnected"/> it leaves behind
        /// the selection a reconnection would have resumed. Throws <see cref="InvalidOperationException"/> while connected,
        /// connecting or reconnecting, <see cref="ObjectDisposedException"/> after <see cref="CloseAsync"/> / <see cref="Dispose"/>.
        /// </summary>
        public async Task<WelcomeMessage> StartAfreshAsync(CancellationToken ct = default(CancellationToken))
        {
            lock (_gate)
            {
                if (_state == ConnectionState.Closed) throw new ObjectDisposedException("OmokageClient", "the client was closed; create a new one");
                if (_state == ConnectionState.Connected || _state == ConnectionState.Connecting || _reconnecting)
                    throw new InvalidOperationException("already " + _state.ToString().ToLowerInvariant());
                _resumeToken = null;
                _resumeChain = null;
            }
            return await ConnectWithRetryAsync(ct).ConfigureAwait(false);
        }

        /// <summary>Closes the connection politely and stops reconnecting. The client cannot be reused.</summary>
        public async Task CloseAsync()
        {
            Link link;
            if (!BeginClose(out link)) return;
            if (link != null)
            {
                try
                {
                    Task sent = Enqueue(link, null, WebSocketMessageType.Close);
                    await Task.WhenAny(sent, Task.Delay(2000)).ConfigureAwait(false);
                    // give the server a moment to answer the close frame
                    await Task.WhenAny(link.ReceiveTask ?? Task.FromResult(0), Task.Delay(1000)).ConfigureAwait(false);
                }
                catch (Exception) { }
                LoseLink(link, null);
            }
            SetState(ConnectionState.Closed);
        }

        /// <summary>Aborts the connection at once (no close handshake) and stops reconnecting.</summary>
        public void Dispose()
        {
            Link link;
            if (!BeginClose(out link)) return;
            if (link != null) LoseLink(link, null);
            SetState(ConnectionState.Closed);
        }

        /// <summary>Stops reconnecting and cancels pending work; false when the client was already closed.</summary>
        private bool BeginClose(out Link link)
        {
            lock (_gate)
            {
                link = _link;
                if (_state == ConnectionState.Closed) return false;
                _closing = true;
                _resumeToken = null;  // the client cannot connect again: nothing will present it
                _resumeChain = null;
            }
            try { _lifetime.Cancel(); } catch (ObjectDisposedException) { }
            return true;
        }

        // --- requests ----------------------------------------------------------------------------

        /// <summary><c>start</c> with <c>init: random</c>; the seed makes the first grid repeatable.</summary>
        public Task<CandidatesMessage> StartRandomAsync(string algorithm, int? seed = null, CancellationToken ct = default(CancellationToken))
        {
            return Request<CandidatesMessage>(rid => Requests.StartRandom(rid, algorithm, seed), MessageTypes.Candidates, ct);
        }

        /// <summary><c>start</c> with <c>init: random</c> and a policy (v1.1): one of <see cref="WelcomeMessage.Policies"/>,
        /// null for the server's default. An unknown policy is <c>bad_field</c> naming the ones offered.</summary>
        public Task<CandidatesMessage> StartRandomAsync(string algorithm, int? seed, string policy, CancellationToken ct = default(CancellationToken))
        {
            return Request<CandidatesMessage>(rid => Requests.StartRandom(rid, algorithm, seed, policy), MessageTypes.Candidates, ct);
        }

        /// <summary><c>start</c> with <c>init: image</c>: the 9 faces nearest an encoded image (JPEG, PNG, …); the reply
        /// carries the model's reconstruction.</summary>
        public Task<CandidatesMessage> StartImageAsync(string algorithm, byte[] image, CancellationToken ct = default(CancellationToken))
        {
            return Request<CandidatesMessage>(rid => Requests.StartImage(rid, algorithm, image), MessageTypes.Candidates, ct);
        }

        /// <summary><c>start</c> with <c>init: image</c> and a policy (v1.1; null for the server's default).</summary>
        public Task<CandidatesMessage> StartImageAsync(string algorithm, byte[] image, string policy, CancellationToken ct = default(CancellationToken))
        {
            return Request<CandidatesMessage>(rid => Requests.StartImage(rid, algorithm, image, null, policy), MessageTypes.Candidates, ct);
        }

        /// <summary><c>choose</c>: the next grid, the chosen face first.</summary>
        public Task<CandidatesMessage> ChooseAsync(int id, CancellationToken ct = default(CancellationToken))
        {
            FlushGazeBeforePick();
            return Request<CandidatesMessage>(rid => Requests.Choose(rid, id), MessageTypes.Candidates, ct);
        }

        /// <summary><c>skip</c> (v1.1), "none of these": every face of the current grid counts as further from what the
        /// user wants than the unseen ones; the next grid has unseen faces and no chosen face first.</summary>
        public Task<CandidatesMessage> SkipAsync(CancellationToken ct = default(CancellationToken))
        {
            FlushGazeBeforePick();
            return Request<CandidatesMessage>(rid => Requests.Skip(rid), MessageTypes.Candidates, ct);
        }

        /// <summary>
        /// <c>back</c> (v1.7): undoes the last <c>choose</c> or <c>skip</c> of this selection (a slipped controller ray, a change
        /// of mind). The reply is the grid that was on screen before it: the same faces in the same order, with its step (one
        /// less); the server's belief forgets the undone pick and the faces of the grid left count as unseen again. The pending
        /// gaze is sent first (it belongs to the grid being left). <c>wrong_state</c> on the first grid, before a start, after
        /// the decision and in a study trial; <c>unknown_type</c> from a server older than v1.7 (<see cref="WelcomeMessage.Supports"/>(7)).
        /// </summary>
        public Task<CandidatesMessage> BackAsync(CancellationToken ct = default(CancellationToken))
        {
            FlushGazeBeforePick();
            return Request<CandidatesMessage>(rid => Requests.Back(rid), MessageTypes.Candidates, ct);
        }

        /// <summary><c>rate</c> (v1.1): an explicit rating 1 … 5 of a face shown in this selection (evidence for the
        /// policy's belief; the grid stays).</summary>
        public Task<RatedMessage> RateAsync(int id, int rating, CancellationToken ct = default(CancellationToken))
        {
            if (rating < 1 || rating > 5) throw new ArgumentOutOfRangeException("rating", rating, "a rating is 1 … 5");
            return Request<RatedMessage>(rid => Requests.Rate(rid, id, rating), MessageTypes.Rated, ct);
        }

        /// <summary><c>decide</c>: ends the selection; open <c>decided.Item.Url</c>.</summary>
        public Task<DecidedMessage> DecideAsync(int id, CancellationToken ct = default(CancellationToken))
        {
            FlushGazeBeforePick();
            return Request<DecidedMessage>(rid => Requests.Decide(rid, id), MessageTypes.Decided, ct);
        }

        // --- v1.3 sketch -----------------------------------------------------------------------------

        /// <summary><c>sketch.begin</c> (v1.3): a new, empty drawing (an earlier one is dropped). Sent without waiting; returns
        /// its rid (see <see cref="WaitSketchResultAsync"/>). Needs <see cref="SketchAccepted"/>, else the server answers
        /// <c>wrong_state</c> through <see cref="SketchRejected"/>.</summary>
        public int SendSketchBegin() { return SendSketch(MessageTypes.SketchBegin, rid => Requests.SketchBegin(rid)); }

        /// <summary><c>sketch.stroke</c> (v1.3): points x0, y0, x1, y1, … in canvas coordinates (x right, y down, 0 … 1);
        /// <paramref name="append"/> continues the previous stroke (a live stroke in pieces). Sent without waiting; returns
        /// its rid.</summary>
        public int SendSketchStroke(IList<double> points, SketchStyle style, bool append = false)
        {
            if (points == null) throw new ArgumentNullException("points");
            var copy = new List<double>(points);
            MsgMap message = Requests.SketchStroke(0, copy, style, append);  // checks the arguments before anything is sent
            return SendSketch(MessageTypes.SketchStroke, rid => message.Set("rid", (long)rid));
        }

        /// <summary><c>sketch.stroke</c> (v1.3) from a buffer of interleaved x, y floats: <paramref name="pointCount"/> points
        /// from point <paramref name="firstPoint"/> (what <see cref="SketchPad.TakePiece"/> hands out). The points are copied
        /// into the message at once: the buffer may change afterwards. Returns the rid.</summary>
        public int SendSketchStroke(float[] xy, int firstPoint, int pointCount, SketchStyle style, bool append = false)
        {
            MsgMap message = Requests.SketchStroke(0, xy, firstPoint, pointCount, style, append);
            return SendSketch(MessageTypes.SketchStroke, rid => message.Set("rid", (long)rid));
        }

        /// <summary><c>sketch.undo</c> (v1.3): takes back the last whole stroke. Returns the rid.</summary>
        public int SendSketchUndo() { return SendSketch(MessageTypes.SketchUndo, rid => Requests.SketchUndo(rid)); }

        /// <summary><c>sketch.clear</c> (v1.3): empties the drawing, which stays open. Returns the rid.</summary>
        public int SendSketchClear() { return SendSketch(MessageTypes.SketchClear, rid => Requests.SketchClear(rid)); }

        /// <summary>
        /// The first <c>sketch.result</c> that includes the sketch message <paramref name="rid"/> (it may answer a later one:
        /// results are coalesced); at once when one already did (then the newest result is returned). Throws
        /// <see cref="OmokageServerException"/> when the server refused that message, <see cref="OmokageTimeoutException"/>
        /// after <see cref="OmokageClientOptions.RequestTimeout"/>, <see cref="OmokageConnectionException"/> when the
        /// connection is lost, and <see cref="ArgumentException"/> for a rid that is no recent sketch message of this
        /// connection.
        /// </summary>
        public Task<SketchResultMessage> WaitSketchResultAsync(int rid, CancellationToken ct = default(CancellationToken))
        {
            return WaitSketchResultAsync(rid, _options.RequestTimeout, ct);
        }

        /// <summary><see cref="WaitSketchResultAsync(int, CancellationToken)"/> with its own timeout.</summary>
        public async Task<SketchResultMessage> WaitSketchResultAsync(int rid, TimeSpan timeout, CancellationToken ct = default(CancellationToken))
        {
            ct.ThrowIfCancellationRequested();
            Task<SketchResultMessage> result = _sketch.Wait(rid);
            if (result.IsCompleted) return await result.ConfigureAwait(false);
            using (var waitCts = CancellationTokenSource.CreateLinkedTokenSource(ct))
            {
                if (await Task.WhenAny(result, Task.Delay(timeout, waitCts.Token)).ConfigureAwait(false) != result)
                {
                    _sketch.Forget(result);
                    ct.ThrowIfCancellationRequested();
                    throw new OmokageTimeoutException("no sketch.result included rid " + rid + " within " + timeout.TotalSeconds + " s", timeout);
                }
                waitCts.Cancel();
            }
            return await result.ConfigureAwait(false);
        }

        /// <summary><c>start</c> with <c>init: sketch</c> (v1.3): a selection that begins with the 9 faces of this
        /// connection's latest <c>sketch.result</c>; the drawing stays evidence in the policy's belief. <c>wrong_state</c>
        /// without a drawing that has a result. Wait for the result of the last stroke first
        /// (<see cref="WaitSketchResultAsync"/>) so that the grid is the one the user saw.</summary>
        public Task<CandidatesMessage> StartSketchAsync(string algorithm, string policy = null, CancellationToken ct = default(CancellationToken))
        {
            return Request<CandidatesMessage>(rid => Requests.StartSketch(rid, algorithm, null, policy), MessageTypes.Candidates, ct);
        }

        int SendSketch(string type, Func<int, MsgMap> build)
        {
            Link link = RequireLink();
            int rid = NextRid();
            MsgMap message = build(rid);
            byte[] frame = _options.Codec.Encode(message);
            _sketch.Sent(link, rid, type);  // before the frame leaves: its result cannot overtake it
            SendUnanswered(link, message, frame);
            return rid;
        }

        // --- v1.4 gaze calibration -------------------------------------------------------------------

        /// <summary>
        /// <c>calibrate.begin</c> (v1.4): starts a calibration of this session's gaze and returns the targets to show, one at a
        /// time (<see cref="CalibrationMessage"/>; <see cref="CalibrationRun"/> says which to show when). From now until
        /// <see cref="CalibrateEndAsync"/> the gaze sent is the calibration's (no grid gets it): keep streaming it, eye gaze for
        /// <paramref name="source"/> <c>eye</c>. <paramref name="pattern"/>: one of <see cref="CalibrationPatterns"/> (null:
        /// the server's default, <c>nine-point</c>; another name is <c>bad_field</c>); <paramref name="source"/>:
        /// <see cref="GazeWireSample.Eye"/> (null: the default) or <see cref="GazeWireSample.Head"/>. The pending gaze is sent
        /// first, so that samples taken before belong to the grid they were taken on. Sent again, it starts over.
        /// <c>wrong_state</c> from a server that cannot calibrate (<see cref="CalibrationAccepted"/> false).
        /// </summary>
        public Task<CalibrationMessage> CalibrateBeginAsync(string pattern = null, string source = null, CancellationToken ct = default(CancellationToken))
        {
            Requests.CalibrateBegin(0, pattern, source);  // checks the arguments before anything is sent
            FlushGazeBeforePick();
            return Request<CalibrationMessage>(rid => Requests.CalibrateBegin(rid, pattern, source), MessageTypes.Calibration, ct);
        }

        /// <summary>
        /// <c>calibrate.end</c> (v1.4): when each target was shown (<see cref="CalibrationRun.Shown"/>: [index, t_start, t_end]
        /// on the server's clock). Sends the pending gaze first (the samples of the last target), then the server fits a
        /// correction, applies it to every later sample of this session and answers <see cref="CalibratedMessage"/> (accuracy
        /// and precision in degrees). When it cannot (too few samples on too few targets, targets on one line, an accuracy
        /// worse than 3°) it throws <see cref="OmokageServerException"/> with <see cref="ErrorCodes.CalibrationFailed"/>: the
        /// previous correction stays in force and the connection is fine. <c>wrong_state</c> without a calibration begun.
        /// </summary>
        public Task<CalibratedMessage> CalibrateEndAsync(IEnumerable<CalibrationShown> shown, CancellationToken ct = default(CancellationToken))
        {
            if (shown == null) throw new ArgumentNullException("shown");
            var copy = new List<CalibrationShown>(shown);
            Requests.CalibrateEnd(0, copy);  // checks the arguments before anything is sent
            FlushGazeBeforePick();
            return Request<CalibratedMessage>(rid => Requests.CalibrateEnd(rid, copy), MessageTypes.Calibrated, ct);
        }

        /// <summary>
        /// <c>calibrate.cancel</c> (v1.5): abandons the running calibration (the user closed its panel or took the headset
        /// off). The pending gaze is sent first, so that the calibration's last samples are dropped with it rather than given
        /// to a grid; nothing is fitted and the correction in force stays. Returns <see cref="CalibrationCancelledMessage"/>
        /// (how many samples were dropped); <c>wrong_state</c> when no calibration runs (none begun, already ended, or ended by
        /// a grid shown since), <c>unknown_type</c> from a server older than v1.5.
        /// </summary>
        public Task<CalibrationCancelledMessage> CalibrateCancelAsync(CancellationToken ct = default(CancellationToken))
        {
            FlushGazeBeforePick();
            return Request<CalibrationCancelledMessage>(rid => Requests.CalibrateCancel(rid), MessageTypes.CalibrationCancelled, ct);
        }

        // --- v1.5 ideal face ---------------------------------------------------------------------------

        /// <summary>
        /// <c>ideal</c> (v1.5): the face the session's belief likes best near a favourite, generated (an inline JPEG of
        /// <see cref="IdealImageSize"/> pixels), and the catalog faces nearest to it that this selection has not shown
        /// (<see cref="IdealResultMessage"/>). <paramref name="near"/>: a face shown in this selection (another is
        /// <c>not_found</c>); null: the last face chosen, or after a start or skip the most probable face on screen. Needs a
        /// selection in progress (after a start, before the decision) and <see cref="IdealAccepted"/>; else <c>wrong_state</c>.
        /// The grid does not change.
        /// </summary>
        public Task<IdealResultMessage> IdealAsync(int? near = null, CancellationToken ct = default(CancellationToken))
        {
            Requests.Ideal(0, near);  // checks the argument before anything is sent
            return Request<IdealResultMessage>(rid => Requests.Ideal(rid, near), MessageTypes.IdealResult, ct);
        }

        // --- v1.2 studies ----------------------------------------------------------------------------

        /// <summary>
        /// <c>study.next</c> (v1.2): the participant's next step. The reply is a <see cref="CandidatesMessage"/> with
        /// <see cref="CandidatesMessage.Trial"/> (a trial begun or resumed: then choose, skip, rate and decide as usual, and ask
        /// again after <c>decided</c>), a <see cref="QuestionnaireMessage"/> (answer it with <see cref="AnswersAsync"/>), or a
        /// <see cref="StudyDoneMessage"/>. <paramref name="image"/>: the start image when the trial's condition starts from one.
        /// Needs a hello with <see cref="OmokageClientOptions.Participant"/> on a server run with <c>--study</c>.
        /// </summary>
        public async Task<ServerMessage> StudyNextAsync(byte[] image = null, CancellationToken ct = default(CancellationToken))
        {
            ServerMessage reply = await RequestAsync(rid => Requests.StudyNext(rid, image), null, ct).ConfigureAwait(false);
            if (reply is CandidatesMessage || reply is QuestionnaireMessage || reply is StudyDoneMessage) return reply;
            throw new OmokageProtocolException("expected `candidates`, `questionnaire` or `study.done` in reply to study.next, got `" + reply.Type + "`");
        }

        /// <summary><c>answers</c> (v1.2) to the questionnaire <paramref name="questionnaire"/> (its id); the reply says they are
        /// stored. A value out of range, a choice not offered or a required item left out is <c>bad_field</c> naming it.</summary>
        public Task<AnsweredMessage> AnswersAsync(string questionnaire, IList<QuestionnaireAnswer> answers, CancellationToken ct = default(CancellationToken))
        {
            if (questionnaire == null) throw new ArgumentNullException("questionnaire");
            if (answers == null) throw new ArgumentNullException("answers");
            var copy = new List<QuestionnaireAnswer>(answers);
            return Request<AnsweredMessage>(rid => Requests.Answers(rid, questionnaire, copy), MessageTypes.Answered, ct);
        }

        // --- v1.2 gaze -------------------------------------------------------------------------------

        /// <summary>
        /// Sends the pending gaze (<see cref="Gaze"/>) as <c>gaze.batch</c> messages of at most 256 samples, now; returns how
        /// many samples went out (0 when none was pending, when not connected, or when the server takes no gaze: then the
        /// pending samples are discarded). No reply is awaited: refusals raise <see cref="GazeRejected"/>. Call it every
        /// ~100 ms (<see cref="GazeStream.FlushDue"/>); choose, skip, decide and the calibration requests call it first themselves.
        /// </summary>
        public int FlushGaze()
        {
            Link link;
            lock (_gate)
            {
                link = _link;
                if (link == null || !link.Established || _state != ConnectionState.Connected || _welcome == null || _welcome.Gaze == null)
                    link = null;
            }
            double now = ClockSync.LocalNow();
            int total = 0;
            lock (_gazeBatch)
            {
                while (true)
                {
                    int n = _gaze.TakeBatch(_gazeBatch, now);
                    if (n == 0 || link == null) break;
                    int count = n;
                    SendNoReply(link, rid => Requests.GazeBatch(rid, _gazeBatch, count));
                    total += n;
                    Interlocked.Add(ref _gazeSent, n);
                    Interlocked.Increment(ref _gazeBatches);
                    if (n < _gaze.MaxPerBatch) break;
                }
            }
            return total;
        }

        /// <summary><c>layout</c> (v1.2): where the grid's panels are (panel k shows <c>candidates.items[k]</c>), so the
        /// server can ray-cast samples sent without a hit. Send it when a grid is shown and whenever it moves. No reply;
        /// an invalid layout raises <see cref="GazeRejected"/>. The task completes when the frame is sent; when not connected it
        /// fails (<see cref="OmokageConnectionException"/>) rather than throwing: a link lost on another thread just after the
        /// caller saw <see cref="IsConnected"/> must not throw out of a frame's Update.</summary>
        public Task SendLayoutAsync(IList<PanelPose> panels)
        {
            if (panels == null) throw new ArgumentNullException("panels");
            Link link;
            try { link = RequireLink(); }
            catch (OmokageConnectionException e) { return FailedTask(e); }
            var copy = new List<PanelPose>(panels);
            return SendNoReply(link, rid => Requests.Layout(rid, copy));
        }

        void FlushGazeBeforePick()
        {
            if (_gaze.Pending > 0) FlushGaze();
        }

        /// <summary>Sends a request that gets no reply unless something is wrong; its rid is remembered so that an error
        /// naming it raises <see cref="GazeRejected"/>.</summary>
        Task SendNoReply(Link link, Func<int, MsgMap> build)
        {
            int rid = NextRid();
            MsgMap message = build(rid);
            byte[] frame = _options.Codec.Encode(message);
            lock (_noReplyRids)
            {
                _noReplyRids[_noReplyNext] = rid;
                _noReplyNext = (_noReplyNext + 1) % _noReplyRids.Length;
            }
            return SendUnanswered(link, message, frame);
        }

        /// <summary>Traces and queues a frame nothing waits on (its send failing means the link is lost, reported elsewhere).</summary>
        Task SendUnanswered(Link link, MsgMap message, byte[] frame)
        {
            var trace = Trace;
            if (trace != null) Raise(trace, new MessageTrace(true, message, frame.Length, ClockSync.LocalNow()));
            Task sent = Enqueue(link, frame, WebSocketMessageType.Binary);
            sent.ContinueWith(t => { var ignored = t.Exception; }, TaskContinuationOptions.OnlyOnFaulted);  // observed: a lost link is reported elsewhere
            return sent;
        }

        bool WasNoReply(int rid)
        {
            lock (_noReplyRids)
            {
                foreach (int r in _noReplyRids)
                    if (r == rid && r != 0) return true;
            }
            return false;
        }

        /// <summary>One ping/pong: round trip and clock offset (also recorded in <see cref="Clock"/>).</summary>
        public Task<PingResult> PingAsync(CancellationToken ct = default(CancellationToken))
        {
            return PingOnLink(RequireLink(), _options.RequestTimeout, ct);
        }

        /// <summary>
        /// Checks that the link still carries replies (call it when the app resumes from a pause: the OS may have
        /// dropped the socket, or the server may have given up on it, without the client noticing). Sends one ping; when
        /// no pong arrives within <paramref name="timeout"/> or the link fails, drops the link (so
        /// <see cref="OmokageClientOptions.AutoReconnect"/> reconnects at once) and returns false. False too when not
        /// connected. Never throws, except when <paramref name="ct"/> is cancelled.
        /// </summary>
        public async Task<bool> ProbeAsync(TimeSpan timeout, CancellationToken ct = default(CancellationToken))
        {
            Link link;
            lock (_gate)
            {
                link = _link;
                if (link == null || !link.Established || _state != ConnectionState.Connected) return false;
            }
            try
            {
                await PingOnLink(link, timeout, ct).ConfigureAwait(false);
                return true;
            }
            catch (OperationCanceledException) when (ct.IsCancellationRequested) { throw; }
            catch (OmokageServerException) { return true; }  // e.g. overloaded: the link works
            catch (Exception e)
            {
                LoseLink(link, new OmokageConnectionException("the link did not answer a ping within " + timeout.TotalSeconds + " s", e));
                return false;
            }
        }

        /// <summary>
        /// Textures by hash: cached ones at once, the others with <c>texture.get</c> (split into requests of at
        /// most <c>welcome.limits.max_hashes_per_request</c> hashes). Hashes the server does not know are listed
        /// in <see cref="TextureFetchResult.NotFound"/> rather than thrown.
        /// </summary>
        public async Task<TextureFetchResult> FetchTexturesAsync(IEnumerable<string> hashes, CancellationToken ct = default(CancellationToken))
        {
            if (hashes == null) throw new ArgumentNullException("hashes");
            var wanted = new List<string>();
            var seen = new HashSet<string>(StringComparer.Ordinal);
            foreach (string h in hashes)
                if (h != null && seen.Add(h)) wanted.Add(h);
            var found = new Dictionary<string, TextureData>(StringComparer.Ordinal);
            var toFetch = new List<string>();
            foreach (string h in wanted)
            {
                TextureData t;
                if (_textures.TryGet(h, out t)) found[h] = t;
                else toFetch.Add(h);
            }
            int fromCache = found.Count;
            var notFound = new List<string>();
            if (toFetch.Count > 0)
            {
                Link link = RequireLink();
                var welcome = Welcome;
                int per = welcome == null ? 64 : Math.Max(1, welcome.Limits.MaxHashesPerRequest);
                var tasks = new List<Task<TextureBatch>>();
                for (int start = 0; start < toFetch.Count; start += per)
                {
                    List<string> chunk = toFetch.GetRange(start, Math.Min(per, toFetch.Count - start));
                    var pending = new TextureReply(chunk, _options.VerifyTextureHashes);
                    Interlocked.Add(ref _hashesRequested, chunk.Count);
                    Interlocked.Increment(ref _textureRequests);
                    tasks.Add(SendRequest(link, rid => Requests.TextureGet(rid, chunk), pending, pending.Result, _options.RequestTimeout, ct));
                }
                TextureBatch[] batches = await Task.WhenAll(tasks).ConfigureAwait(false);
                foreach (var batch in batches)
                {
                    foreach (var t in batch.Textures) found[t.Hash] = t;
                    notFound.AddRange(batch.Missing);
                }
            }
            return new TextureFetchResult(found, notFound, fromCache, toFetch.Count);
        }

        /// <summary>Sends any request (the rid is filled in) and returns its single reply; an <c>error</c> reply
        /// throws <see cref="OmokageServerException"/>. <paramref name="expectedType"/> null accepts any type.</summary>
        public Task<ServerMessage> RequestAsync(Func<int, MsgMap> build, string expectedType, CancellationToken ct = default(CancellationToken))
        {
            if (build == null) throw new ArgumentNullException("build");
            Link link = RequireLink();
            var pending = new SingleReply(expectedType);
            return SendRequest(link, build, pending, pending.Result, _options.RequestTimeout, ct);
        }

        /// <summary>Sends one raw frame as it is (binary, or text when <paramref name="text"/>) through the send queue.
        /// For tools and tests: a text frame is answered with <c>error bad_frame</c>.</summary>
        public Task SendFrameAsync(byte[] frame, bool text = false)
        {
            if (frame == null) throw new ArgumentNullException("frame");
            return Enqueue(RequireLink(), frame, text ? WebSocketMessageType.Text : WebSocketMessageType.Binary);
        }

        async Task<T> Request<T>(Func<int, MsgMap> build, string expectedType, CancellationToken ct) where T : ServerMessage
        {
            ServerMessage reply = await RequestAsync(build, expectedType, ct).ConfigureAwait(false);
            return (T)reply;
        }

        // --- plumbing: links ---------------------------------------------------------------------

        sealed class Link
        {
            public Link(ClientWebSocket socket, int generation)
            {
                Socket = socket;
                Generation = generation;
            }

            public readonly ClientWebSocket Socket;
            public readonly int Generation;
            public readonly CancellationTokenSource Cts = new CancellationTokenSource();
            public readonly ConcurrentQueue<Outgoing> Queue = new ConcurrentQueue<Outgoing>();
            public readonly SemaphoreSlim Signal = new SemaphoreSlim(0);
            public int Lost;
            public bool Established;
            /// <summary>v1.7: the server closed it because another connection took its selection over (set before it is lost).</summary>
            public volatile bool Superseded;
            /// <summary>v1.7: set when the hello presents a resume token: the grid a resumed welcome is followed by.</summary>
            public TaskCompletionSource<CandidatesMessage> ResumedGrid;
            public Task ReceiveTask;
            public Task SendTask;
        }

        sealed class Outgoing
        {
            public byte[] Data;
            public WebSocketMessageType Type;
            public readonly TaskCompletionSource<bool> Done = new TaskCompletionSource<bool>(TaskCreationOptions.RunContinuationsAsynchronously);
        }

        async Task<WelcomeMessage> OpenAsync(CancellationToken ct)
        {
            string resume;
            string[] resumeChain;
            var socket = new ClientWebSocket();
            socket.Options.KeepAliveInterval = _options.KeepAliveInterval;
            var link = new Link(socket, Interlocked.Increment(ref _generation));
            using (var cts = CancellationTokenSource.CreateLinkedTokenSource(ct, _lifetime.Token))
            {
                cts.CancelAfter(_options.ConnectTimeout);
                try
                {
                    await socket.ConnectAsync(_options.ServerUri, cts.Token).ConfigureAwait(false);
                }
                catch (Exception e)
                {
                    socket.Dispose();
                    ct.ThrowIfCancellationRequested();
                    string why = cts.IsCancellationRequested && !_lifetime.IsCancellationRequested ? "timed out after " + _options.ConnectTimeout.TotalSeconds + " s" : e.Message;
                    throw new OmokageConnectionException("could not connect to " + _options.ServerUri + ": " + why, e);
                }
            }
            lock (_gate)
            {
                if (_closing)
                {
                    socket.Dispose();
                    throw new OmokageConnectionException("the client was closed");
                }
                _link = link;
                resume = _options.ResumeSelections ? _resumeToken : null;
                resumeChain = _resumeChain;
            }
            // v1.7: the grid of a resumed selection follows the welcome at once, before anything else could be asked for
            if (resume != null)
            {
                link.ResumedGrid = new TaskCompletionSource<CandidatesMessage>(TaskCreationOptions.RunContinuationsAsynchronously);
                ObserveFault(link.ResumedGrid.Task);  // a link lost before the welcome fails it, and nobody awaits it then
            }
            link.ReceiveTask = Task.Run(() => ReceiveLoop(link));
            link.SendTask = Task.Run(() => SendLoop(link));

            WelcomeMessage welcome;
            CandidatesMessage resumedGrid = null;
            try
            {
                var pending = new SingleReply(MessageTypes.Welcome);
                ServerMessage reply = await SendRequest(link,
                    rid => Requests.Hello(rid, _options.ClientName, _options.Token, _options.ProtocolVersion, _options.ProtocolMinor,
                                          string.IsNullOrEmpty(_options.Participant) ? null : _options.Participant,
                                          string.IsNullOrEmpty(_options.Device) ? null : _options.Device, resume),
                    pending, pending.Result, _options.ConnectTimeout, ct).ConfigureAwait(false);
                welcome = (WelcomeMessage)reply;
                // the token presented is spent, whatever the answer: the new welcome's replaces it at once (none: nothing to
                // resume next time), so that a connection lost while the grid is awaited still resumes with the new one
                lock (_gate)
                {
                    // (not when the server already closed this connection for another one that took the selection over: that
                    // dropped the token, and this welcome's belongs to a selection that goes on elsewhere)
                    if (!_closing && !link.Superseded)
                    {
                        _resumeToken = welcome.Resume != null && welcome.Resume.Presentable ? welcome.Resume.Token : null;
                        _resumeChain = Chain(welcome.Resumed == true ? resumeChain : null, welcome.SessionId);
                    }
                }
                if (welcome.Resumed == true && link.ResumedGrid != null)
                    resumedGrid = await AwaitResumedGrid(link, ct).ConfigureAwait(false);
            }
            catch (Exception e)
            {
                LoseLink(link, null);
                if (link.Superseded) throw Superseded(e);
                throw;
            }
            lock (_gate)
            {
                if (Volatile.Read(ref link.Lost) != 0 || _link != link)
                {
                    var lost = new OmokageConnectionException("the connection was lost right after the welcome");
                    if (link.Superseded) throw Superseded(lost);
                    throw lost;
                }
                link.Established = true;
                _welcome = welcome;
                _models = null;
                _reconnecting = false;  // a reconnect loop that got here ends now
                _resumption = new ResumeSnapshot(welcome.SessionId, resumedGrid, resumedGrid == null ? null : resumeChain);
            }
            _gaze.Clear();  // a new server session: earlier samples belong to no grid of it
            _clock.Reset(); // and its clock is measured afresh: a reconnect may reach another server (or its restart)
            _gaze.Configure(welcome.Gaze);
            _sketch.NewLink(link);  // and no drawing: results of the old one are stale (a resumed selection keeps none either)
            SetState(ConnectionState.Connected);
            if (resumedGrid != null) Raise(SelectionResumed, resumedGrid);
            Raise(Connected, welcome);
            if (_options.PingInterval > TimeSpan.Zero) StartBackground(() => PingLoop(link));
            return welcome;
        }

        /// <summary>v1.7: the <c>candidates</c> without rid that a welcome with <c>resumed: true</c> promised; a server that does
        /// not send it within <see cref="OmokageClientOptions.ConnectTimeout"/> breaks the protocol: the connection attempt fails
        /// with <see cref="OmokageTimeoutException"/>, which the retry loops retry, and the next attempt presents the new
        /// welcome's token.</summary>
        async Task<CandidatesMessage> AwaitResumedGrid(Link link, CancellationToken ct)
        {
            Task<CandidatesMessage> grid = link.ResumedGrid.Task;
            using (var cts = CancellationTokenSource.CreateLinkedTokenSource(ct, _lifetime.Token))
            {
                Task timeout = Task.Delay(_options.ConnectTimeout, cts.Token);
                if (await Task.WhenAny(grid, timeout).ConfigureAwait(false) != grid)
                {
                    ct.ThrowIfCancellationRequested();
                    if (_lifetime.IsCancellationRequested) throw new OmokageConnectionException("the client was closed");
                    throw new OmokageTimeoutException("the welcome said resumed: true, but the resumed grid (candidates without rid) " +
                                                      "did not follow within " + _options.ConnectTimeout.TotalSeconds + " s", _options.ConnectTimeout);
                }
                cts.Cancel();  // ends the delay
            }
            return await grid.ConfigureAwait(false);
        }

        /// <summary>v1.7: the sessions a token carries: those of the presented one when the selection went on, then this one.</summary>
        static string[] Chain(string[] before, string session)
        {
            int keep = before == null ? 0 : Math.Min(before.Length, MaxResumeChain - 1);
            var chain = new string[keep + 1];
            if (keep > 0) Array.Copy(before, before.Length - keep, chain, 0, keep);
            chain[keep] = session;
            return chain;
        }

        /// <summary>v1.7: a connection attempt the server closed because another connection took the selection over.</summary>
        static OmokageSupersededException Superseded(Exception inner)
        {
            return new OmokageSupersededException("the server closed the connection: " + Protocol.SupersededReason, inner);
        }

        Link RequireLink()
        {
            lock (_gate)
            {
                if (_link == null || !_link.Established || _state != ConnectionState.Connected)
                    throw new OmokageConnectionException("not connected (state: " + _state.ToString().ToLowerInvariant() + ")");
                return _link;
            }
        }

        Task Enqueue(Link link, byte[] data, WebSocketMessageType type)
        {
            var item = new Outgoing { Data = data, Type = type };
            if (Volatile.Read(ref link.Lost) != 0)
                return FailedTask(new OmokageConnectionException("the connection is closed"));
            link.Queue.Enqueue(item);
            try { link.Signal.Release(); }
            catch (ObjectDisposedException) { }
            if (Volatile.Read(ref link.Lost) != 0) DrainQueue(link, null);  // lost meanwhile: nobody will send it
            return item.Done.Task;
        }

        static void ObserveFault(Task task)
        {
            task.ContinueWith(t => { var ignored = t.Exception; }, TaskContinuationOptions.OnlyOnFaulted);
        }

        static Task FailedTask(Exception e)
        {
            var tcs = new TaskCompletionSource<bool>();
            tcs.SetException(e);
            return tcs.Task;
        }

        async Task SendLoop(Link link)
        {
            CancellationToken ct = link.Cts.Token;
            Exception reason = null;
            try
            {
                while (true)
                {
                    await link.Signal.WaitAsync(ct).ConfigureAwait(false);
                    Outgoing item;
                    if (!link.Queue.TryDequeue(out item)) continue;
                    try
                    {
                        if (item.Type == WebSocketMessageType.Close)
                            await link.Socket.CloseOutputAsync(WebSocketCloseStatus.NormalClosure, "client closing", ct).ConfigureAwait(false);
                        else
                            await link.Socket.SendAsync(new ArraySegment<byte>(item.Data), item.Type, true, ct).ConfigureAwait(false);
                    }
                    catch (Exception e)
                    {
                        item.Done.TrySetException(new OmokageConnectionException("sending failed: " + e.Message, e));
                        throw;
                    }
                    item.Done.TrySetResult(true);
                    if (item.Type == WebSocketMessageType.Close) return;  // nothing may follow a close frame
                }
            }
            catch (OperationCanceledException) { }
            catch (Exception e) { reason = e; }
            LoseLink(link, reason);
        }

        async Task ReceiveLoop(Link link)
        {
            CancellationToken ct = link.Cts.Token;
            var buffer = new byte[64 * 1024];
            var message = new MemoryStream();
            Exception reason = null;
            try
            {
                while (true)
                {
                    WebSocketReceiveResult r = await link.Socket.ReceiveAsync(new ArraySegment<byte>(buffer), ct).ConfigureAwait(false);
                    if (r.MessageType == WebSocketMessageType.Close)
                    {
                        string closed = "the server closed the connection (" +
                            (r.CloseStatus.HasValue ? ((int)r.CloseStatus.Value).ToString() : "no status") +
                            (string.IsNullOrEmpty(r.CloseStatusDescription) ? "" : " " + r.CloseStatusDescription) + ")";
                        // v1.7: another connection presented this one's resume token and goes on with the selection
                        if (r.CloseStatus.HasValue && (int)r.CloseStatus.Value == Protocol.SupersededCloseStatus &&
                            r.CloseStatusDescription == Protocol.SupersededReason)
                            reason = new OmokageSupersededException(closed);
                        else
                            reason = new OmokageConnectionException(closed);
                        break;
                    }
                    message.Write(buffer, 0, r.Count);
                    if (message.Length > _options.MaxReceiveFrameBytes)
                        throw new OmokageProtocolException("the server sent a frame over " + _options.MaxReceiveFrameBytes + " bytes");
                    if (!r.EndOfMessage) continue;
                    byte[] frame = message.ToArray();
                    message.SetLength(0);
                    HandleFrame(link, frame, r.MessageType);
                }
            }
            catch (OperationCanceledException) { }
            catch (Exception e) { reason = e; }
            LoseLink(link, reason);
        }

        void HandleFrame(Link link, byte[] frame, WebSocketMessageType type)
        {
            if (type == WebSocketMessageType.Text)
            {
                RaiseError(new OmokageProtocolException("the server sent a text frame; protocol v1 uses binary frames only"));
                return;
            }
            MsgMap map;
            try
            {
                map = _options.Codec.Decode(frame);
            }
            catch (Exception e)
            {
                RaiseError(new OmokageProtocolException("the server sent a frame that is not one MessagePack map: " + e.Message, e));
                return;
            }
            var trace = Trace;
            if (trace != null) Raise(trace, new MessageTrace(false, map, frame.Length, ClockSync.LocalNow()));

            ServerMessage msg;
            try
            {
                msg = ServerMessage.Parse(map);
            }
            catch (OmokageProtocolException e)
            {
                long? rawRid = map.GetInt64("rid");
                Pending broken = rawRid.HasValue ? TakePending(link, rawRid.Value) : null;
                if (broken != null) broken.Fail(e);
                else RaiseError(e);
                return;
            }

            var texture = msg as TextureMessage;
            if (texture != null && (!_options.VerifyTextureHashes || texture.Texture.HashMatches()))
                _textures.Add(texture.Texture);

            Pending pending = null;
            if (msg.Rid.HasValue)
            {
                lock (_gate)
                {
                    if (_pending.TryGetValue(msg.Rid.Value, out pending) && pending.Link != link) pending = null;
                }
            }
            if (pending == null)
            {
                var resumed = msg as CandidatesMessage;
                if (resumed != null && !msg.Rid.HasValue && link.ResumedGrid != null && link.ResumedGrid.TrySetResult(resumed))
                    return;  // v1.7: the grid of the resumed selection, awaited by the connection attempt
                var sketch = msg as SketchResultMessage;
                if (sketch != null)
                {
                    if (_sketch.TakeResult(link, sketch)) Raise(SketchResultReceived, sketch);
                    return;
                }
                var sharper = msg as SketchPreviewMessage;
                if (sharper != null)
                {
                    if (_sketch.TakePreview(link, sharper)) Raise(SketchPreviewReceived, sharper);
                    return;
                }
                var refused = msg as ErrorMessage;
                if (refused != null && refused.Rid.HasValue && _sketch.TakeError(link, refused))
                {
                    Raise(SketchRejected, refused);
                    return;
                }
                var models = msg as ModelsMessage;
                if (models != null && !msg.Rid.HasValue)
                {
                    lock (_gate) _models = models;
                    Raise(ModelsChanged, models);
                }
                var error = msg as ErrorMessage;
                if (error != null && error.Rid.HasValue && WasNoReply(error.Rid.Value))
                {
                    if (error.Dropped.HasValue) Interlocked.Add(ref _gazeDropped, error.Dropped.Value);
                    Raise(GazeRejected, error);
                    return;
                }
                Raise(MessageReceived, msg);
                return;
            }
            bool done;
            try
            {
                done = pending.OnMessage(msg);
            }
            catch (Exception e)
            {
                pending.Fail(e);
                done = true;
            }
            if (done) RemovePending(pending);
        }

        void LoseLink(Link link, Exception reason)
        {
            if (Interlocked.Exchange(ref link.Lost, 1) != 0) return;
            bool superseded = reason is OmokageSupersededException;
            if (superseded) link.Superseded = true;  // before the hello fails with it: the connection attempt reads it
            try { link.Cts.Cancel(); } catch (ObjectDisposedException) { }
            try { link.Socket.Abort(); } catch (Exception) { }
            var lost = new OmokageConnectionException("the connection to the server was lost" + (reason == null ? "" : ": " + reason.Message), reason);
            DrainQueue(link, lost);
            if (link.ResumedGrid != null) link.ResumedGrid.TrySetException(lost);

            var failed = new List<Pending>();
            bool established;
            bool reconnect = false;
            ConnectionState next = ConnectionState.Disconnected;
            lock (_gate)
            {
                foreach (var kv in _pending)
                    if (kv.Value.Link == link) failed.Add(kv.Value);
                foreach (var p in failed) _pending.Remove(p.Rid);
                if (_link == link) _link = null;
                established = link.Established;
                if (superseded && !_closing)
                {
                    // v1.7: the token is spent (the connection that took the selection over holds its new one)
                    _resumeToken = null;
                    _resumeChain = null;
                }
                if (established)
                {
                    if (_closing) next = ConnectionState.Closed;
                    else if (superseded) next = ConnectionState.Superseded;  // no reconnection: the selection went on elsewhere
                    else if (_options.AutoReconnect && !_reconnecting)
                    {
                        next = ConnectionState.Reconnecting;
                        reconnect = _reconnecting = true;
                    }
                }
            }
            foreach (var p in failed) p.Fail(lost);
            _sketch.LinkLost(link, lost);
            try { link.Socket.Dispose(); } catch (Exception) { }
            if (!established) return;  // a failed connect attempt: its caller reports it
            SetState(next);
            Raise(Disconnected, reason);
            if (reconnect) StartBackground(ReconnectLoop);
        }

        static void DrainQueue(Link link, Exception reason)
        {
            Outgoing item;
            while (link.Queue.TryDequeue(out item))
                item.Done.TrySetException(reason ?? new OmokageConnectionException("the connection is closed"));
        }

        async Task ReconnectLoop()
        {
            var backoff = NewBackoff();
            int failures = 0;
            bool connected = false;
            try
            {
                while (true)
                {
                    await Task.Delay(backoff.Next(), _lifetime.Token).ConfigureAwait(false);
                    lock (_gate)
                    {
                        if (_closing) return;
                    }
                    SetState(ConnectionState.Connecting);
                    try
                    {
                        await OpenAsync(_lifetime.Token).ConfigureAwait(false);
                        connected = true;
                        return;
                    }
                    catch (OperationCanceledException) { return; }
                    catch (Exception e)
                    {
                        if (_lifetime.IsCancellationRequested) return;
                        RaiseError(e);
                        failures++;
                        var server = e as OmokageServerException;
                        bool superseded = e is OmokageSupersededException;  // v1.7: the selection went on elsewhere
                        if (superseded || (server != null && IsFatal(server)) ||
                            (_options.MaxReconnectAttempts > 0 && failures >= _options.MaxReconnectAttempts))
                        {
                            // no longer reconnecting before Disconnected is raised: a handler may call ConnectAsync
                            lock (_gate) _reconnecting = false;
                            SetState(superseded ? ConnectionState.Superseded : ConnectionState.Disconnected);
                            return;
                        }
                        SetState(ConnectionState.Reconnecting);
                    }
                }
            }
            catch (OperationCanceledException) { }
            finally
            {
                if (!connected) lock (_gate) _reconnecting = false;
            }
        }

        async Task PingLoop(Link link)
        {
            CancellationToken ct = link.Cts.Token;
            try
            {
                while (!ct.IsCancellationRequested)
                {
                    try
                    {
                        await PingOnLink(link, _options.PingTimeout, ct).ConfigureAwait(false);
                    }
                    catch (OmokageTimeoutException e)
                    {
                        LoseLink(link, new OmokageConnectionException("the server did not answer a ping within " + _options.PingTimeout.TotalSeconds + " s", e));
                        return;
                    }
                    catch (OmokageServerException e) { RaiseError(e); }  // e.g. overloaded: try again later
                    await Task.Delay(_options.PingInterval, ct).ConfigureAwait(false);
                }
            }
            catch (OperationCanceledException) { }
            catch (OmokageConnectionException) { }
            catch (Exception e) { RaiseError(e); }
        }

        async Task<PingResult> PingOnLink(Link link, TimeSpan timeout, CancellationToken ct)
        {
            var pending = new SingleReply(MessageTypes.Pong);
            double t0 = ClockSync.LocalNow();
            ServerMessage reply = await SendRequest(link, rid => Requests.Ping(rid, t0), pending, pending.Result, timeout, ct).ConfigureAwait(false);
            double t1 = ClockSync.LocalNow();
            return _clock.AddSample(t0, t1, ((PongMessage)reply).ServerTime);
        }

        // --- plumbing: requests ------------------------------------------------------------------

        int NextRid()
        {
            while (true)
            {
                int rid = Interlocked.Increment(ref _ridCounter) & Protocol.MaxRid;  // wraps within 0 … 2^31-1
                if (rid != 0) return rid;
            }
        }

        async Task<T> SendRequest<T>(Link link, Func<int, MsgMap> build, Pending pending, Task<T> result, TimeSpan timeout, CancellationToken ct)
        {
            ct.ThrowIfCancellationRequested();
            int rid = NextRid();
            pending.Rid = rid;
            pending.Link = link;
            MsgMap message = build(rid);
            byte[] frame = _options.Codec.Encode(message);
            lock (_gate)
            {
                if (Volatile.Read(ref link.Lost) != 0) throw new OmokageConnectionException("the connection is closed");
                _pending[rid] = pending;
                // v1.7: once the selection moves on from the resumed grid, that grid is stale: a session taking it up later
                // would show a grid the server no longer does (and its chooses would be judged against the server's)
                if (_resumption.Grid != null && link == _link && MovesSelection(message.GetString("type")))
                    _resumption = _resumption.WithoutGrid();
            }
            try
            {
                var trace = Trace;
                if (trace != null) Raise(trace, new MessageTrace(true, message, frame.Length, ClockSync.LocalNow()));
                using (var waitCts = CancellationTokenSource.CreateLinkedTokenSource(ct))
                {
                    // one deadline for sending and the reply: a send stuck behind a dead link times out too
                    Task deadline = Task.Delay(timeout, waitCts.Token);
                    Task sent = Enqueue(link, frame, WebSocketMessageType.Binary);
                    if (await Task.WhenAny(sent, deadline).ConfigureAwait(false) != sent) throw TimedOut(message, rid, timeout, ct);
                    await sent.ConfigureAwait(false);
                    if (await Task.WhenAny(result, deadline).ConfigureAwait(false) != result) throw TimedOut(message, rid, timeout, ct);
                    waitCts.Cancel();
                }
                return await result.ConfigureAwait(false);
            }
            finally
            {
                RemovePending(pending);
            }
        }

        /// <summary>Whether a request of this type changes (or ends) the grid the server shows.</summary>
        static bool MovesSelection(string type)
        {
            return type == MessageTypes.Start || type == MessageTypes.Choose || type == MessageTypes.Skip || type == MessageTypes.Back
                || type == MessageTypes.Decide || type == MessageTypes.StudyNext;
        }

        static Exception TimedOut(MsgMap message, int rid, TimeSpan timeout, CancellationToken ct)
        {
            ct.ThrowIfCancellationRequested();
            return new OmokageTimeoutException(message.GetString("type") + " (rid " + rid + ") got no reply within " + timeout.TotalSeconds + " s", timeout);
        }

        void RemovePending(Pending pending)
        {
            lock (_gate)
            {
                Pending current;
                if (_pending.TryGetValue(pending.Rid, out current) && current == pending) _pending.Remove(pending.Rid);
            }
        }

        Pending TakePending(Link link, long rid)
        {
            if (rid < 0 || rid > Protocol.MaxRid) return null;
            lock (_gate)
            {
                Pending p;
                if (!_pending.TryGetValue((int)rid, out p) || p.Link != link) return null;
                _pending.Remove((int)rid);
                return p;
            }
        }

        abstract class Pending
        {
            public int Rid;
            public Link Link;

            /// <summary>Takes one message with this request's rid; true when the request is complete.</summary>
            public abstract bool OnMessage(ServerMessage message);

            public abstract void Fail(Exception e);
        }

        sealed class SingleReply : Pending
        {
            readonly string _expected;
            readonly TaskCompletionSource<ServerMessage> _tcs = new TaskCompletionSource<ServerMessage>(TaskCreationOptions.RunContinuationsAsynchronously);

            public SingleReply(string expected) { _expected = expected; }

            public Task<ServerMessage> Result { get { return _tcs.Task; } }

            public override bool OnMessage(ServerMessage message)
            {
                var error = message as ErrorMessage;
                if (error != null) _tcs.TrySetException(error.ToException());
                else if (_expected != null && message.Type != _expected)
                    _tcs.TrySetException(new OmokageProtocolException("expected `" + _expected + "` in reply to rid " + Rid + ", got `" + message.Type + "`"));
                else _tcs.TrySetResult(message);
                return true;
            }

            public override void Fail(Exception e) { _tcs.TrySetException(e); }
        }

        sealed class TextureBatch
        {
            public readonly List<TextureData> Textures = new List<TextureData>();
            public readonly List<string> Missing = new List<string>();
        }

        sealed class TextureReply : Pending
        {
            readonly List<string> _hashes;
            readonly bool _verify;
            readonly TextureBatch _batch = new TextureBatch();
            readonly TaskCompletionSource<TextureBatch> _tcs = new TaskCompletionSource<TextureBatch>(TaskCreationOptions.RunContinuationsAsynchronously);

            public TextureReply(List<string> hashes, bool verify)
            {
                _hashes = hashes;
                _verify = verify;
            }

            public Task<TextureBatch> Result { get { return _tcs.Task; } }

            public override bool OnMessage(ServerMessage message)
            {
                var texture = message as TextureMessage;
                if (texture != null)
                {
                    if (_verify && !texture.Texture.HashMatches())
                    {
                        _tcs.TrySetException(new OmokageProtocolException("texture " + texture.Texture.Hash + ": SHA-256 of the data does not match the hash"));
                        return true;
                    }
                    _batch.Textures.Add(texture.Texture);
                    if (_batch.Textures.Count < _hashes.Count) return false;
                    _tcs.TrySetResult(_batch);
                    return true;
                }
                var error = message as ErrorMessage;
                if (error != null && error.Code == ErrorCodes.NotFound)
                {
                    // the server sends the textures it has, then one not_found for the rest
                    var got = new HashSet<string>(StringComparer.Ordinal);
                    foreach (var t in _batch.Textures) got.Add(t.Hash);
                    foreach (var h in _hashes)
                        if (!got.Contains(h)) _batch.Missing.Add(h);
                    _tcs.TrySetResult(_batch);
                    return true;
                }
                if (error != null) _tcs.TrySetException(error.ToException());
                else _tcs.TrySetException(new OmokageProtocolException("expected `texture` in reply to rid " + Rid + ", got `" + message.Type + "`"));
                return true;
            }

            public override void Fail(Exception e) { _tcs.TrySetException(e); }
        }

        // --- helpers -----------------------------------------------------------------------------

        /// <summary>Runs a fire-and-forget loop on the thread pool (its own try/catch reports errors).</summary>
        static void StartBackground(Func<Task> loop)
        {
            Task.Run(loop);
        }

        Backoff NewBackoff()
        {
            var max = _options.ReconnectMaxDelay < _options.ReconnectInitialDelay ? _options.ReconnectInitialDelay : _options.ReconnectMaxDelay;
            return new Backoff(_options.ReconnectInitialDelay, max);
        }

        static bool IsFatal(OmokageServerException e)
        {
            return e.Code == ErrorCodes.Unauthorized || e.Code == ErrorCodes.BadField;
        }

        void SetState(ConnectionState state)
        {
            lock (_gate)
            {
                if (_state == state || _state == ConnectionState.Closed) return;
                _state = state;
            }
            Raise(StateChanged, state);
        }

        void Raise<T>(Action<T> handler, T arg)
        {
            if (handler == null) return;
            try { handler(arg); }
            catch (Exception e) { RaiseError(e); }
        }

        void RaiseError(Exception e)
        {
            var handler = BackgroundError;
            if (handler == null) return;
            try { handler(e); }
            catch (Exception) { }
        }
    }

    /// <summary>v1.7: what one connection's welcome left to go on with (<see cref="OmokageClient.Resumption"/>): its server
    /// session, the grid it resumed (null: none) and the sessions that selection went on from. Immutable: a reconnection
    /// publishes a new one, so a snapshot's parts always belong to the same connection.</summary>
    internal sealed class ResumeSnapshot
    {
        internal static readonly ResumeSnapshot None = new ResumeSnapshot(null, null, null);

        readonly string[] _from;

        internal ResumeSnapshot(string sessionId, CandidatesMessage grid, string[] from)
        {
            SessionId = sessionId;
            Grid = grid;
            _from = from;
        }

        /// <summary>The connection's server session (null before the first welcome).</summary>
        public string SessionId { get; private set; }

        /// <summary>The grid the connection resumed; null when it did not resume a selection.</summary>
        public CandidatesMessage Grid { get; private set; }

        /// <summary>The same connection's snapshot once its selection moved on from the resumed grid: no grid, from nowhere.</summary>
        internal ResumeSnapshot WithoutGrid() { return new ResumeSnapshot(SessionId, null, null); }

        /// <summary>The session whose welcome gave the token presented; null unless <see cref="Grid"/> is set.</summary>
        public string ResumedFrom { get { return _from == null ? null : _from[_from.Length - 1]; } }

        /// <summary>Whether the resumed selection was the one in <paramref name="sessionId"/> (or went on through it).</summary>
        public bool GoesOnFrom(string sessionId)
        {
            if (sessionId == null || _from == null) return false;
            foreach (string s in _from)
                if (s == sessionId) return true;
            return false;
        }
    }
}
