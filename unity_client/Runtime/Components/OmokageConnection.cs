using System;
using System.Threading;
using System.Threading.Tasks;
using Omokage.Client;
using UnityEngine;
using UnityEngine.Events;

namespace Omokage.Client.Components
{
    /// <summary>
    /// Owns one <see cref="OmokageClient"/>: connects on Start (retrying with back-off until the server answers),
    /// reconnects when the connection drops, and re-raises the client's events on the main thread.
    /// Point it at <c>ws://HOST:PORT/ws</c> of <c>omokage serve --host 0.0.0.0 --token …</c> on your LAN
    /// (plaintext <c>ws://</c> to another machine is warned about once; use <c>wss://</c> outside a trusted LAN).
    /// <para>Pause and resume (the headset's browser opened, the headset taken off): when the app comes back
    /// (<c>OnApplicationPause(false)</c> or <c>OnApplicationFocus(true)</c>) it checks the link with one ping
    /// (<see cref="OmokageClient.ProbeAsync"/>); a dead link is dropped and reconnected at once, and a connection that had
    /// given up is started again (one retry loop at a time; never after an explicit <see cref="Disconnect"/>); after
    /// <c>OnApplicationPause(false)</c> the clock offset is measured afresh (the headset may have slept). The welcome that
    /// follows is a new server session: <see cref="CandidateGrid"/> keeps its grid and decision and restores the selection
    /// instead of starting a new one.</para>
    /// <para>v1.7: the client keeps the resume token of the latest welcome in memory, so it outlasts a pause (the same client
    /// reconnects) but not <see cref="Disconnect"/> or the app; it is never written to disk or logged. The hello after a
    /// pause presents it, and a server that kept the selection goes on with it: <see cref="SelectionResumed"/> brings its
    /// grid, which <see cref="CandidateGrid"/> shows as it was.</para>
    /// <para>v1.7: when another connection presents the token while this one is still open, the server closes this one and
    /// the selection goes on there: the state becomes <see cref="ConnectionState.Superseded"/> (<see cref="IsSuperseded"/>,
    /// <see cref="SelectionSuperseded"/> / <see cref="onSuperseded"/>), nothing reconnects (not a resume either: that would
    /// start another selection over the user's head), and the token is gone. Tell the user ("This selection went on
    /// elsewhere", <see cref="CandidateGrid.WentElsewhereTitle"/>) and call <see cref="StartAfresh"/> when they ask ("Start a
    /// new one here"; <see cref="CandidateGrid.StartNewHere"/> also resets the grid).</para>
    /// </summary>
    [DisallowMultipleComponent]
    [AddComponentMenu("Omokage/Omokage Connection")]
    public sealed class OmokageConnection : MonoBehaviour
    {
        [Tooltip("ws://HOST:PORT/ws of `omokage serve --host 0.0.0.0`; HOST is the server's LAN address as the headset sees it.")]
        [SerializeField] string serverUrl = "ws://192.168.0.10:8765/ws";

        [Tooltip("The server's --token, when it has one.")]
        [SerializeField] string token = "";

        [Tooltip("A study participant's code (protocol v1.2, a server run with --study), sent in hello. Empty: no study.")]
        [SerializeField] string participantCode = "";

        [Tooltip("The headset model sent in hello (protocol v1.5 hello.device), e.g. quest-pro or quest-3: the server applies its " +
                 "default gaze correction for that model until a calibration. Empty: none (or detected, below).")]
        [SerializeField] string device = "";

        [Tooltip("When Device is empty, guess it from SystemInfo.deviceModel (a Quest Pro or a Quest 3; anything else, the " +
                 "Editor included, sends none).")]
        [SerializeField] bool detectDevice = false;

        [SerializeField] bool connectOnStart = true;

        [Tooltip("Reconnect with exponential back-off (and a new hello) when the connection drops.")]
        [SerializeField] bool autoReconnect = true;

        [Tooltip("Protocol ping period for the clock offset and dead-link detection (0 = off).")]
        [SerializeField] float pingIntervalSeconds = 5f;

        [Tooltip("Log every message sent and received to the console.")]
        [SerializeField] bool logTraffic = false;

        [Tooltip("When the app resumes, how long one ping may take before the link counts as dead and is reconnected.")]
        [SerializeField] float resumeProbeSeconds = 3f;

        [Tooltip("Raised on the main thread on every welcome (first connection and each reconnection).")]
        public UnityEvent onConnected = new UnityEvent();

        [Tooltip("Raised on the main thread when an established connection is lost.")]
        public UnityEvent onDisconnected = new UnityEvent();

        [Tooltip("Connecting failed for good (e.g. unauthorized, or MaxReconnectAttempts reached): (code, message for people).")]
        public OmokageErrorEvent onError = new OmokageErrorEvent();

