using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.IO;
using System.Linq;
using System.Net;
using System.Net.Sockets;
using System.Text;
using System.Threading;
using System.Threading.Tasks;
using NUnit.Framework;

namespace Omokage.Client.Tests
{
    /// <summary>
    /// Tests that start (and kill) servers of their own: a token-protected server that is killed and
    /// restarted on the same port while a client is connected. Needs OMOKAGE_PYTHON (a python with omokage
    /// installed), OMOKAGE_CATALOG and OMOKAGE_MODELS.
    /// </summary>
    [TestFixture]
    [Category("Live")]
    public class ServerRestartTests
    {
        const string Token = "s3cret-test-token";

        sealed class ServerProcess : IDisposable
        {
            readonly Process _process;
            readonly StringBuilder _log = new StringBuilder();

            public ServerProcess(int port, string workDir)
            {
                Port = port;
                string python = TestEnv.Get("OMOKAGE_PYTHON") ?? "python3";
                var info = new ProcessStartInfo(python,
                    "-m omokage serve --catalog \"" + TestEnv.Get("OMOKAGE_CATALOG") + "\" --models \"" + TestEnv.Get("OMOKAGE_MODELS") +
                    "\" --host 127.0.0.1 --port " + port + " --token " + Token + " --log-level warning")
                {
                    UseShellExecute = false,
                    RedirectStandardOutput = true,
                    RedirectStandardError = true,
                    WorkingDirectory = workDir,
                };
                _process = new Process { StartInfo = info };
                _process.OutputDataReceived += (s, e) => { if (e.Data != null) lock (_log) _log.AppendLine(e.Data); };
                _process.ErrorDataReceived += (s, e) => { if (e.Data != null) lock (_log) _log.AppendLine(e.Data); };
                _process.Start();
                _process.BeginOutputReadLine();
                _process.BeginErrorReadLine();
                WaitHealthy(TimeSpan.FromSeconds(60));
            }

            public int Port { get; private set; }

            public string Url { get { return "ws://127.0.0.1:" + Port + "/ws"; } }

            public string Log { get { lock (_log) return _log.ToString(); } }

            void WaitHealthy(TimeSpan timeout)
            {
                var deadline = DateTime.UtcNow + timeout;
                while (DateTime.UtcNow < deadline)
                {
                    if (_process.HasExited) Assert.Fail("omokage serve exited with " + _process.ExitCode + ":\n" + Log);
                    try
                    {
                        var request = (HttpWebRequest)WebRequest.Create("http://127.0.0.1:" + Port + "/healthz");
                        request.Timeout = 1000;
                        using (var response = (HttpWebResponse)request.GetResponse())
                            if (response.StatusCode == HttpStatusCode.OK) return;
                    }
                    catch (WebException) { }
                    Thread.Sleep(100);
                }
                Assert.Fail("omokage serve did not answer /healthz within " + timeout.TotalSeconds + " s:\n" + Log);
            }

            /// <summary>Kills the server at once (SIGKILL on Mono/Unix): a crash, not a polite shutdown.</summary>
            public void Kill()
            {
                try
                {
                    if (!_process.HasExited) _process.Kill();
                    _process.WaitForExit(10000);
                }
                catch (InvalidOperationException) { }
            }

            public void Dispose()
            {
                Kill();
                _process.Dispose();
            }
        }

        string _workDir;
        readonly List<ServerProcess> _servers = new List<ServerProcess>();
        readonly List<OmokageClient> _clients = new List<OmokageClient>();

        [SetUp]
        public void Prepare()
        {
            TestEnv.Need("OMOKAGE_CATALOG", "a catalog directory for servers started by the tests");
            TestEnv.Need("OMOKAGE_MODELS", "a model repository for servers started by the tests");
            _workDir = Path.Combine(Path.GetTempPath(), "omokage-csharp-" + Guid.NewGuid().ToString("N").Substring(0, 8));
            Directory.CreateDirectory(_workDir);
        }

        [TearDown]
        public void Cleanup()
        {
            foreach (var c in _clients) c.Dispose();
            _clients.Clear();
            foreach (var s in _servers) s.Dispose();
            _servers.Clear();
            try { Directory.Delete(_workDir, true); }
            catch (Exception) { }
        }

        ServerProcess StartServer(int port)
        {
            var server = new ServerProcess(port, _workDir);
            _servers.Add(server);
            return server;
        }

        OmokageClient NewClient(string url, string token, bool reconnect, int maxReconnectAttempts = 0)
        {
            var options = new OmokageClientOptions(url)
            {
                Token = token,
                AutoReconnect = reconnect,
                ReconnectInitialDelay = TimeSpan.FromMilliseconds(200),
                ReconnectMaxDelay = TimeSpan.FromSeconds(1),
                PingInterval = TimeSpan.Zero,
                ConnectTimeout = TimeSpan.FromSeconds(5),
                MaxReconnectAttempts = maxReconnectAttempts,
            };
            var client = new OmokageClient(options);
            _clients.Add(client);
            return client;
        }

        static int FreePort()
        {
            var listener = new TcpListener(IPAddress.Loopback, 0);
            listener.Start();
            int port = ((IPEndPoint)listener.LocalEndpoint).Port;
            listener.Stop();
            return port;
        }

