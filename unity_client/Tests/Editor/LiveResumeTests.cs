using System;
using System.Collections.Generic;
using System.Linq;
using System.Net;
using System.Net.Sockets;
using System.Net.WebSockets;
using System.Threading;
using System.Threading.Tasks;
using NUnit.Framework;
using Omokage.Client.MessagePack;

namespace Omokage.Client.Tests
{
    /// <summary>
    /// v1.7 against a real `omokage serve` (OMOKAGE_SERVER_URL), reached through a loopback relay that can drop the
    /// client's link (<see cref="Relay.Cut"/>: a Wi-Fi drop) or make it half-open (<see cref="Relay.Freeze"/>: the headset
    /// slept, the app is paused; the probe on resume finds it dead) or lose what the server sends (<see cref="Relay.Mute"/>: a
    /// reply lost with the link). Each time the reconnect loop presents the token of
    /// the last welcome and the server goes on with the selection: the grid that was on screen comes back, the steps go
    /// on, and faces already shown are never shown again (the server's seen set carried over). After the decision
    /// there is nothing to go on with (<c>resumed: false</c>); a v1.6 client is given no token. A back whose reply was lost
    /// with the link is taken up from the resumed grid: the grid before the undone pick, with the face chosen on it. When
    /// another connection presents the token while the client's is still open, the server closes the client's: it does not
    /// reconnect, its token is gone, and it starts afresh only when asked.
    /// </summary>
    [TestFixture]
    [Category("Live")]
    public class LiveResumeTests
    {
        /// <summary>A loopback TCP relay in front of the server; new connections relay normally. The package's only relay
        /// (LiveBackTests needs none); tests/csharp/Transcript/TcpProxy.cs is a smaller one for the transcript tool, which
        /// the package's tests cannot reference: a UPM package stands alone.</summary>
        sealed class Relay : IDisposable
        {
            readonly TcpListener _listener = new TcpListener(IPAddress.Loopback, 0);
            readonly string _host;
            readonly int _port;
            readonly List<Pair> _pairs = new List<Pair>();
            volatile bool _disposed;

            sealed class Pair
            {
                public TcpClient Client;
                public TcpClient Server;
                public volatile bool Frozen;
                public volatile bool Muted;  // what the server sends is dropped; what the client sends still arrives
                public long Dropped;         // bytes from the server dropped while muted
            }

            public Relay(Uri server)
            {
                _host = server.Host;
                _port = server.Port;
                _listener.Start();
                new Thread(Accept) { IsBackground = true }.Start();
            }

            public int Port { get { return ((IPEndPoint)_listener.LocalEndpoint).Port; } }

            /// <summary>Closes every open connection, both ways.</summary>
            public void Cut()
            {
                lock (_pairs)
                {
                    foreach (var p in _pairs) Close(p);
                    _pairs.Clear();
                }
            }

            /// <summary>Every open connection stops carrying bytes, without closing.</summary>
            public void Freeze()
            {
                lock (_pairs)
                    foreach (var p in _pairs) p.Frozen = true;
            }

            /// <summary>Every open connection drops what the server sends from now on (counted: <see cref="DroppedFromServer"/>),
            /// and still carries what the client sends: the server acts on a request whose reply never arrives.</summary>
            public void Mute()
            {
                lock (_pairs)
                    foreach (var p in _pairs) p.Muted = true;
            }

            public long DroppedFromServer
            {
                get
                {
                    long n = 0;
                    lock (_pairs)
                        foreach (var p in _pairs) n += Interlocked.Read(ref p.Dropped);
                    return n;
                }
            }

            void Accept()
            {
                while (!_disposed)
                {
                    TcpClient client;
                    try { client = _listener.AcceptTcpClient(); }
                    catch (Exception) { return; }
                    var pair = new Pair { Client = client, Server = new TcpClient(_host, _port) };
                    lock (_pairs) _pairs.Add(pair);
                    new Thread(() => Pump(pair, pair.Client, pair.Server, false)) { IsBackground = true }.Start();
                    new Thread(() => Pump(pair, pair.Server, pair.Client, true)) { IsBackground = true }.Start();
                }
            }

