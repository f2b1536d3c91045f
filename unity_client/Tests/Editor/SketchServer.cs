using System;
using System.Diagnostics;
using System.IO;
using System.Net;
using System.Net.Sockets;
using System.Text;
using System.Threading;

namespace Omokage.Client.Tests
{
    /// <summary>
    /// A server that sketches (protocol v1.3 with a sketch model) for the live sketch tests: OMOKAGE_SERVER_URL when its
    /// welcome carries <c>sketch</c>, else one started here, once per test run, from OMOKAGE_CATALOG with a
    /// <c>pca</c> and <c>sketch</c> model fitted into a temporary repository (needs OMOKAGE_PYTHON: a python with
    /// omokage). The server runs under a small python parent that stops it when our stdin closes, so it never outlives
    /// the test process, however that ends.
    /// </summary>
    internal static class SketchServer
    {
        static readonly object Gate = new object();
        static string _url;
        static string _failure;
        static Process _process;
        static string _dir;
        static readonly StringBuilder Log = new StringBuilder();

        // fit pca and sketch (the sketch model reuses the PCA), serve, and stop serving when stdin closes
        const string Launcher = @"import subprocess, sys
from omokage.features.fitting import fit_models
catalog, models, port = sys.argv[1:4]
fit_models(catalog, models, ['pca', 'sketch'], progress=False)
server = subprocess.Popen([sys.executable, '-m', 'omokage', 'serve', '--catalog', catalog, '--models', models,
                           '--host', '127.0.0.1', '--port', port, '--log-level', 'warning'])
try:
    sys.stdin.read()
finally:
    server.terminate()
    try:
        server.wait(10)
    except subprocess.TimeoutExpired:
        server.kill()
";

        /// <summary>The URL of a server that sketches, or the test is ignored (failed under OMOKAGE_REQUIRE_LIVE=1).</summary>
        public static string Url()
        {
            lock (Gate)
            {
                if (_url != null) return _url;
                if (_failure != null) TestEnv.Missing(_failure);
                string shared = TestEnv.ServerUrl();
                if (Sketches(shared)) return _url = shared;
                string python = TestEnv.Get("OMOKAGE_PYTHON");
                string catalog = TestEnv.Get("OMOKAGE_CATALOG");
                if (python == null || catalog == null)
                    TestEnv.Missing("the server at " + shared + " does not sketch (no welcome.sketch), and OMOKAGE_PYTHON and " +
                                    "OMOKAGE_CATALOG are not set to start one that does");
                try
                {
                    _url = Start(python, catalog);
                }
                catch (Exception e)
                {
                    _failure = "could not start a server with a sketch model: " + e.Message + "\n" + LogText();
                    TestEnv.Missing(_failure);
                }
                return _url;
            }
        }

        static bool Sketches(string url)
        {
            using (var client = new OmokageClient(new OmokageClientOptions(url) { AutoReconnect = false, PingInterval = TimeSpan.Zero }))
            {
                WelcomeMessage welcome = Sync.Run(() => client.ConnectAsync());
                return welcome.Sketch != null;
            }
        }

        static string LogText() { lock (Log) return Log.ToString(); }

        static string Start(string python, string catalog)
        {
            _dir = Path.Combine(Path.GetTempPath(), "omokage-sketch-" + Guid.NewGuid().ToString("N").Substring(0, 8));
            Directory.CreateDirectory(_dir);
            string launcher = Path.Combine(_dir, "serve_sketch.py");
            File.WriteAllText(launcher, Launcher);
            int port = FreePort();
            var info = new ProcessStartInfo(python, "\"" + launcher + "\" \"" + catalog + "\" \"" + Path.Combine(_dir, "models") + "\" " + port)
            {
                UseShellExecute = false,
                RedirectStandardInput = true,
                RedirectStandardOutput = true,
                RedirectStandardError = true,
                WorkingDirectory = _dir,
            };
            _process = new Process { StartInfo = info };
            _process.OutputDataReceived += (s, e) => { if (e.Data != null) lock (Log) Log.AppendLine(e.Data); };
            _process.ErrorDataReceived += (s, e) => { if (e.Data != null) lock (Log) Log.AppendLine(e.Data); };
            _process.Start();
            _process.BeginOutputReadLine();
            _process.BeginErrorReadLine();
            AppDomain.CurrentDomain.DomainUnload += (s, e) => Stop();
            AppDomain.CurrentDomain.ProcessExit += (s, e) => Stop();
            WaitHealthy(port, TimeSpan.FromSeconds(120));
            return "ws://127.0.0.1:" + port + "/ws";
        }

        static int FreePort()
        {
            var listener = new TcpListener(IPAddress.Loopback, 0);
            listener.Start();
            int port = ((IPEndPoint)listener.LocalEndpoint).Port;
            listener.Stop();
            return port;
        }

        static void WaitHealthy(int port, TimeSpan timeout)
        {
            var deadline = DateTime.UtcNow + timeout;
            while (DateTime.UtcNow < deadline)
            {
                if (_process.HasExited) throw new InvalidOperationException("the launcher exited with " + _process.ExitCode);
                try
                {
                    var request = (HttpWebRequest)WebRequest.Create("http://127.0.0.1:" + port + "/healthz");
                    request.Timeout = 1000;
                    using (var response = (HttpWebResponse)request.GetResponse())
                        if (response.StatusCode == HttpStatusCode.OK) return;
                }
                catch (WebException) { }
                Thread.Sleep(100);
            }
            throw new TimeoutException("omokage serve did not answer /healthz within " + timeout.TotalSeconds + " s");
        }

        /// <summary>Stops the server (closing the launcher's stdin) and removes its files.</summary>
        public static void Stop()
        {
            lock (Gate)
            {
                var process = _process;
                _process = null;
                if (process != null)
                {
                    try
                    {
                        process.StandardInput.Close();
                        if (!process.WaitForExit(15000)) process.Kill();
                    }
                    catch (Exception) { }
                    process.Dispose();
                }
                if (_dir != null)
                {
                    try { Directory.Delete(_dir, true); }
                    catch (Exception) { }
                    _dir = null;
                }
            }
        }
    }
}
