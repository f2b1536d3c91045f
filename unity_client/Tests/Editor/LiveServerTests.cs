using System;
using System.Collections.Generic;
using System.Linq;
using System.Threading;
using System.Threading.Tasks;
using NUnit.Framework;
using Omokage.Client.MessagePack;

namespace Omokage.Client.Tests
{
    /// <summary>The C# client against a real `omokage serve` (OMOKAGE_SERVER_URL), as .ci/csharp.sh starts it.</summary>
    [TestFixture]
    [Category("Live")]
    public class LiveServerTests
    {
        readonly LiveClients _clients = new LiveClients();

        OmokageClient Connect(Action<OmokageClientOptions> configure = null)
        {
            return _clients.Connect(TestEnv.ServerUrl(), configure);
        }

        OmokageClient NewClient(Action<OmokageClientOptions> configure = null)
        {
            return _clients.Create(TestEnv.ServerUrl(), configure);
        }

        [TearDown]
        public void CloseClients() { _clients.CloseAll(); }

        static string Algorithm(OmokageClient c)
        {
            return c.Welcome.Algorithms.Contains("pca") ? "pca" : c.Welcome.Algorithms[0];
        }

        [Test]
        public void Welcome_DescribesTheServer()
        {
            var states = new List<ConnectionState>();
            var client = NewClient();
            client.StateChanged += s => { lock (states) states.Add(s); };
            WelcomeMessage w = Sync.Run(() => client.ConnectAsync());
            Assert.AreEqual(1, w.ProtocolVersion);
            StringAssert.StartsWith("omokage/", w.Server);
            Assert.IsFalse(string.IsNullOrEmpty(w.SessionId));
            Assert.AreEqual(9, w.Limits.GridSize);
            Assert.That(w.Limits.MaxHashesPerRequest, Is.GreaterThanOrEqualTo(1));
            Assert.That(w.Catalog.Count, Is.GreaterThanOrEqualTo(18));
            Assert.That(w.Catalog.ImageSize, Is.GreaterThan(0));
            Assert.That(w.Algorithms.Count, Is.GreaterThan(0));
            Assert.That(w.ProtocolMinor, Is.GreaterThanOrEqualTo(1), "a v1.1 server (or newer: minors are additive)");
            Assert.That(w.Policies, Has.Member(Policies.Study));
            Assert.That(w.Policies, Has.Member(w.DefaultPolicy));
            Assert.AreEqual(ConnectionState.Connected, client.State);
            Assert.AreEqual(w.SessionId, client.SessionId);
            lock (states) CollectionAssert.AreEqual(new[] { ConnectionState.Connecting, ConnectionState.Connected }, states);
        }