            static void Pump(Pair pair, TcpClient from, TcpClient to, bool fromServer)
            {
                var buffer = new byte[64 * 1024];
                try
                {
                    var input = from.GetStream();
                    var output = to.GetStream();
                    while (true)
                    {
                        int n = input.Read(buffer, 0, buffer.Length);
                        if (n <= 0) break;
                        if (fromServer && pair.Muted) Interlocked.Add(ref pair.Dropped, n);
                        else if (!pair.Frozen) output.Write(buffer, 0, n);
                    }
                }
                catch (Exception) { }
                if (!pair.Frozen) Close(pair);  // a half-open link closes nothing
            }

            static void Close(Pair p)
            {
                try { p.Client.Close(); } catch (Exception) { }
                try { p.Server.Close(); } catch (Exception) { }
            }

            public void Dispose()
            {
                _disposed = true;
                _listener.Stop();
                Cut();
            }
        }

        /// <summary>Another connection to the server, spoken to frame by frame (a second device or window the token reached):
        /// not an <see cref="OmokageClient"/>, which presents only the tokens its own welcomes gave it.</summary>
        sealed class OtherConnection : IDisposable
        {
            readonly ClientWebSocket _socket = new ClientWebSocket();
            int _rid;

            public OtherConnection(string url)
            {
                Sync.Run(() => _socket.ConnectAsync(new Uri(url), CancellationToken.None));
            }

            public ServerMessage Request(MsgMap message)
            {
                message.Set("rid", (long)++_rid);
                byte[] frame = MsgPackWriter.Encode(message);
                Sync.Run(() => _socket.SendAsync(new ArraySegment<byte>(frame), WebSocketMessageType.Binary, true, CancellationToken.None));
                return Receive();
            }

            public ServerMessage Receive()
            {
                return Sync.Run(async () =>
                {
                    var buffer = new byte[1 << 20];
                    int got = 0;
                    while (true)
                    {
                        WebSocketReceiveResult r = await _socket.ReceiveAsync(new ArraySegment<byte>(buffer, got, buffer.Length - got), CancellationToken.None);
                        Assert.AreEqual(WebSocketMessageType.Binary, r.MessageType, "a binary frame");
                        got += r.Count;
                        if (r.EndOfMessage) break;
                    }
                    var frame = new byte[got];
                    Array.Copy(buffer, frame, got);
                    return ServerMessage.Parse(MsgPackReader.DecodeMap(frame));
                });
            }

            public void Dispose()
            {
                try { _socket.Abort(); } catch (Exception) { }
                _socket.Dispose();
            }
        }

        readonly LiveClients _clients = new LiveClients();
        Relay _relay;
        readonly SentTypes _sent = new SentTypes();
        int _welcomes;

        [TearDown]
        public void Close()
        {
            _clients.CloseAll();
            if (_relay != null) _relay.Dispose();
            _relay = null;
            _sent.Clear();
            _welcomes = 0;
        }

        OmokageClient ConnectThroughRelay()
        {
            var server = new Uri(TestEnv.ServerUrl());
            _relay = new Relay(server);
            var client = _clients.Create("ws://127.0.0.1:" + _relay.Port + server.AbsolutePath, o =>
            {
                o.AutoReconnect = true;
                o.ReconnectInitialDelay = TimeSpan.FromMilliseconds(50);
                o.ReconnectMaxDelay = TimeSpan.FromMilliseconds(300);
            });
            _sent.Watch(client);
            client.Connected += w => Interlocked.Increment(ref _welcomes);
            Sync.Run(() => client.ConnectAsync());
            return client;
        }

        void WaitForWelcome(OmokageClient client, int before)
        {
            Sync.WaitUntil(() => Volatile.Read(ref _welcomes) > before && client.IsConnected, TimeSpan.FromSeconds(20), "the reconnection's welcome");
        }

        int Mark() { return _sent.Mark(); }

        List<string> SentSince(int mark) { return _sent.Since(mark); }

        static void AssertUnseen(IEnumerable<CandidateItem> items, HashSet<int> shown, string what)
        {
            foreach (var item in items)
                Assert.IsFalse(shown.Contains(item.Id), what + ": face #" + item.Id + " was shown before");
        }

        static void Shown(HashSet<int> shown, CandidatesMessage grid)
        {
            foreach (var item in grid.Items) shown.Add(item.Id);
        }

