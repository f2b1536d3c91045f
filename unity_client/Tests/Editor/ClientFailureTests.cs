using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.Threading;
using System.Threading.Tasks;
using NUnit.Framework;
using Omokage.Client.MessagePack;

namespace Omokage.Client.Tests
{
    /// <summary>
    /// The client when the server misbehaves: silence (timeouts, a half-open link), cancellation, an oversized frame, and
    /// Dispose with requests in flight. Against <see cref="FakeServer"/>, so they need nothing outside the test.
    /// </summary>
    [TestFixture]
    public class ClientFailureTests
    {
        FakeServer _server;
        readonly List<OmokageClient> _clients = new List<OmokageClient>();

        [SetUp]
        public void StartServer() { _server = new FakeServer(); }

        [TearDown]
        public void StopAll()
        {
            foreach (var c in _clients) c.Dispose();
            _clients.Clear();
            _server.Dispose();
        }

        OmokageClient Client(Action<OmokageClientOptions> configure = null)
        {
            var options = new OmokageClientOptions(_server.Url)
            {
                AutoReconnect = false,
                PingInterval = TimeSpan.Zero,
                ConnectTimeout = TimeSpan.FromSeconds(5),
                RequestTimeout = TimeSpan.FromSeconds(20),
                ReconnectInitialDelay = TimeSpan.FromMilliseconds(50),
                ReconnectMaxDelay = TimeSpan.FromMilliseconds(200),
            };
            if (configure != null) configure(options);
            var client = new OmokageClient(options);
            _clients.Add(client);
            return client;
        }

        OmokageClient Connected(Action<OmokageClientOptions> configure = null)
        {
            var client = Client(configure);
            Sync.Run(() => client.ConnectAsync());
            return client;
        }

        [Test]
        public void RequestTimeout_IsAnOmokageTimeoutException_AndTheLinkStays()
        {
            var client = Connected(o => o.RequestTimeout = TimeSpan.FromMilliseconds(300));
            _server.Handler = (c, m) => m.GetString("type") == MessageTypes.Choose;  // swallow choose, answer the rest
            var watch = Stopwatch.StartNew();
            var e = Assert.Throws<OmokageTimeoutException>(() => Sync.Run(() => client.ChooseAsync(3)));
            Assert.That(watch.Elapsed.TotalSeconds, Is.InRange(0.25, 5.0));
            Assert.IsInstanceOf<OmokageException>(e, "catch (OmokageException) covers timeouts");
            Assert.AreEqual(TimeSpan.FromMilliseconds(300), e.Timeout);
            StringAssert.Contains("choose", e.Message);
            Assert.AreEqual(ConnectionState.Connected, client.State, "one slow reply does not drop the link");
            Assert.That(Sync.Run(() => client.PingAsync()).RoundTrip, Is.GreaterThanOrEqualTo(0.0));
        }

        [Test]
        public void HelloWithoutWelcome_TimesOutAsOmokageTimeoutException()
        {
            _server.Silent = true;
            var client = Client(o => o.ConnectTimeout = TimeSpan.FromMilliseconds(400));
            Assert.Throws<OmokageTimeoutException>(() => Sync.Run(() => client.ConnectAsync()));
            Assert.AreEqual(ConnectionState.Disconnected, client.State);
        }

        [Test]
        public void Cancellation_EndsTheWait_WithOperationCanceled()
        {
            var client = Connected();
            _server.Handler = (c, m) => m.GetString("type") == MessageTypes.Choose;
            using (var cts = new CancellationTokenSource())
            {
                Task<CandidatesMessage> pending = client.ChooseAsync(4, cts.Token);
                cts.CancelAfter(150);
                var watch = Stopwatch.StartNew();
                Assert.That(() => Sync.Run(() => pending), Throws.InstanceOf<OperationCanceledException>());
                Assert.That(watch.Elapsed.TotalSeconds, Is.LessThan(5.0), "not the 20 s request timeout");
            }
            using (var cancelled = new CancellationTokenSource())
            {
                cancelled.Cancel();
                int chooses = _server.CountReceived(MessageTypes.Choose);
                Assert.That(() => Sync.Run(() => client.ChooseAsync(5, cancelled.Token)), Throws.InstanceOf<OperationCanceledException>());
                Thread.Sleep(100);
                Assert.AreEqual(chooses, _server.CountReceived(MessageTypes.Choose), "an already cancelled request is not sent");
            }
            Assert.AreEqual(ConnectionState.Connected, client.State);
        }