        [Test]
        public void Token_WrongOrMissingIsUnauthorized_AndNotRetried()
        {
            var server = StartServer(FreePort());
            var wrong = NewClient(server.Url, "wrong", false);
            var e = Assert.Throws<OmokageServerException>(() => Sync.Run(() => wrong.ConnectAsync()));
            Assert.AreEqual(ErrorCodes.Unauthorized, e.Code);
            var missing = NewClient(server.Url, null, false);
            e = Assert.Throws<OmokageServerException>(() => Sync.Run(() => missing.ConnectWithRetryAsync()));
            Assert.AreEqual(ErrorCodes.Unauthorized, e.Code, "ConnectWithRetryAsync gives up on unauthorized");
            var right = NewClient(server.Url, Token, false);
            Assert.AreEqual(1, Sync.Run(() => right.ConnectAsync()).ProtocolVersion);
        }

        [Test]
        public void Reconnects_WithANewHello_WhenTheServerRestarts()
        {
            int port = FreePort();
            var server = StartServer(port);
            var client = NewClient(server.Url, Token, true);
            var welcomes = new List<WelcomeMessage>();
            var states = new List<ConnectionState>();
            client.Connected += w => { lock (welcomes) welcomes.Add(w); };
            client.StateChanged += s => { lock (states) states.Add(s); };

            WelcomeMessage first = Sync.Run(() => client.ConnectAsync());
            var grid = Sync.Run(() => client.StartRandomAsync(first.Algorithms[0], 4));
            var hashes = grid.Items.Select(i => i.Texture).ToList();
            Sync.Run(() => client.FetchTexturesAsync(hashes));

            server.Kill();
            Sync.WaitUntil(() => client.State != ConnectionState.Connected, TimeSpan.FromSeconds(10), "the client to notice the server is gone");
            var down = Assert.Throws<OmokageConnectionException>(() => Sync.Run(() => client.ChooseAsync(grid.Items[0].Id)));
            StringAssert.Contains("not connected", down.Message);
            Thread.Sleep(600);  // a few failed attempts with back-off while the server is down
            Assert.AreNotEqual(ConnectionState.Connected, client.State);

            StartServer(port);
            Sync.WaitUntil(() => { lock (welcomes) return welcomes.Count >= 2; }, TimeSpan.FromSeconds(30), "a new welcome after the restart");
            Sync.WaitUntil(() => client.State == ConnectionState.Connected, TimeSpan.FromSeconds(5), "Connected");
            WelcomeMessage second;
            lock (welcomes) second = welcomes[welcomes.Count - 1];
            Assert.AreNotEqual(first.SessionId, second.SessionId, "a reconnection is a new server session");
            Assert.AreEqual(second.SessionId, client.SessionId);
            lock (states)
            {
                Assert.Contains(ConnectionState.Reconnecting, states);
                Assert.AreEqual(ConnectionState.Connected, states[states.Count - 1]);
            }

            // the selection goes on: the restarted server rebuilt it from its event log (protocol v1.7, same log folder)
            Assert.AreEqual(true, second.Resumed, "the restarted server went on with the selection");
            var next = Sync.Run(() => client.ChooseAsync(grid.Items[0].Id));
            Assert.AreEqual(2, next.Step);
            Assert.AreEqual(grid.Items[0].Id, next.Items[0].Id);
            // a new one starts as before, and the texture cache survives
            var fresh = Sync.Run(() => client.StartRandomAsync(second.Algorithms[0], 4));
            long before = client.HashesRequested;
            var result = Sync.Run(() => client.FetchTexturesAsync(fresh.Items.Select(i => i.Texture)));
            Assert.AreEqual(9, result.FromCache, "same seed, same faces, all cached across the reconnection");
            Assert.AreEqual(before, client.HashesRequested);
        }

        [Test]
        public void Disconnected_AfterTheLastAttempt_LetsItsHandlerConnectAgain()
        {
            // the reconnect loop gave up: a StateChanged(Disconnected) handler that connects again at once must not be
            // told "already disconnected" (the loop still counted as reconnecting when it raised the event)
            int port = FreePort();
            var server = StartServer(port);
            var client = NewClient(server.Url, Token, true, maxReconnectAttempts: 2);
            Exception fromHandler = null;
            Task<WelcomeMessage> again = null;
            var handled = new ManualResetEventSlim();
            client.StateChanged += s =>
            {
                if (s != ConnectionState.Disconnected || handled.IsSet) return;
                try { again = client.ConnectAsync(); }
                catch (Exception e) { fromHandler = e; }
                handled.Set();
            };
            Sync.Run(() => client.ConnectAsync());
            server.Kill();
            Assert.IsTrue(handled.Wait(TimeSpan.FromSeconds(30)), "Disconnected after the last attempt");
            Assert.IsNull(fromHandler, "ConnectAsync from the handler: " + fromHandler);
            var failed = Assert.Throws<OmokageConnectionException>(() => Sync.Run(() => again), "the server is still down");
            StringAssert.DoesNotContain("already", failed.Message);
            StartServer(port);
            Assert.AreEqual(1, Sync.Run(() => client.ConnectAsync()).ProtocolVersion, "and once it is back, it connects");
        }
    }
}