        [Test]
        public void TheSelectionGoesOn_AcrossADroppedAndAHalfOpenLink()
        {
            var client = ConnectThroughRelay();
            WelcomeMessage first = client.Welcome;
            Assert.AreEqual(Protocol.Minor, first.ProtocolMinor, "a v1.7 server");
            Assert.IsNotNull(first.Resume, "welcome.resume: the server keeps selections (serve --resume-minutes)");
            Assert.That(first.Resume.TtlS, Is.GreaterThan(0));
            Assert.IsNotNull(client.ResumeToken);

            var shown = new HashSet<int>();
            var selection = new SelectionSession(client);
            var grid = Sync.Run(() => selection.StartRandomAsync("pca", 11, Policies.Thompson));
            Shown(shown, grid);
            grid = Sync.Run(() => selection.ChooseAsync(grid.Items[3].Id));
            Shown(shown, grid);
            Sync.Run(() => selection.RateAsync(grid.Items[1].Id, 5));
            grid = Sync.Run(() => selection.SkipAsync());
            Shown(shown, grid);
            int chosen = grid.Items[2].Id;
            grid = Sync.Run(() => selection.ChooseAsync(chosen));
            Shown(shown, grid);
            Assert.AreEqual(4, grid.Step);

            // the Wi-Fi drops: the server sees the link die and keeps the selection; the reconnection presents the token
            int before = Volatile.Read(ref _welcomes);
            _relay.Cut();
            WaitForWelcome(client, before);
            Assert.AreEqual(true, client.Welcome.Resumed, "the server went on with the selection");
            Assert.AreEqual(first.SessionId, client.ResumedFrom);
            Assert.AreNotEqual(first.SessionId, client.SessionId, "on a new server session");
            int mark = Mark();
            Assert.AreEqual(RestoreOutcome.Resumed, Sync.Run(() => selection.RestoreAsync()));
            CollectionAssert.IsEmpty(SentSince(mark), "nothing is sent to go on: no start, no choose");
            Assert.AreEqual(4, selection.Current.Step, "the grid that was on screen, at its step (a rebuilt selection would be at 2)");
            CollectionAssert.AreEqual(grid.Items.Select(i => i.Id).ToList(), selection.Current.Items.Select(i => i.Id).ToList());
            Assert.AreEqual(chosen, selection.ChosenId);

            grid = Sync.Run(() => selection.SkipAsync());
            Assert.AreEqual(5, grid.Step, "the steps go on");
            AssertUnseen(grid.Items, shown, "after the resume, a skip");
            Shown(shown, grid);

            // the app is paused, the link goes half-open; on resume the probe drops it, and the next token is presented
            string second = client.SessionId;
            string token = client.ResumeToken;
            before = Volatile.Read(ref _welcomes);
            _relay.Freeze();
            Assert.IsFalse(Sync.Run(() => client.ProbeAsync(TimeSpan.FromSeconds(1))), "a half-open link does not answer");
            WaitForWelcome(client, before);
            Assert.AreNotEqual(token, client.ResumeToken, "each welcome gives a new token");
            Assert.AreEqual(true, client.Welcome.Resumed, "the old link was still open to the server: it is closed and its selection goes on here");
            Assert.AreEqual(second, client.ResumedFrom);
            Assert.AreEqual(RestoreOutcome.Resumed, Sync.Run(() => selection.RestoreAsync()));
            Assert.AreEqual(5, selection.Current.Step);
            int pick = selection.Current.Items[0].Id;
            grid = Sync.Run(() => selection.ChooseAsync(pick));
            Assert.AreEqual(6, grid.Step);
            Assert.AreEqual(pick, grid.Items[0].Id, "the chosen face first");
            AssertUnseen(grid.Items.Skip(1), shown, "after the second resume, a choose");

            DecidedMessage decided = Sync.Run(() => selection.DecideAsync(pick));
            Assert.AreEqual(6, decided.Steps, "the whole selection's steps, across both resumes");

            // after the decision there is nothing to go on with: the token is presented and the answer is resumed: false
            before = Volatile.Read(ref _welcomes);
            _relay.Cut();
            WaitForWelcome(client, before);
            Assert.AreEqual(false, client.Welcome.Resumed);
            Assert.IsNull(client.ResumedGrid);
            mark = Mark();
            Assert.AreEqual(RestoreOutcome.Decided, Sync.Run(() => selection.RestoreAsync()));
            CollectionAssert.IsEmpty(SentSince(mark));
            Assert.AreSame(decided, selection.LastDecision);
        }