        [Test]
        public void HalfOpenLink_AutomaticPingsNoticeIt_AndRequestsInFlightFail()
        {
            var client = Connected(o =>
            {
                o.PingInterval = TimeSpan.FromMilliseconds(100);
                o.PingTimeout = TimeSpan.FromMilliseconds(500);
            });
            var disconnected = new ManualResetEventSlim();
            Exception reason = null;
            client.Disconnected += e => { reason = e; disconnected.Set(); };
            _server.Silent = true;  // the server stops answering; TCP stays open
            var watch = Stopwatch.StartNew();
            Task<CandidatesMessage> inFlight = client.ChooseAsync(1);
            Assert.Throws<OmokageConnectionException>(() => Sync.Run(() => inFlight), "fails with the link, not after the 20 s timeout");
            Assert.That(watch.Elapsed.TotalSeconds, Is.LessThan(5.0));
            Assert.IsTrue(disconnected.Wait(TimeSpan.FromSeconds(5)));
            StringAssert.Contains("ping", reason.Message);
            Assert.AreEqual(ConnectionState.Disconnected, client.State, "AutoReconnect is off here");
        }

        [Test]
        public void HalfOpenLink_ProbeOnResume_DropsItAndReconnectsToANewSession()
        {
            var client = Connected(o => o.AutoReconnect = true);
            string first = client.SessionId;
            Assert.IsTrue(Sync.Run(() => client.ProbeAsync(TimeSpan.FromSeconds(2))), "a live link answers the probe");
            var welcomes = new List<WelcomeMessage>();
            client.Connected += w => { lock (welcomes) welcomes.Add(w); };
            _server.Silent = true;
            Assert.IsFalse(Sync.Run(() => client.ProbeAsync(TimeSpan.FromMilliseconds(300))), "a dead link does not");
            Assert.AreNotEqual(ConnectionState.Connected, client.State);
            _server.Silent = false;
            Sync.WaitUntil(() => { lock (welcomes) return welcomes.Count == 1; }, TimeSpan.FromSeconds(10), "a reconnection");
            Sync.WaitUntil(() => client.IsConnected, TimeSpan.FromSeconds(5), "Connected");
            Assert.AreNotEqual(first, client.SessionId, "a new connection is a new server session");
            Assert.AreEqual(2, _server.Connections);
        }

        [Test]
        public void Reconnecting_MeasuresTheServersClockAfresh()
        {
            // the server's clock is an hour ahead on the first connection and right on the next (another server, or a
            // restart): the offset must follow, not keep the old connection's best round trip
            double skew = 3600.0;
            _server.Handler = (c, m) =>
            {
                if (m.GetString("type") != MessageTypes.Ping) return false;
                c.Send(new MsgMap { { "type", "pong" }, { "rid", m.GetInt64("rid") }, { "t", m["t"] },
                                    { "server_time", ClockSync.LocalNow() + skew } });
                return true;
            };
            var client = Connected(o => o.AutoReconnect = true);
            Sync.Run(() => client.PingAsync());
            Assert.AreEqual(3600.0, client.Clock.Offset, 1.0);
            var welcomes = new List<WelcomeMessage>();
            client.Connected += w => { lock (welcomes) welcomes.Add(w); };
            skew = 0.0;
            _server.Silent = true;
            Assert.IsFalse(Sync.Run(() => client.ProbeAsync(TimeSpan.FromMilliseconds(300))), "the link is dropped");
            _server.Silent = false;
            Sync.WaitUntil(() => { lock (welcomes) return welcomes.Count == 1; }, TimeSpan.FromSeconds(10), "a reconnection");
            Sync.WaitUntil(() => client.IsConnected, TimeSpan.FromSeconds(5), "Connected");
            Sync.Run(() => client.PingAsync());
            Assert.AreEqual(0.0, client.Clock.Offset, 1.0, "the new server's clock, not the old offset");
        }