        /// <summary>A v1.0 client (no <c>protocol_minor</c>) gets exactly the v1.0 grids: the server stays compatible.</summary>
        [Test]
        public void WholeSession_TexturesIncluded()
        {
            var client = Connect(o => o.ProtocolMinor = null);
            string algorithm = Algorithm(client);
            int size = client.Welcome.Catalog.ImageSize;
            var seen = new HashSet<int>();

            CandidatesMessage grid = Sync.Run(() => client.StartRandomAsync(algorithm, 7));
            Assert.AreEqual(1, grid.Step);
            Assert.AreEqual(algorithm, grid.Algorithm);
            Assert.AreEqual(9, grid.Items.Count);
            foreach (var item in grid.Items)
            {
                Assert.IsNull(item.Distance, "random picks have no distance");
                Assert.IsTrue(seen.Add(item.Id), "no face twice");
                Assert.IsTrue(Hashing.IsHash(item.Texture), "texture is a hash: " + item.Texture);
                Assert.IsFalse(string.IsNullOrEmpty(item.Title));
                Assert.IsFalse(string.IsNullOrEmpty(item.Url));
            }
            CheckTextures(client, grid, size);

            for (int step = 2; step <= 3; step++)
            {
                int chosen = grid.Items[step == 2 ? 4 : 8].Id;
                grid = Sync.Run(() => client.ChooseAsync(chosen));
                Assert.AreEqual(step, grid.Step);
                Assert.AreEqual(9, grid.Items.Count);
                Assert.AreEqual(chosen, grid.Items[0].Id, "the chosen face comes first");
                Assert.AreEqual(0.0, grid.Items[0].Distance, "at distance 0");
                double previous = 0;
                for (int i = 1; i < grid.Items.Count; i++)
                {
                    Assert.IsTrue(grid.Items[i].Distance.HasValue, "neighbours have a distance");
                    Assert.That(grid.Items[i].Distance.Value, Is.GreaterThanOrEqualTo(previous), "neighbours nearest first");
                    previous = grid.Items[i].Distance.Value;
                    Assert.IsTrue(seen.Add(grid.Items[i].Id), "no face twice in one selection: " + grid.Items[i].Id);
                }
                CheckTextures(client, grid, size);
            }

            int decidedId = grid.Items[0].Id;
            DecidedMessage decided = Sync.Run(() => client.DecideAsync(decidedId));
            Assert.AreEqual(decidedId, decided.Item.Id);
            Assert.AreEqual(3, decided.Steps);
            Assert.AreEqual(grid.Items[0].Url, decided.Item.Url);
            Assert.AreEqual(grid.Items[0].Texture, decided.Item.Texture);

            var after = Assert.Throws<OmokageServerException>(() => Sync.Run(() => client.ChooseAsync(decidedId)));
            Assert.AreEqual(ErrorCodes.WrongState, after.Code, "nothing to choose after decide");
        }

        [Test]
        public void EveryOfferedPolicy_StartsChoosesSkipsRatesAndDecides()
        {
            var client = Connect();
            string algorithm = Algorithm(client);
            CandidatesMessage byDefault = Sync.Run(() => client.StartRandomAsync(algorithm, 3));
            Assert.AreEqual(client.Welcome.DefaultPolicy, byDefault.Policy, "a v1.1 start without a policy gets the default");
            foreach (string policy in client.Welcome.Policies)
            {
                var grid = Sync.Run(() => client.StartRandomAsync(algorithm, 3, policy));
                Assert.AreEqual(policy, grid.Policy);
                Assert.AreEqual(9, grid.Items.Count);
                bool belief = policy != Policies.Study && policy != Policies.Random;
                foreach (var item in grid.Items)
                {
                    Assert.AreEqual(belief, item.Probability.HasValue, policy + ": probability only with a belief");
                    if (item.Probability.HasValue) Assert.That(item.Probability.Value, Is.InRange(0.0, 1.0));
                }
                int rated = grid.Items[1].Id;
                RatedMessage ack = Sync.Run(() => client.RateAsync(rated, 4));
                Assert.AreEqual(rated, ack.Id);
                Assert.AreEqual(4, ack.Rating);

                CandidatesMessage skipped = Sync.Run(() => client.SkipAsync());
                Assert.AreEqual(2, skipped.Step);
                Assert.AreEqual(policy, skipped.Policy);
                Assert.AreEqual(9, skipped.Items.Count);
                Assert.IsFalse(skipped.Items.Any(i => grid.Items.Any(g => g.Id == i.Id)), "skip shows only unseen faces");

                int chosen = skipped.Items[5].Id;
                var next = Sync.Run(() => client.ChooseAsync(chosen));
                Assert.AreEqual(3, next.Step);
                Assert.AreEqual(chosen, next.Items[0].Id, "the chosen face comes first, whatever the policy");
                DecidedMessage decided = Sync.Run(() => client.DecideAsync(chosen));
                Assert.AreEqual(3, decided.Steps);
                var late = Assert.Throws<OmokageServerException>(() => Sync.Run(() => client.SkipAsync()));
                Assert.AreEqual(ErrorCodes.WrongState, late.Code, "nothing to skip after decide");
            }
        }

