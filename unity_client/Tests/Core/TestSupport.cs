using System;
using System.IO;
using System.Threading;
using System.Threading.Tasks;
using NUnit.Framework;

namespace Omokage.Client.Tests
{
    /// <summary>
    /// Where the tests find their inputs. Outside CI (e.g. in Unity's Test Runner) tests whose inputs are
    /// missing are ignored; with OMOKAGE_REQUIRE_LIVE=1 (set by .ci/csharp.sh) they fail instead.
    ///   OMOKAGE_VECTORS_DIR  tests/vectors (found by walking up from the working directory when unset)
    ///   OMOKAGE_SERVER_URL   ws://127.0.0.1:PORT/ws of a running `omokage serve`
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
            string here = Directory.GetCurrentDirectory();
            for (int i = 0; i < 8 && here != null; i++)
            {
                string candidate = Path.Combine(Path.Combine(here, "tests"), "vectors");
                if (File.Exists(Path.Combine(candidate, "index.json"))) return candidate;
                here = Path.GetDirectoryName(here);
            }
            return null;
        }

        public static string ServerUrl() { return Need("OMOKAGE_SERVER_URL", "the URL of a running omokage serve"); }
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