        [Test]
        public void ABackWhoseReplyWasLost_IsTakenUpFromTheResumedGrid()
        {
            var client = ConnectThroughRelay();
            var selection = new SelectionSession(client);
            var grid = Sync.Run(() => selection.StartRandomAsync("pca", 29, null));
            int a = grid.Items[6].Id;
            CandidatesMessage second = Sync.Run(() => selection.ChooseAsync(a));
            CandidatesMessage third = Sync.Run(() => selection.ChooseAsync(second.Items[3].Id));
            Assert.AreEqual(3, third.Step);

            // the back reaches the server, its reply is lost, then the link drops
            _relay.Mute();
            var back = System.Threading.Tasks.Task.Run(() => selection.BackAsync());
            Sync.WaitUntil(() => _relay.DroppedFromServer > 0, TimeSpan.FromSeconds(10), "the server's reply to the back (dropped)");
            int before = Volatile.Read(ref _welcomes);
            _relay.Cut();
            Assert.Throws<OmokageConnectionException>(() => Sync.Run(() => back), "the back failed with the link");
            WaitForWelcome(client, before);
            Assert.AreEqual(true, client.Welcome.Resumed);
            Assert.AreEqual(2, client.ResumedGrid.Step, "the server took the back: it was at the grid before the last choose");
            Assert.AreSame(third, selection.Current, "nothing changed before the restore");

            int mark = Mark();
            Assert.AreEqual(RestoreOutcome.Resumed, Sync.Run(() => selection.RestoreAsync()));
            CollectionAssert.IsEmpty(SentSince(mark), "nothing is sent: the resumed grid is the back's reply");
            Assert.AreEqual(2, selection.Current.Step);
            CollectionAssert.AreEqual(second.Items.Select(i => i.Id).ToList(), selection.Current.Items.Select(i => i.Id).ToList());
            Assert.AreEqual(a, selection.ChosenId, "the face chosen on that grid");

            // the user picks on, and can go back further
            int c = selection.Current.Items[1].Id;
            Assert.AreEqual(3, Sync.Run(() => selection.ChooseAsync(c)).Step);
            Assert.AreEqual(2, Sync.Run(() => selection.BackAsync()).Step);
            Assert.AreEqual(1, Sync.Run(() => selection.BackAsync()).Step);
            CollectionAssert.AreEqual(grid.Items.Select(i => i.Id).ToList(), selection.Current.Items.Select(i => i.Id).ToList(), "the first grid");
        }

        [Test]
        public void ACalibration_GoesOnWithTheSelection_AndIsNotOfferedAgain()
        {
            var client = ConnectThroughRelay();
            Assert.AreEqual(GazeProfiles.None, client.GazeProfile, "no device, no participant: nothing corrects the gaze");
            Assert.IsFalse(client.GazeCalibrated, "so a calibration is worth offering");
            var selection = new SelectionSession(client);
            Sync.Run(() => selection.StartRandomAsync("pca", 5, null));
            Sync.Run(() => client.PingAsync());  // the clock the samples and the intervals are on
            CalibrationMessage calibration = Sync.Run(() => client.CalibrateBeginAsync(CalibrationPatterns.NinePoint, GazeWireSample.Eye));
            var run = new CalibrationRun(calibration);
            LiveCalibrationTests.LookAtTheTargets(client, run, run.Count, new Random(3));
            CalibratedMessage calibrated = Sync.Run(() => client.CalibrateEndAsync(run.Shown));
            Assert.That(calibrated.AccuracyDeg, Is.LessThan(0.5));

            int before = Volatile.Read(ref _welcomes);
            _relay.Cut();
            WaitForWelcome(client, before);
            Assert.AreEqual(true, client.Welcome.Resumed);
            Assert.AreEqual(GazeProfiles.Calibration, client.GazeProfile, "v1.7: the resumed selection's calibration corrects the gaze");
            Assert.IsTrue(client.GazeCalibrated, "no calibration is offered again");
            Assert.AreEqual(RestoreOutcome.Resumed, Sync.Run(() => selection.RestoreAsync()));
        }