        [Test]
        public void V1_1Errors_MapToTheirCodes()
        {
            var client = Connect();
            var skipFirst = Assert.Throws<OmokageServerException>(() => Sync.Run(() => client.SkipAsync()));
            Assert.AreEqual(ErrorCodes.WrongState, skipFirst.Code, "skip before start");
            var rateFirst = Assert.Throws<OmokageServerException>(() => Sync.Run(() => client.RateAsync(0, 3)));
            Assert.AreEqual(ErrorCodes.WrongState, rateFirst.Code, "rate before start");

            string algorithm = Algorithm(client);
            var unknown = Assert.Throws<OmokageServerException>(() => Sync.Run(() => client.StartRandomAsync(algorithm, null, "oracle")));
            Assert.AreEqual(ErrorCodes.BadField, unknown.Code);
            foreach (string offered in client.Welcome.Policies)
                StringAssert.Contains(offered, unknown.ServerMessage, "the error names the policies on offer");

            var grid = Sync.Run(() => client.StartRandomAsync(algorithm, 5, Policies.Study));
            int neverShown = Enumerable.Range(0, client.Welcome.Catalog.Count).First(id => grid.Items.All(i => i.Id != id));
            var notShown = Assert.Throws<OmokageServerException>(() => Sync.Run(() => client.RateAsync(neverShown, 2)));
            Assert.AreEqual(ErrorCodes.NotFound, notShown.Code);
            Assert.Throws<ArgumentOutOfRangeException>(() => client.RateAsync(grid.Items[0].Id, 6), "checked before sending");
            var outOfRange = Assert.Throws<OmokageServerException>(() => Sync.Run(() => client.RequestAsync(
                rid => new MsgMap { { "type", "rate" }, { "rid", (long)rid }, { "id", (long)grid.Items[0].Id }, { "rating", 6L } }, null)));
            Assert.AreEqual(ErrorCodes.BadField, outOfRange.Code);
            StringAssert.Contains("rating", outOfRange.ServerMessage);
            Assert.AreEqual(2, Sync.Run(() => client.SkipAsync()).Step, "the selection goes on");
        }

        static void CheckTextures(OmokageClient client, CandidatesMessage grid, int size)
        {
            TextureFetchResult result = Sync.Run(() => client.FetchTexturesAsync(grid.Items.Select(i => i.Texture)));
            Assert.AreEqual(0, result.NotFound.Count);
            foreach (var item in grid.Items)
            {
                TextureData t;
                Assert.IsTrue(result.Textures.TryGetValue(item.Texture, out t), "texture of item " + item.Id);
                Assert.AreEqual(item.Texture, t.Hash);
                Assert.AreEqual(t.Hash, Hashing.Sha256Hex(t.Data), "SHA-256 of the data is the hash");
                string sniffed = Hashing.SniffImageFormat(t.Data);
                Assert.IsNotNull(sniffed, "texture data is PNG or JPEG by its magic bytes");
                Assert.AreEqual(t.Format, sniffed, "format field matches the bytes");
                Assert.AreEqual(size, t.Width);
                Assert.AreEqual(size, t.Height);
            }
        }