        [Tooltip("The app came back from a pause and the link was checked (reconnecting if it was dead).")]
        public UnityEvent onResumed = new UnityEvent();

        [Tooltip("v1.7: the selection went on on another connection (it presented this one's resume token); nothing reconnects " +
                 "until StartAfresh (\"Start a new one here\").")]
        public UnityEvent onSuperseded = new UnityEvent();

        static bool _warnedPlaintext;

        CancellationTokenSource _cts;
        bool _paused;
        Task _resume;
        Task _connecting;  // the retry loop running (null: none): a resume during its back-off must not start a second
        bool _disconnected;  // Disconnect() was called: a resume does not connect again until Connect()

        /// <summary>The client (null until <see cref="Connect"/>).</summary>
        public OmokageClient Client { get; private set; }

        /// <summary>The connection state as last seen on the main thread.</summary>
        public ConnectionState State { get; private set; }

        /// <summary>The last welcome (null before the first).</summary>
        public WelcomeMessage Welcome { get { return Client == null ? null : Client.Welcome; } }

        public bool IsConnected { get { return Client != null && Client.IsConnected; } }

        /// <summary>v1.7: the selection went on on another connection (<see cref="ConnectionState.Superseded"/>, as last seen on
        /// the main thread): nothing reconnects until <see cref="StartAfresh"/>.</summary>
        public bool IsSuperseded { get { return State == ConnectionState.Superseded; } }

        public string ServerUrl { get { return serverUrl; } set { serverUrl = value; } }

        public string Token { get { return token; } set { token = value; } }

        /// <summary>The participant code sent in hello (set it before <see cref="Connect"/>; e.g. from a code entry
        /// screen). Empty: no study.</summary>
        public string ParticipantCode { get { return participantCode; } set { participantCode = value; } }

        public bool ConnectOnStart { get { return connectOnStart; } set { connectOnStart = value; } }

        /// <summary>v1.5: the headset model for <c>hello.device</c> (set it before <see cref="Connect"/>; e.g.
        /// <see cref="HeadsetModels.QuestPro"/>). Empty: none, unless <see cref="DetectDevice"/> guesses one.</summary>
        public string Device { get { return device; } set { device = value; } }

        /// <summary>v1.5: when <see cref="Device"/> is empty, guess the model from <c>SystemInfo.deviceModel</c>
        /// (<see cref="HeadsetModels.FromDeviceName"/>: a Quest Pro or a Quest 3, else none).</summary>
        public bool DetectDevice { get { return detectDevice; } set { detectDevice = value; } }

        /// <summary>v1.5: what corrects this session's gaze (<see cref="OmokageClient.GazeProfile"/>; null before a welcome or
        /// from an older server).</summary>
        public string GazeProfile { get { return Client == null ? null : Client.GazeProfile; } }

        /// <summary>Whether the gaze is already calibrated for this user (<see cref="OmokageClient.GazeCalibrated"/>: a
        /// participant's saved calibration, or a resumed selection's): offer a calibration only when this is false.</summary>
        public bool GazeCalibrated { get { return Client != null && Client.GazeCalibrated; } }

        /// <summary>The device name the hello carries: <see cref="Device"/>, else (with <see cref="DetectDevice"/>) the model
        /// guessed from the system's device name, else null.</summary>
        public string HelloDevice()
        {
            if (!string.IsNullOrEmpty(device) && device.Trim().Length > 0) return device.Trim();
            return detectDevice ? HeadsetModels.FromDeviceName(SystemInfo.deviceModel) : null;
        }

        /// <summary>State changes, on the main thread.</summary>
        public event Action<ConnectionState> StateChanged;

        /// <summary>Every welcome, on the main thread. A reconnection is a new server session: start the selection again.</summary>
        public event Action<WelcomeMessage> Connected;

        /// <summary>v1.7: the new connection went on with the selection of the previous one (after a pause, a Wi-Fi drop): the
        /// grid that was on screen, on the main thread, before <see cref="Connected"/>. <see cref="CandidateGrid"/> shows it
        /// itself (<see cref="RestoreOutcome.Resumed"/>).</summary>
        public event Action<CandidatesMessage> SelectionResumed;

        /// <summary>Messages that answer no request (e.g. <c>error bad_frame</c> without rid), on the main thread.</summary>
        public event Action<ServerMessage> MessageReceived;

        /// <summary>Connecting failed for good, on the main thread.</summary>
        public event Action<OmokageError> Failed;

        /// <summary>The app came back from a pause and the link was checked; true when it was still alive.</summary>
        public event Action<bool> Resumed;

        /// <summary>v1.7: the selection went on on another connection (<see cref="IsSuperseded"/>), on the main thread, after
        /// <see cref="StateChanged"/>. Nothing reconnects: offer <see cref="StartAfresh"/>.</summary>
        public event Action SelectionSuperseded;

