// A server with a sketch model for the sketch part of the transcript, when the one .ci/csharp.sh started does not sketch
// (its models are pca and nmf): fits pca and sketch on OMOKAGE_CATALOG into a temporary repository with OMOKAGE_PYTHON
// and serves them on a free loopback port. The server runs under a small python parent that stops it when our stdin
// closes, so it never outlives this program. (The test assembly has its own copy, Tests/Editor/SketchServer.cs, with
// NUnit's skip/fail; the two are compiled into different programs.)
using System;
using System.Diagnostics;
using System.IO;
using System.Net;
using System.Net.Sockets;
using System.Text;
using System.Threading;

sealed class SketchServer : IDisposable
{
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

    readonly Process _process;
    readonly string _dir;
    readonly StringBuilder _log = new StringBuilder();

    public SketchServer(string python, string catalog)
    {
        _dir = Path.Combine(Path.GetTempPath(), "omokage-sketch-" + Guid.NewGuid().ToString("N").Substring(0, 8));
        Directory.CreateDirectory(_dir);
        File.WriteAllText(Path.Combine(_dir, "serve_sketch.py"), Launcher);
        var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        int port = ((IPEndPoint)listener.LocalEndpoint).Port;
        listener.Stop();
        _process = new Process
        {
            StartInfo = new ProcessStartInfo(python, "serve_sketch.py \"" + catalog + "\" models " + port)
            {
                UseShellExecute = false, RedirectStandardInput = true, RedirectStandardOutput = true, RedirectStandardError = true,
                WorkingDirectory = _dir,
            },
        };
        _process.OutputDataReceived += (s, e) => { if (e.Data != null) lock (_log) _log.AppendLine(e.Data); };
        _process.ErrorDataReceived += (s, e) => { if (e.Data != null) lock (_log) _log.AppendLine(e.Data); };
        _process.Start();
        _process.BeginOutputReadLine();
        _process.BeginErrorReadLine();
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(120);
        while (true)
        {
            if (_process.HasExited || DateTime.UtcNow > deadline)
            {
                Dispose();
                lock (_log) throw new InvalidOperationException("could not start a server with a sketch model:\n" + _log);
            }
            try
            {
                var request = (HttpWebRequest)WebRequest.Create("http://127.0.0.1:" + port + "/healthz");
                request.Timeout = 1000;
                using (var response = (HttpWebResponse)request.GetResponse())
                    if (response.StatusCode == HttpStatusCode.OK) break;
            }
            catch (WebException) { }
            Thread.Sleep(100);
        }
        Url = "ws://127.0.0.1:" + port + "/ws";
    }

    public string Url { get; private set; }

    public void Dispose()
    {
        try
        {
            _process.StandardInput.Close();
            if (!_process.WaitForExit(15000)) _process.Kill();
        }
        catch (Exception) { }
        _process.Dispose();
        try { Directory.Delete(_dir, true); }
        catch (Exception) { }
    }
}
