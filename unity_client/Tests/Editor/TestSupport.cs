using System;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using System.Runtime.CompilerServices;
using System.Threading;
using System.Threading.Tasks;
using NUnit.Framework;

namespace Omokage.Client.Tests
{
    /// <summary>
    /// Where the tests find their inputs. Outside CI (e.g. in Unity's Test Runner) live tests whose inputs are
    /// missing are ignored; with OMOKAGE_REQUIRE_LIVE=1 (set by .ci/csharp.sh) they fail instead.
    ///   OMOKAGE_VECTORS_DIR  golden vectors (default: Tests/Vectors~ inside the package, a copy of tests/vectors)
    ///   OMOKAGE_SERVER_URL   ws://127.0.0.1:PORT/ws of a running `omokage serve` (category "Live")
    ///   OMOKAGE_PYTHON, OMOKAGE_CATALOG, OMOKAGE_MODELS   to start servers of our own (restart test)
    /// Tests use only NUnit features common to NUnit 2.6 (Debian's nunit-console) and NUnit 3 (Unity).
    /// </summary>
    internal static class TestEnv
    {
        public static bool RequireAll { get { return Environment.GetEnvironmentVariable("OMOKAGE_REQUIRE_LIVE") == "1"; } }

        public static string Get(string name)
        {
            string v = Environment.GetEnvironmentVariable(name);
            return string.IsNullOrEmpty(v) ? null : v;
        }

        /// <summary>The variable's value, or the test is ignored (failed under OMOKAGE_REQUIRE_LIVE=1).</summary>
        public static string Need(string name, string what)
        {
            string v = Get(name);
            if (v == null) Missing(name + " is not set (" + what + ")");
            return v;
        }

        public static void Missing(string why)
        {
            if (RequireAll) Assert.Fail(why);
            Assert.Ignore(why);
        }

        public static string VectorsDir()
        {
            string dir = Get("OMOKAGE_VECTORS_DIR");
            if (dir != null) return dir;
            string package = PackagePaths.Root();
            return package == null ? null : Path.Combine(Path.Combine(package, "Tests"), "Vectors~");
        }

        public static string ServerUrl() { return Need("OMOKAGE_SERVER_URL", "the URL of a running omokage serve"); }
    }

    /// <summary>The package's folder: from this file's path, Unity's <c>Packages/com.omokage.client</c>, or a
    /// <c>unity_client/</c> above the working directory (CI runs the tests from build/csharp).</summary>
    internal static class PackagePaths
    {
        public const string Name = "com.omokage.client";

        public static string Root()
        {
            string fromSource = Path.GetDirectoryName(Path.GetDirectoryName(Path.GetDirectoryName(SourceFile())));
            foreach (string candidate in new[] { TestEnv.Get("OMOKAGE_PACKAGE_DIR"), fromSource, SafeFullPath("Packages/" + Name) })
                if (IsPackage(candidate)) return Path.GetFullPath(candidate);
            string here = Directory.GetCurrentDirectory();
            for (int i = 0; i < 8 && here != null; i++)
            {
                string candidate = Path.Combine(here, "unity_client");
                if (IsPackage(candidate)) return candidate;
                here = Path.GetDirectoryName(here);
            }
            return null;
        }

        static string SourceFile([CallerFilePath] string path = "") { return path; }

        static string SafeFullPath(string path)
        {
            try { return Path.GetFullPath(path); }
            catch (Exception) { return null; }
        }

        static bool IsPackage(string dir)
        {
            if (string.IsNullOrEmpty(dir)) return false;
            string manifest = Path.Combine(dir, "package.json");
            return File.Exists(manifest) && File.ReadAllText(manifest).Contains("\"" + Name + "\"");
        }
    }

    /// <summary>The types of the messages the watched clients sent, in order (a client's <c>Trace</c>): a test takes a
    /// <see cref="Mark"/> and later asserts what was sent <see cref="Since"/> it.</summary>
    internal sealed class SentTypes
    {
        readonly List<string> _types = new List<string>();

        public void Watch(OmokageClient client)
        {
            client.Trace += t => { if (t.Outgoing) lock (_types) _types.Add(t.Message.GetString("type")); };
        }

        public int Mark() { lock (_types) return _types.Count; }

        public List<string> Since(int mark) { lock (_types) return _types.Skip(mark).ToList(); }

        public void Clear() { lock (_types) _types.Clear(); }
    }

    /// <summary>The clients a live-server test opens (the tests' name, no reconnect, no pings, 20 s requests, then the
    /// test's own settings), closed together in its TearDown.</summary>
    internal sealed class LiveClients
    {
        readonly List<OmokageClient> _clients = new List<OmokageClient>();

        public OmokageClient Create(string url, Action<OmokageClientOptions> configure = null)
        {
            var options = new OmokageClientOptions(url)
            {
                ClientName = "omokage-unity-tests/" + Protocol.PackageVersion,
                AutoReconnect = false,
                PingInterval = TimeSpan.Zero,
                RequestTimeout = TimeSpan.FromSeconds(20),
            };
            if (configure != null) configure(options);
            var client = new OmokageClient(options);
            _clients.Add(client);
            return client;
        }

        public OmokageClient Connect(string url, Action<OmokageClientOptions> configure = null)
        {
            var client = Create(url, configure);
            Sync.Run(() => client.ConnectAsync());
            return client;
        }

        public void CloseAll()
        {
            foreach (var c in _clients)
            {
                try { c.CloseAsync().Wait(TimeSpan.FromSeconds(5)); }
                catch (Exception) { }
            }
            _clients.Clear();
        }
    }

    internal static class Sync
    {
        public static readonly TimeSpan DefaultTimeout = TimeSpan.FromSeconds(30);

        /// <summary>Runs async test code on the thread pool and waits, rethrowing the original exception.</summary>
        public static void Run(Func<Task> body, TimeSpan? timeout = null)
        {
            Task task = Task.Run(body);
            bool done;
            try { done = task.Wait(timeout ?? DefaultTimeout); }
            catch (AggregateException) { done = true; }  // rethrown unwrapped below
            if (!done) Assert.Fail("timed out after " + (timeout ?? DefaultTimeout).TotalSeconds + " s");
            task.GetAwaiter().GetResult();
        }

        public static T Run<T>(Func<Task<T>> body, TimeSpan? timeout = null)
        {
            Task<T> task = Task.Run(body);
            bool done;
            try { done = task.Wait(timeout ?? DefaultTimeout); }
            catch (AggregateException) { done = true; }  // rethrown unwrapped below
            if (!done) Assert.Fail("timed out after " + (timeout ?? DefaultTimeout).TotalSeconds + " s");
            return task.GetAwaiter().GetResult();
        }

        /// <summary>Polls until the condition holds; fails after the timeout.</summary>
        public static void WaitUntil(Func<bool> condition, TimeSpan timeout, string what)
        {
            var deadline = DateTime.UtcNow + timeout;
            while (!condition())
            {
                if (DateTime.UtcNow > deadline) Assert.Fail("timed out after " + timeout.TotalSeconds + " s waiting for " + what);
                Thread.Sleep(20);
            }
        }
    }
}