        [RuntimeInitializeOnLoadMethod(RuntimeInitializeLoadType.SubsystemRegistration)]
        static void ResetStatics() { _warnedPlaintext = false; }  // domain reload may be off

        void Awake()
        {
            OmokageDispatcher.EnsureExists();
            State = ConnectionState.Disconnected;
        }

        void Start()
        {
            if (connectOnStart) Connect();
        }

        /// <summary>Creates the client and connects in the background (retrying until it succeeds).</summary>
        public void Connect()
        {
            _disconnected = false;
            if (Client != null) return;
            var options = new OmokageClientOptions(serverUrl)
            {
                Token = string.IsNullOrEmpty(token) ? null : token,
                Participant = string.IsNullOrEmpty(participantCode) ? null : participantCode.Trim(),
                Device = HelloDevice(),
                AutoReconnect = autoReconnect,
                PingInterval = TimeSpan.FromSeconds(Mathf.Max(0f, pingIntervalSeconds)),
            };
            if (UrlPolicy.IsPlaintextToRemote(options.ServerUri) && !_warnedPlaintext)
            {
                _warnedPlaintext = true;
                Debug.LogWarning("[omokage] " + serverUrl + " is plaintext ws:// to another machine: the token and every " +
                                 "message can be read and changed on the network. Fine on a LAN you trust; elsewhere use wss://.");
            }
            var client = new OmokageClient(options);
            client.StateChanged += OnClientState;
            client.Connected += OnClientConnected;
            client.SelectionResumed += OnClientResumed;
            client.MessageReceived += OnClientMessage;
            client.BackgroundError += OnClientError;
            if (logTraffic) client.Trace += OnClientTrace;
            Client = client;
            _cts = new CancellationTokenSource();
            StartConnecting(client);
        }

        /// <summary>Closes the connection (politely, in the background) and forgets the client. A resume does not connect
        /// again until <see cref="Connect"/> is called.</summary>
        public void Disconnect()
        {
            _disconnected = true;
            if (_cts != null) _cts.Cancel();
            _cts = null;
            _connecting = null;
            var client = Client;
            Client = null;
            if (client == null) return;
            client.StateChanged -= OnClientState;
            client.Connected -= OnClientConnected;
            client.SelectionResumed -= OnClientResumed;
            client.MessageReceived -= OnClientMessage;
            client.BackgroundError -= OnClientError;
            client.Trace -= OnClientTrace;
            Observe(client.CloseAsync());
            State = ConnectionState.Closed;
        }

        void OnDestroy() { Disconnect(); }

        /// <summary>
        /// v1.7, "Start a new one here": after the selection went on on another connection (<see cref="IsSuperseded"/>),
        /// connects again without the resume token (<see cref="OmokageClient.StartAfreshAsync"/>, retrying with back-off): the
        /// welcome is a new server session with no selection, and <see cref="Connected"/> is raised as for a first
        /// connection. Does nothing unless the client is superseded. <see cref="CandidateGrid.StartNewHere"/> calls it after
        /// resetting the grid, so that the welcome starts a new selection instead of restoring the old one.
        /// </summary>
        public void StartAfresh()
        {
            var client = Client;
            if (client == null || client.State != ConnectionState.Superseded) return;
            if (_connecting != null && !_connecting.IsCompleted) return;
            _disconnected = false;
            if (_cts == null) _cts = new CancellationTokenSource();
            Track(client, client.StartAfreshAsync(_cts.Token));
        }

        void StartConnecting(OmokageClient client)
        {
            if (_connecting != null && !_connecting.IsCompleted) return;  // the loop is backing off, not given up
            if (_cts == null) _cts = new CancellationTokenSource();
            Track(client, client.ConnectWithRetryAsync(_cts.Token));
        }

        /// <summary>The retry loop now running: its failure for good is reported (<see cref="Failed"/>, <see cref="onError"/>).</summary>
        void Track(OmokageClient client, Task connecting)
        {
            _connecting = connecting;
            TaskObserver.Observe(_connecting, e =>
            {
                if (this == null || Client != client || e is OperationCanceledException) return;
                if (e is OmokageSupersededException) return;  // v1.7: not a failure; the state (Superseded) says it
                var error = OmokageError.From(e);
                Debug.LogError("[omokage] could not connect to " + serverUrl + ": " + error);
                var handler = Failed;
                if (handler != null) handler(error);
                onError.Invoke(error.Code, error.Message);
            });
        }

        static void Observe(Task task) { TaskObserver.Observe(task, null); }

        // --- pause and resume ------------------------------------------------------------------------