        [Test]
        public void TextureCache_OnlyMissingHashesAreFetched()
        {
            var client = Connect();
            var grid = Sync.Run(() => client.StartRandomAsync(Algorithm(client), 11));
            var hashes = grid.Items.Select(i => i.Texture).ToList();

            var first = Sync.Run(() => client.FetchTexturesAsync(hashes));
            Assert.AreEqual(9, first.Fetched);
            Assert.AreEqual(0, first.FromCache);
            Assert.AreEqual(9, client.HashesRequested);
            Assert.AreEqual(1, client.TextureRequests);

            var again = Sync.Run(() => client.FetchTexturesAsync(hashes));
            Assert.AreEqual(0, again.Fetched, "nothing refetched");
            Assert.AreEqual(9, again.FromCache);
            Assert.AreEqual(9, client.HashesRequested);
            Assert.AreEqual(1, client.TextureRequests, "no request at all");

            var next = Sync.Run(() => client.ChooseAsync(grid.Items[0].Id));
            var third = Sync.Run(() => client.FetchTexturesAsync(next.Items.Select(i => i.Texture)));
            Assert.AreEqual(1, third.FromCache, "the chosen face is cached");
            Assert.AreEqual(8, third.Fetched, "only the 8 new faces are requested");
            Assert.AreEqual(17, client.HashesRequested);
            Assert.AreEqual(9, third.Textures.Count);
        }

        [Test]
        public void Textures_UnknownHash_IsReportedMissing_KnownOnesStillArrive()
        {
            var client = Connect();
            var grid = Sync.Run(() => client.StartRandomAsync(Algorithm(client), 3));
            string unknown = new string('0', 64);
            var hashes = new List<string> { grid.Items[0].Texture, unknown, grid.Items[1].Texture };
            var result = Sync.Run(() => client.FetchTexturesAsync(hashes));
            CollectionAssert.AreEqual(new[] { unknown }, result.NotFound);
            Assert.AreEqual(2, result.Textures.Count);
            Assert.IsTrue(client.Textures.Contains(grid.Items[0].Texture));

            // the raw reply: a texture.get of only unknown hashes is error not_found with the request's rid
            var e = Assert.Throws<OmokageServerException>(() => Sync.Run(() => client.RequestAsync(rid => Requests.TextureGet(rid, new[] { unknown }), MessageTypes.Texture)));
            Assert.AreEqual(ErrorCodes.NotFound, e.Code);
            Assert.IsTrue(e.Rid.HasValue);
            // and the connection is still usable
            Assert.AreEqual(9, Sync.Run(() => client.ChooseAsync(grid.Items[2].Id)).Items.Count);
        }

        [Test]
        public void ErrorReplies_MapToExceptionsWithTheirCode()
        {
            var client = Connect();
            var before = Assert.Throws<OmokageServerException>(() => Sync.Run(() => client.ChooseAsync(0)));
            Assert.AreEqual(ErrorCodes.WrongState, before.Code, "choose before start");

            var unknownAlgorithm = Assert.Throws<OmokageServerException>(() => Sync.Run(() => client.StartRandomAsync("no-such-space")));
            Assert.AreEqual(ErrorCodes.BadField, unknownAlgorithm.Code);
            StringAssert.Contains("no-such-space", unknownAlgorithm.ServerMessage);

            var grid = Sync.Run(() => client.StartRandomAsync(Algorithm(client), 5));
            int notInGrid = Enumerable.Range(0, client.Welcome.Catalog.Count).First(id => grid.Items.All(i => i.Id != id));
            var notFound = Assert.Throws<OmokageServerException>(() => Sync.Run(() => client.ChooseAsync(notInGrid)));
            Assert.AreEqual(ErrorCodes.NotFound, notFound.Code);
            Assert.IsTrue(notFound.Rid.HasValue, "the error echoes the request's rid");
            StringAssert.Contains(notInGrid.ToString(), notFound.ServerMessage);
            var decideNotFound = Assert.Throws<OmokageServerException>(() => Sync.Run(() => client.DecideAsync(notInGrid)));
            Assert.AreEqual(ErrorCodes.NotFound, decideNotFound.Code);

            var helloTwice = Assert.Throws<OmokageServerException>(() => Sync.Run(() => client.RequestAsync(rid => Requests.Hello(rid, "again"), MessageTypes.Welcome)));
            Assert.AreEqual(ErrorCodes.WrongState, helloTwice.Code);

            var gaze = Assert.Throws<OmokageServerException>(() => Sync.Run(() => client.RequestAsync(rid => new MsgMap { { "type", "gaze" }, { "rid", (long)rid } }, null)));
            Assert.AreEqual(ErrorCodes.UnknownType, gaze.Code, "an unknown type (v1.2's gaze message is gaze.batch)");

            var tooMany = new List<string>();
            for (int i = 0; i <= client.Welcome.Limits.MaxHashesPerRequest; i++) tooMany.Add(i.ToString("x64"));
            var tooLarge = Assert.Throws<OmokageServerException>(() => Sync.Run(() => client.RequestAsync(rid => Requests.TextureGet(rid, tooMany), MessageTypes.Texture)));
            Assert.AreEqual(ErrorCodes.TooLarge, tooLarge.Code);

            var badField = Assert.Throws<OmokageServerException>(() => Sync.Run(() => client.RequestAsync(rid => new MsgMap { { "type", "choose" }, { "rid", (long)rid }, { "id", "seven" } }, null)));
            Assert.AreEqual(ErrorCodes.BadField, badField.Code);
            StringAssert.Contains("id", badField.ServerMessage);

            // after all that the selection goes on
            Assert.AreEqual(2, Sync.Run(() => client.ChooseAsync(grid.Items[1].Id)).Step);
        }