        [Test]
        public void SecondRetryLoop_WhileTheFirstBacksOff_NeitherFails()
        {
            // OmokageConnection on resume: the state is Disconnected during the first loop's back-off, so a second loop
            // starts and connects; the first loop's next attempt must leave it to that one, not fail "already connected"
            int hellos = 0;
            _server.Handler = (c, m) =>
            {
                if (m.GetString("type") != MessageTypes.Hello || Interlocked.Increment(ref hellos) > 1) return false;
                c.Send(new MsgMap { { "type", "error" }, { "rid", m.GetInt64("rid") }, { "code", ErrorCodes.Overloaded }, { "message", "busy" } });
                return true;  // the first hello is refused (retryable), the others welcomed
            };
            var client = Client(o =>
            {
                o.ReconnectInitialDelay = TimeSpan.FromMilliseconds(600);
                o.ReconnectMaxDelay = TimeSpan.FromMilliseconds(600);
            });
            var errors = new List<Exception>();
            client.BackgroundError += e => { lock (errors) errors.Add(e); };
            Task<WelcomeMessage> first = client.ConnectWithRetryAsync();
            Sync.WaitUntil(() => { lock (errors) return errors.Count == 1; }, TimeSpan.FromSeconds(5), "the first hello refused");
            Assert.AreEqual(ConnectionState.Disconnected, client.State, "the first loop backs off");

            WelcomeMessage second = Sync.Run(() => client.ConnectWithRetryAsync());
            Assert.IsTrue(client.IsConnected);
            WelcomeMessage afterBackOff = Sync.Run(() => first, TimeSpan.FromSeconds(5));
            Assert.AreSame(second, afterBackOff, "the first loop ends with the welcome the second got");
            Thread.Sleep(100);
            lock (errors) Assert.AreEqual(1, errors.Count, "only the refused hello is reported: " + string.Join("; ", errors));
            Assert.AreEqual(2, _server.Connections, "the first loop opened no second link");
            Assert.IsTrue(client.IsConnected);
        }

        [Test]
        public void SecondRetryLoop_WhileTheFirstConnects_LeavesItToThatOne()
        {
            _server.Handler = (c, m) =>
            {
                if (m.GetString("type") == MessageTypes.Hello) Thread.Sleep(400);  // a slow welcome
                return false;
            };
            var client = Client();
            Task<WelcomeMessage> first = client.ConnectWithRetryAsync();
            Sync.WaitUntil(() => client.State == ConnectionState.Connecting, TimeSpan.FromSeconds(5), "the first attempt under way");
            Assert.IsNull(Sync.Run(() => client.ConnectWithRetryAsync()), "no welcome yet: the first attempt has it in hand");
            WelcomeMessage welcome = Sync.Run(() => first);
            Assert.IsNotNull(welcome);
            Assert.AreSame(welcome, Sync.Run(() => client.ConnectWithRetryAsync()), "connected: the connection's welcome");
            Assert.Throws<InvalidOperationException>(() => Sync.Run(() => client.ConnectAsync()), "a single attempt still refuses");
            Assert.AreEqual(1, _server.Connections);
        }

