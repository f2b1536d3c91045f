using System;
using Omokage.Client.MessagePack;

namespace Omokage.Client
{
    /// <summary>Settings of an <see cref="OmokageClient"/>. Change them before connecting.</summary>
    public sealed class OmokageClientOptions
    {
        public OmokageClientOptions(string serverUrl) : this(new Uri(serverUrl)) { }

        public OmokageClientOptions(Uri serverUri)
        {
            if (serverUri == null) throw new ArgumentNullException("serverUri");
            if (serverUri.Scheme != "ws" && serverUri.Scheme != "wss")
                throw new ArgumentException("the server URL must be ws://HOST:PORT/ws or wss://…, got " + serverUri, "serverUri");
            ServerUri = serverUri;
        }

        /// <summary><c>ws://HOST:PORT/ws</c>.</summary>
        public Uri ServerUri { get; private set; }

        /// <summary><c>hello.client</c> (≤ 128 characters).</summary>
        public string ClientName = Protocol.DefaultClientName;

        /// <summary><c>hello.token</c>, when the server was started with <c>--token</c>.</summary>
        public string Token;

        /// <summary>The version sent in <c>hello</c>. Leave it at <see cref="Protocol.Version"/> (tests change it).</summary>
        public int ProtocolVersion = Protocol.Version;

        /// <summary><c>hello.protocol_minor</c>: the minor version announced (v1.7 by default: the server then sends
        /// <c>welcome.gaze</c>, <c>models</c> messages, <c>welcome.sketch</c> when it sketches, <c>welcome.gaze.calibration</c>
        /// when it can calibrate, <c>welcome.gaze.profile</c>, <c>welcome.ideal</c> when it generates ideal faces, sharper sketch
        /// previews, and a resume token, <c>welcome.resume</c>). Null greets like a v1.0 client: a <c>start</c> without a policy then gets the v1.0 grids
        /// (<see cref="Policies.Study"/>).</summary>
        public int? ProtocolMinor = Protocol.Minor;

        /// <summary>v1.2 <c>hello.participant</c>: a study participant's code (≤ 64 characters) for a server run with
        /// <c>--study</c>; null or empty for an ordinary session. A study server refuses a hello without a known code
        /// (<c>unauthorized</c>), a server without a study one with a code (<c>bad_field</c>).</summary>
        public string Participant;

        /// <summary>v1.5 <c>hello.device</c>: the headset model (≤ 64 characters, e.g. <see cref="HeadsetModels.QuestPro"/>,
        /// <see cref="HeadsetModels.Quest3"/>), whose default gaze correction the server applies until a calibration replaces it
        /// (a participant's saved calibration comes first; <see cref="OmokageClient.GazeProfile"/> says which applies). Null or
        /// empty: none is sent. A model the server has no profile for is accepted (its gaze goes uncorrected); a server
        /// older than v1.5 ignores the field.</summary>
        public string Device;

        /// <summary>v1.7: present the resume token of the last welcome (<c>hello.resume</c>) when the client connects again, so
        /// the server goes on with the selection it kept (<see cref="OmokageClient.ResumedGrid"/>). The token lives in the client's
        /// memory only: it outlasts a pause of the app and reconnections, not the client (nor the app). False: every new
        /// connection starts afresh, as before v1.7.</summary>
        public bool ResumeSelections = true;

        /// <summary>Limit for opening the WebSocket plus the hello/welcome exchange (v1.7: and, on a resumed welcome, the grid
        /// that follows it).</summary>
        public TimeSpan ConnectTimeout = TimeSpan.FromSeconds(10);

        /// <summary>How long a request waits for its reply (<see cref="System.Threading.Timeout.InfiniteTimeSpan"/> = forever).</summary>
        public TimeSpan RequestTimeout = TimeSpan.FromSeconds(30);

        /// <summary>Reconnect (with back-off and a new hello) when an established connection is lost.</summary>
        public bool AutoReconnect = true;

        /// <summary>First back-off delay; it doubles per failed attempt up to <see cref="ReconnectMaxDelay"/>.</summary>
        public TimeSpan ReconnectInitialDelay = TimeSpan.FromSeconds(0.5);

        public TimeSpan ReconnectMaxDelay = TimeSpan.FromSeconds(30);

        /// <summary>Give up after this many failed attempts in a row (0 = never give up).</summary>
        public int MaxReconnectAttempts = 0;

        /// <summary>Send a protocol <c>ping</c> this often to keep the clock offset fresh and notice a dead
        /// link (TimeSpan.Zero = off).</summary>
        public TimeSpan PingInterval = TimeSpan.FromSeconds(5);

        /// <summary>An automatic ping unanswered this long counts as a lost connection.</summary>
        public TimeSpan PingTimeout = TimeSpan.FromSeconds(10);

        /// <summary>WebSocket-level keep-alive of ClientWebSocket.</summary>
        public TimeSpan KeepAliveInterval = TimeSpan.FromSeconds(15);

        /// <summary>Check that SHA-256 of every received texture equals its hash before caching it.</summary>
        public bool VerifyTextureHashes = true;

        /// <summary>Most encoded texture bytes kept in <see cref="OmokageClient.Textures"/> (0 = unlimited).</summary>
        public long TextureCacheMaxBytes = 64L * 1024 * 1024;

        /// <summary>Largest frame accepted from the server.</summary>
        public int MaxReceiveFrameBytes = 32 * 1024 * 1024;

        /// <summary>The MessagePack codec (swap in MessagePack-CSharp here; see the README).</summary>
        public IMessageCodec Codec = BuiltInMessageCodec.Instance;
    }
}