        [Test]
        public void ProtocolVersionMismatch_IsBadFieldNamingBothVersions()
        {
            var client = NewClient(o => o.ProtocolVersion = 2);
            var e = Assert.Throws<OmokageServerException>(() => Sync.Run(() => client.ConnectAsync()));
            Assert.AreEqual(ErrorCodes.BadField, e.Code);
            StringAssert.Contains("2", e.ServerMessage);
            StringAssert.Contains("1", e.ServerMessage);
            Assert.AreEqual(ConnectionState.Disconnected, client.State);
            // retrying cannot fix it
            var retry = Assert.Throws<OmokageServerException>(() => Sync.Run(() => client.ConnectWithRetryAsync()));
            Assert.AreEqual(ErrorCodes.BadField, retry.Code);
        }

        [Test]
        public void TextFrame_IsAnsweredWithAnUnsolicitedBadFrame()
        {
            var client = Connect();
            var received = new List<ServerMessage>();
            var got = new ManualResetEventSlim();
            client.MessageReceived += m => { lock (received) received.Add(m); got.Set(); };
            Sync.Run(() => client.SendFrameAsync(System.Text.Encoding.UTF8.GetBytes("{\"type\": \"ping\"}"), text: true));
            Assert.IsTrue(got.Wait(TimeSpan.FromSeconds(10)), "an error arrives");
            ErrorMessage error;
            lock (received) error = received[0] as ErrorMessage;
            Assert.IsNotNull(error);
            Assert.AreEqual(ErrorCodes.BadFrame, error.Code);
            Assert.IsNull(error.Rid, "the server could not read a rid");

            got.Reset();
            Sync.Run(() => client.SendFrameAsync(new byte[] { 0xc1 }));  // not MessagePack
            Assert.IsTrue(got.Wait(TimeSpan.FromSeconds(10)));
            lock (received) Assert.AreEqual(ErrorCodes.BadFrame, ((ErrorMessage)received[1]).Code);
            Assert.IsTrue(Sync.Run(() => client.PingAsync()).RoundTrip >= 0, "still usable");
        }

        [Test]
        public void Ping_RoundTripAndClockOffsetAreSane()
        {
            var client = Connect();
            for (int i = 0; i < 5; i++)
            {
                PingResult p = Sync.Run(() => client.PingAsync());
                Assert.That(p.RoundTrip, Is.InRange(0.0, 1.0), "round trip on loopback");
                Assert.That(Math.Abs(p.ClockOffset), Is.LessThan(0.5), "same machine, same clock");
                double unix = (DateTime.UtcNow - new DateTime(1970, 1, 1, 0, 0, 0, DateTimeKind.Utc)).TotalSeconds;
                Assert.That(Math.Abs(p.ServerTime - unix), Is.LessThan(5.0), "server_time is Unix seconds");
            }
            Assert.IsTrue(client.Clock.HasEstimate);
            Assert.That(client.Clock.RoundTrip, Is.LessThanOrEqualTo(client.Clock.LastRoundTrip + 1e-9));
            double unixNow = (DateTime.UtcNow - new DateTime(1970, 1, 1, 0, 0, 0, DateTimeKind.Utc)).TotalSeconds;
            Assert.That(Math.Abs(client.Clock.ServerNow() - unixNow), Is.LessThan(1.0));
        }