        [Test]
        public void SendLayout_WithoutALink_FailsItsTask_InsteadOfThrowing()
        {
            // the gaze sender calls it from Update after seeing IsConnected; a link lost on another thread in between must
            // not throw out of Update
            var panels = new[] { new PanelPose { Pz = -1.5, Qw = 1, Width = 0.3, Height = 0.3 } };
            var client = Client();
            Task sent = null;
            Assert.DoesNotThrow(() => sent = client.SendLayoutAsync(panels), "never connected");
            Assert.Throws<OmokageConnectionException>(() => Sync.Run(() => sent));
            Sync.Run(() => client.ConnectAsync());
            Sync.Run(() => client.SendLayoutAsync(panels));
            _server.Dispose();  // the link goes
            Sync.WaitUntil(() => !client.IsConnected, TimeSpan.FromSeconds(5), "the link lost");
            Assert.DoesNotThrow(() => sent = client.SendLayoutAsync(panels), "lost");
            Assert.Throws<OmokageConnectionException>(() => Sync.Run(() => sent));
            Assert.Throws<ArgumentNullException>(() => client.SendLayoutAsync(null), "a caller's mistake still throws");
        }

        [Test]
        public void FrameOverMaxReceiveFrameBytes_DropsTheLink_AndFailsTheRequest()
        {
            var client = Connected(o => o.MaxReceiveFrameBytes = 64 * 1024);
            Exception reason = null;
            var disconnected = new ManualResetEventSlim();
            client.Disconnected += e => { reason = e; disconnected.Set(); };
            _server.Handler = (c, m) =>
            {
                if (m.GetString("type") != MessageTypes.Ping) return false;
                c.Send(new MsgMap { { "type", "pong" }, { "rid", m.GetInt64("rid") }, { "t", m["t"] }, { "server_time", 1.0 },
                                    { "padding", new byte[200 * 1024] } });
                return true;
            };
            var lost = Assert.Throws<OmokageConnectionException>(() => Sync.Run(() => client.PingAsync()));
            StringAssert.Contains("65536", lost.Message, "says the limit");
            Assert.IsTrue(disconnected.Wait(TimeSpan.FromSeconds(5)));
            Assert.IsInstanceOf<OmokageProtocolException>(reason);
            Assert.AreEqual(ConnectionState.Disconnected, client.State);
        }

        [Test]
        public void FrameAtMaxReceiveFrameBytes_IsAccepted()
        {
            var client = Connected(o => o.MaxReceiveFrameBytes = 256 * 1024);
            _server.Handler = (c, m) =>
            {
                if (m.GetString("type") != MessageTypes.Ping) return false;
                c.Send(new MsgMap { { "type", "pong" }, { "rid", m.GetInt64("rid") }, { "t", m["t"] }, { "server_time", 1.0 },
                                    { "padding", new byte[200 * 1024] } });
                return true;
            };
            Assert.That(Sync.Run(() => client.PingAsync()).RoundTrip, Is.GreaterThanOrEqualTo(0.0));
        }

        [Test]
        public void Dispose_WithRequestsInFlight_FailsThemAtOnce()
        {
            var client = Connected(o => o.AutoReconnect = true);
            _server.Silent = true;
            var inFlight = new List<Task>();
            for (int i = 0; i < 5; i++) inFlight.Add(client.ChooseAsync(i));
            inFlight.Add(client.PingAsync());
            inFlight.Add(client.FetchTexturesAsync(new[] { new string('a', 64) }));
            var states = new List<ConnectionState>();
            client.StateChanged += s => { lock (states) states.Add(s); };
            var watch = Stopwatch.StartNew();
            client.Dispose();
            foreach (Task t in inFlight)
            {
                Assert.That(() => Sync.Run(() => t, TimeSpan.FromSeconds(5)), Throws.InstanceOf<OmokageConnectionException>());
            }
            Assert.That(watch.Elapsed.TotalSeconds, Is.LessThan(5.0));
            Assert.AreEqual(ConnectionState.Closed, client.State);
            Thread.Sleep(300);
            Assert.AreEqual(ConnectionState.Closed, client.State, "no reconnection after Dispose");
            Assert.AreEqual(1, _server.Connections);
            Assert.Throws<OmokageConnectionException>(() => Sync.Run(() => client.PingAsync()));
            client.Dispose();  // twice is fine
        }
    }
}