        [Test]
        public void ASelectionTakenOverByAnotherConnection_IsNotReconnected_AndStartsAfreshOnRequest()
        {
            var client = ConnectThroughRelay();  // reconnects after 50 … 300 ms
            var states = new List<ConnectionState>();
            client.StateChanged += st => { lock (states) states.Add(st); };
            Exception lost = null;
            client.Disconnected += e => lost = e;
            var presented = new List<string>();
            client.Trace += t => { if (t.Outgoing && t.Message.GetString("type") == MessageTypes.Hello) lock (presented) presented.Add(t.Message.GetString("resume")); };
            var selection = new SelectionSession(client);
            var grid = Sync.Run(() => selection.StartRandomAsync("pca", 17, null));
            grid = Sync.Run(() => selection.ChooseAsync(grid.Items[4].Id));
            string first = client.SessionId;
            string token = client.ResumeToken;
            Assert.IsNotNull(token);
            int welcomes = Volatile.Read(ref _welcomes);

            // the token reaches another connection (another device or window), which presents it while the client's is open
            using (var other = new OtherConnection(TestEnv.ServerUrl()))
            {
                var welcome = (WelcomeMessage)other.Request(Requests.Hello(null, "omokage-unity-tests/other", null, Protocol.Version, Protocol.Minor,
                                                                            null, null, token));
                Assert.AreEqual(true, welcome.Resumed, "the other connection goes on with the selection");
                var resumed = (CandidatesMessage)other.Receive();
                Assert.AreEqual(2, resumed.Step);
                CollectionAssert.AreEqual(grid.Items.Select(i => i.Id).ToList(), resumed.Items.Select(i => i.Id).ToList());

                // the server closes the client's connection: 1000, "this selection was resumed on another connection"
                Sync.WaitUntil(() => client.State == ConnectionState.Superseded && Volatile.Read(ref lost) != null, TimeSpan.FromSeconds(10),
                               "the state Superseded, and Disconnected (raised after StateChanged)");
                Assert.IsInstanceOf<OmokageSupersededException>(lost, "Disconnected says why: " + lost);
                Assert.IsNull(client.ResumeToken, "the token is spent: the other connection holds the selection's new one");
                Thread.Sleep(2000);  // several reconnections' worth
                Assert.AreEqual(ConnectionState.Superseded, client.State, "nothing reconnects on its own");
                Assert.AreEqual(welcomes, Volatile.Read(ref _welcomes), "no welcome since");
                lock (presented) CollectionAssert.IsEmpty(presented, "no hello since");
                lock (states) CollectionAssert.AreEqual(new[] { ConnectionState.Superseded }, states);

                // the selection carries on over there
                var next = (CandidatesMessage)other.Request(Requests.Choose(null, resumed.Items[1].Id));
                Assert.AreEqual(3, next.Step);

                // the user asks for a new one here: a connection that presents no token, a new session, a new selection
                int mark = Mark();
                WelcomeMessage fresh = Sync.Run(() => client.StartAfreshAsync());
                Assert.AreEqual(ConnectionState.Connected, client.State);
                lock (presented) CollectionAssert.AreEqual(new string[] { null }, presented, "the fresh hello presents no token");
                Assert.IsNull(fresh.Resumed, "a hello without resume is not told about it");
                Assert.AreNotEqual(first, client.SessionId);
                Assert.IsNotNull(client.ResumeToken, "the new connection's own token");
                Assert.AreNotEqual(token, client.ResumeToken);
                Assert.IsNull(client.ResumedGrid);
                CandidatesMessage started = Sync.Run(() => selection.StartRandomAsync("pca", 17, null));
                Assert.AreEqual(1, started.Step, "a new selection");
                Assert.AreEqual(new[] { MessageTypes.Hello, MessageTypes.Start }, SentSince(mark).ToArray());

                // and the other connection keeps its selection: the fresh start took nothing from it
                Assert.AreEqual(4, ((CandidatesMessage)other.Request(Requests.Choose(null, next.Items[1].Id))).Step);
            }
        }

        [Test]
        public void AV1_6Client_IsGivenNoToken()
        {
            var old = _clients.Connect(TestEnv.ServerUrl(), o => o.ProtocolMinor = 6);
            Assert.IsNull(old.Welcome.Resume, "welcome.resume only to a client that announced minor 7");
            Assert.IsNull(old.ResumeToken);
            Assert.AreEqual(Protocol.Minor, old.Welcome.ProtocolMinor, "the server's minor, whatever the client's");
        }
    }
}