        [Test]
        public void AutomaticPings_KeepTheClockOffsetFresh()
        {
            var client = Connect(o => o.PingInterval = TimeSpan.FromMilliseconds(100));
            Sync.WaitUntil(() => client.Clock.HasEstimate, TimeSpan.FromSeconds(10), "an automatic ping");
        }

        [Test]
        public void ConcurrentRequests_GoThroughTheOneSender()
        {
            var client = Connect();
            var grid = Sync.Run(() => client.StartRandomAsync(Algorithm(client), 9));
            var tasks = new List<Task>();
            for (int i = 0; i < 40; i++) tasks.Add(Task.Run(() => client.PingAsync()));
            tasks.Add(Task.Run(() => client.FetchTexturesAsync(grid.Items.Select(x => x.Texture))));
            for (int i = 0; i < 10; i++) tasks.Add(Task.Run(() => client.PingAsync()));
            Assert.IsTrue(Task.WaitAll(tasks.ToArray(), TimeSpan.FromSeconds(30)), "all replies arrive");
            Assert.AreEqual(9, client.Textures.Count);
        }

        [Test]
        public void ImageStart_ReturnsTheNearestFacesAndAReconstruction()
        {
            var client = Connect();
            string algorithm = Algorithm(client);
            var grid = Sync.Run(() => client.StartRandomAsync(algorithm, 1));
            var face = grid.Items[3];
            TextureData upload = Sync.Run(() => client.FetchTexturesAsync(new[] { face.Texture })).Textures[face.Texture];

            CandidatesMessage byImage = Sync.Run(() => client.StartImageAsync(algorithm, upload.Data));
            Assert.AreEqual(1, byImage.Step);
            Assert.AreEqual(9, byImage.Items.Count);
            foreach (var item in byImage.Items) Assert.IsTrue(item.Distance.HasValue, "image neighbours have distances");
            Assert.IsTrue(byImage.Items.Any(i => i.Id == face.Id), "the uploaded face is among its own nearest faces");
            Assert.IsNotNull(byImage.Reconstruction);
            Assert.IsTrue(byImage.Reconstruction.HashMatches());
            Assert.IsNotNull(Hashing.SniffImageFormat(byImage.Reconstruction.Data));

            var corrupt = Assert.Throws<OmokageServerException>(() => Sync.Run(() => client.StartImageAsync(algorithm, new byte[] { 1, 2, 3, 4 })));
            Assert.AreEqual(ErrorCodes.BadField, corrupt.Code, "a non-image upload");
        }

