using System;
using System.Threading;
using System.Threading.Tasks;
using Omokage.Client;
using UnityEngine;
using UnityEngine.Events;

namespace Omokage.Unity
{
    /// <summary>
    /// Owns one <see cref="OmokageClient"/>: connects on Start (retrying with back-off until the server answers),
    /// reconnects when the connection drops, and re-raises the client's events on the main thread.
    /// Point it at <c>ws://HOST:PORT/ws</c> of <c>omokage serve --host 0.0.0.0 --token …</c> on your LAN.
    /// </summary>
    [DisallowMultipleComponent]
    [AddComponentMenu("Omokage/Omokage Connection")]
    public sealed class OmokageConnection : MonoBehaviour
    {
        [Tooltip("ws://HOST:PORT/ws of `omokage serve --host 0.0.0.0`; HOST is the server's LAN address as the headset sees it.")]
        [SerializeField] string serverUrl = "ws://192.168.0.10:8765/ws";

        [Tooltip("The server's --token, when it has one.")]
        [SerializeField] string token = "";

        [SerializeField] bool connectOnStart = true;

        [Tooltip("Reconnect with exponential back-off (and a new hello) when the connection drops.")]
        [SerializeField] bool autoReconnect = true;

        [Tooltip("Protocol ping period for the clock offset and dead-link detection (0 = off).")]
        [SerializeField] float pingIntervalSeconds = 5f;

        [Tooltip("Log every message sent and received to the console.")]
        [SerializeField] bool logTraffic = false;

        [Tooltip("Raised on the main thread on every welcome (first connection and each reconnection).")]
        public UnityEvent onConnected = new UnityEvent();

        [Tooltip("Raised on the main thread when an established connection is lost.")]
        public UnityEvent onDisconnected = new UnityEvent();

        CancellationTokenSource _cts;

        /// <summary>The client (null until <see cref="Connect"/>).</summary>
        public OmokageClient Client { get; private set; }

        /// <summary>The connection state as last seen on the main thread.</summary>
        public ConnectionState State { get; private set; }

        /// <summary>The last welcome (null before the first).</summary>
        public WelcomeMessage Welcome { get { return Client == null ? null : Client.Welcome; } }

        public bool IsConnected { get { return Client != null && Client.IsConnected; } }

        public string ServerUrl { get { return serverUrl; } set { serverUrl = value; } }

        public string Token { get { return token; } set { token = value; } }

        public bool ConnectOnStart { get { return connectOnStart; } set { connectOnStart = value; } }

        /// <summary>State changes, on the main thread.</summary>
        public event Action<ConnectionState> StateChanged;

        /// <summary>Every welcome, on the main thread. A reconnection is a new server session: start the selection again.</summary>
        public event Action<WelcomeMessage> Connected;

        /// <summary>Messages that answer no request (e.g. <c>error bad_frame</c> without rid), on the main thread.</summary>
        public event Action<ServerMessage> MessageReceived;

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
            if (Client != null) return;
            var options = new OmokageClientOptions(serverUrl)
            {
                Token = string.IsNullOrEmpty(token) ? null : token,
                AutoReconnect = autoReconnect,
                PingInterval = TimeSpan.FromSeconds(Mathf.Max(0f, pingIntervalSeconds)),
            };
            var client = new OmokageClient(options);
            client.StateChanged += OnClientState;
            client.Connected += OnClientConnected;
            client.MessageReceived += OnClientMessage;
            client.BackgroundError += OnClientError;
            if (logTraffic) client.Trace += OnClientTrace;
            Client = client;
            _cts = new CancellationTokenSource();
            ConnectInBackground(client, _cts.Token);
        }

        /// <summary>Closes the connection (politely, in the background) and forgets the client.</summary>
        public void Disconnect()
        {
            if (_cts != null) _cts.Cancel();
            _cts = null;
            var client = Client;
            Client = null;
            if (client == null) return;
            client.StateChanged -= OnClientState;
            client.Connected -= OnClientConnected;
            client.MessageReceived -= OnClientMessage;
            client.BackgroundError -= OnClientError;
            client.Trace -= OnClientTrace;
            Observe(client.CloseAsync());
            State = ConnectionState.Closed;
        }

        void OnDestroy() { Disconnect(); }

        async void ConnectInBackground(OmokageClient client, CancellationToken ct)
        {
            try
            {
                await client.ConnectWithRetryAsync(ct);
            }
            catch (OperationCanceledException) { }
            catch (Exception e)
            {
                Debug.LogError("[omokage] could not connect to " + serverUrl + ": " + e.Message);
            }
        }

        static void Observe(Task task)
        {
            task.ContinueWith(t => { var unused = t.Exception; }, TaskContinuationOptions.OnlyOnFaulted);
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