        void OnApplicationPause(bool paused)
        {
            if (paused)
            {
                _paused = true;
                return;
            }
            // the headset may have slept: the clock offset measured before is stale (ClockSync also notices the drift)
            var client = Client;
            if (client != null) client.Clock.Reset();
            if (_paused) Resume();  // its ping measures the clock afresh
            else if (client != null && client.IsConnected)  // focus came back first and already pinged: ping again
                Observe(client.ProbeAsync(TimeSpan.FromSeconds(Mathf.Max(0.1f, resumeProbeSeconds))));
        }

        void OnApplicationFocus(bool focused)
        {
            if (!focused) _paused = true;  // Quest: the browser or the system menu took over
            else Resume();
        }

        void Resume()
        {
            if (!_paused) return;  // focus and pause both report one return: check once
            _paused = false;
            if (_resume != null && !_resume.IsCompleted) return;
            _resume = ResumeAsync();
            TaskObserver.Observe(_resume, e => Debug.LogWarning("[omokage] resume: " + e.Message));
        }

        /// <summary>
        /// What the connection does when the app comes back (called from OnApplicationPause / OnApplicationFocus; call it
        /// yourself after your own suspend): connects if it never did (not after an explicit <see cref="Disconnect"/>, until
        /// <see cref="Connect"/>), restarts connecting if it had given up (not while its retry loop backs off; v1.7: never when
        /// the selection went on on another connection, <see cref="IsSuperseded"/>: that waits for <see cref="StartAfresh"/>), and otherwise pings
        /// once (<c>resumeProbeSeconds</c>): a dead link is dropped, and the client reconnects at once. True when the link
        /// was alive.
        /// </summary>
        public async Task<bool> ResumeAsync()
        {
            bool alive = false;
            var client = Client;
            if (client == null)
            {
                if (connectOnStart && !_disconnected) Connect();  // never after an explicit Disconnect()
            }
            else if (client.State == ConnectionState.Disconnected)
            {
                StartConnecting(client);  // the retry loop had given up (or auto-reconnect is off); not while it backs off
            }
            else if (client.State == ConnectionState.Connected)
            {
                alive = await client.ProbeAsync(TimeSpan.FromSeconds(Mathf.Max(0.1f, resumeProbeSeconds)));
                if (!alive && !autoReconnect && Client == client) StartConnecting(client);
            }
            if (this == null) return alive;
            var handler = Resumed;
            if (handler != null) handler(alive);
            onResumed.Invoke();
            return alive;
        }

        // --- client events arrive on background threads: hop to the main thread -----------------

        void OnClientState(ConnectionState state)
        {
            OmokageDispatcher.Post(() =>
            {
                if (this == null) return;  // destroyed meanwhile
                var previous = State;
                State = state;
                var handler = StateChanged;
                if (handler != null) handler(state);
                if (previous == ConnectionState.Connected && state != ConnectionState.Connected) onDisconnected.Invoke();
                if (state == ConnectionState.Superseded && previous != ConnectionState.Superseded)
                {
                    Debug.Log("[omokage] the selection went on on another connection (it presented this one's resume token); " +
                              "not reconnecting until StartAfresh");
                    var superseded = SelectionSuperseded;
                    if (superseded != null) superseded();
                    onSuperseded.Invoke();
                }
            });
        }

        void OnClientConnected(WelcomeMessage welcome)
        {
            OmokageDispatcher.Post(() =>
            {
                if (this == null) return;
                Debug.Log("[omokage] connected to " + welcome.Server + ", session " + welcome.SessionId + ", " +
                          welcome.Catalog.Count + " faces, algorithms " + string.Join(", ", welcome.Algorithms));
                var handler = Connected;
                if (handler != null) handler(welcome);
                onConnected.Invoke();
            });
        }

        void OnClientResumed(CandidatesMessage grid)
        {
            OmokageDispatcher.Post(() =>
            {
                if (this == null) return;
                Debug.Log("[omokage] the server went on with the selection: grid " + grid.Step + ", " + grid.Items.Count + " faces");
                var handler = SelectionResumed;
                if (handler != null) handler(grid);
            });
        }

        void OnClientMessage(ServerMessage message)
        {
            OmokageDispatcher.Post(() =>
            {
                if (this == null) return;
                var error = message as ErrorMessage;
                if (error != null) Debug.LogWarning("[omokage] server error " + error.Code + ": " + error.Message);
                var handler = MessageReceived;
                if (handler != null) handler(message);
            });
        }

        void OnClientError(Exception e)
        {
            OmokageDispatcher.Post(() => Debug.LogWarning("[omokage] " + e.Message));
        }

        void OnClientTrace(MessageTrace trace)
        {
            string line = trace.ToString();
            OmokageDispatcher.Post(() => Debug.Log("[omokage] " + line));
        }
    }
}