        /// <summary>v1.2 gaze against the real server: layout, head and eye samples with and without the client's hit, in
        /// 100 ms batches on the server's clock, flushed before each pick; the server refuses none of them.</summary>
        [Test]
        public void Gaze_IsSentAndAccepted()
        {
            var client = Connect();
            var rejected = new List<ErrorMessage>();
            var unexpected = new List<ServerMessage>();
            client.GazeRejected += e => { lock (rejected) rejected.Add(e); };
            client.MessageReceived += m => { if (m is ErrorMessage) lock (unexpected) unexpected.Add(m); };
            Assert.That(client.Welcome.ProtocolMinor, Is.GreaterThanOrEqualTo(2), "a v1.2 server (or newer)");
            Assert.IsNotNull(client.Welcome.Gaze, "welcome.gaze for a client that announced minor 2");
            Assert.IsTrue(client.GazeAccepted);
            Sync.Run(() => client.PingAsync());
            string algorithm = Algorithm(client);
            string policy = client.Welcome.Policies.Contains(Policies.ThompsonGaze) ? Policies.ThompsonGaze : null;
            var grid = Sync.Run(() => client.StartRandomAsync(algorithm, 3, policy));

            var sender = new GazeSender();
            sender.SetPanelCount(grid.Items.Count);
            for (int k = 0; k < grid.Items.Count; k++)
            {
                int row = k / 3, col = k % 3;
                sender.SetPanel(k, new PanelPose { Px = (col - 1) * 0.36, Py = 1.5 + (1 - row) * 0.36, Pz = -1.5, Qw = 1, Width = 0.3, Height = 0.3 });
            }
            Assert.IsTrue(sender.LayoutDue(client.SessionId));
            Sync.Run(() => client.SendLayoutAsync(sender.TakeLayout(client.SessionId)));

            double past = ClockSync.LocalNow() - 2.0;
            for (int step = 0; step < 2; step++)
            {
                // 0.9 s at 90 Hz from the last two seconds (local clock; the stream adds the ping's offset), replayed at once,
                // looking over panels 3, 4 and 5
                double start = past + step;
                sender.ClientHits = step == 0;  // the first grid with the client's hits, the second as bare rays
                for (int i = 0; i < 81; i++)
                {
                    double t = start + i / 90.0, x = -0.36 + 0.72 * i / 80.0;
                    double len = Math.Sqrt(x * x + 0.01 + 2.25);
                    sender.Frame(client.Gaze, t, 0, 1.6, 0, x / len, -0.1 / len, -1.5 / len, true, 0.01, 1.6, 0, x / len, -0.1 / len, -1.5 / len, 0.9);
                    if (i % 9 == 8 && i < 72) client.FlushGaze();  // a batch per 100 ms of samples (these are replayed at once)
                }
                Assert.That(client.Gaze.Pending, Is.GreaterThan(0), "some samples wait for the pick");
                grid = Sync.Run(() => client.ChooseAsync(grid.Items[4].Id));  // sends them first
                Assert.AreEqual(0, client.Gaze.Pending);
            }
            Sync.Run(() => client.PingAsync());  // answered in order: every batch has been read by now
            Assert.AreEqual(2 * 9, client.GazeBatchesSent, "8 batches of 100 ms per grid, and the rest before the pick");
            Assert.AreEqual(2 * 2 * 81, client.GazeSamplesSent, "head and eye, two grids");
            lock (rejected) Assert.IsEmpty(rejected, "no gaze refused: " + string.Join("; ", rejected.Select(e => e.Code + " " + e.Message)));
            lock (unexpected) Assert.IsEmpty(unexpected);
            Assert.AreEqual(0, client.GazeSamplesDroppedByServer);
        }

        [Test]
        public void StartAgain_AbandonsTheSelection()
        {
            var client = Connect();
            string algorithm = Algorithm(client);
            var grid = Sync.Run(() => client.StartRandomAsync(algorithm, 2));
            grid = Sync.Run(() => client.ChooseAsync(grid.Items[0].Id));
            Assert.AreEqual(2, grid.Step);
            grid = Sync.Run(() => client.StartRandomAsync(algorithm, 2));
            Assert.AreEqual(1, grid.Step);
        }

        [Test]
        public void Close_EndsTheConnectionForGood()
        {
            var client = Connect();
            Sync.Run(() => client.CloseAsync());
            Assert.AreEqual(ConnectionState.Closed, client.State);
            Assert.Throws<OmokageConnectionException>(() => Sync.Run(() => client.PingAsync()));
            Assert.Throws<ObjectDisposedException>(() => Sync.Run(() => client.ConnectAsync()));
        }
    }
}
