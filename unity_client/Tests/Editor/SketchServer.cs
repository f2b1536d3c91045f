using System;

namespace Omokage.Client.Tests
{
    /// <summary>
    /// The server of the live sketch tests: OMOKAGE_SERVER_URL, which must sketch (its welcome carries <c>sketch</c>:
    /// .ci/csharp.sh fits pca, nmf and sketch for it); otherwise the test is ignored, or fails under
    /// OMOKAGE_REQUIRE_LIVE=1, saying how to fit a sketch model.
    /// </summary>
    internal static class SketchServer
    {
        static readonly object Gate = new object();
        static bool? _sketches;

        public static string Url()
        {
            string url = TestEnv.ServerUrl();
            lock (Gate)
            {
                if (_sketches == null)
                {
                    using (var client = new OmokageClient(new OmokageClientOptions(url) { AutoReconnect = false, PingInterval = TimeSpan.Zero }))
                        _sketches = Sync.Run(() => client.ConnectAsync()).Sketch != null;
                }
            }
            if (_sketches != true)
                TestEnv.Missing("the server at " + url + " has no sketch model (no welcome.sketch); fit one with " +
                                "`omokage fit CATALOG --models pca,sketch` and serve it");
            return url;
        }
    }
}
