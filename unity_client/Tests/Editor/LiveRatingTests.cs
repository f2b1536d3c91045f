using System;
using System.Collections.Generic;
using System.Linq;
using System.Threading.Tasks;
using NUnit.Framework;
using Omokage.Client.MessagePack;

namespace Omokage.Client.Tests
{
    /// <summary>
    /// v1.1 ratings as <see cref="SelectionSession"/> keeps them (and <c>CandidateGrid</c> with it: its <c>RatingOf</c>,
    /// <c>Ratings</c> and <c>RatingsChanged</c> are the session's) against a real `omokage serve` (OMOKAGE_SERVER_URL): a
    /// rating is kept at once and the server's <c>rated</c> agrees; a second rating of the face replaces the first and the
    /// same value again sends nothing; a back forgets the ratings given on the grids it leaves and keeps those given on the
    /// grid that returns — checked against the server's belief: the grid after the back equals the grid of a selection that
    /// never had the forgotten ratings, and differs from one without the kept ones; a new selection starts with none; a
    /// rating the server refuses is taken back. The v1.0 server (no <c>rate</c>) is a scripted one: the real server speaks
    /// the newest minor to every client.
    /// </summary>
    [TestFixture]
    [Category("Live")]
    public class LiveRatingTests
    {
        readonly LiveClients _clients = new LiveClients();
        readonly SentTypes _sent = new SentTypes();

        [TearDown]
        public void Close()
        {
            _clients.CloseAll();
            _sent.Clear();
        }

        OmokageClient Connect()
        {
            var client = _clients.Create(TestEnv.ServerUrl());
            _sent.Watch(client);
            Sync.Run(() => client.ConnectAsync());
            Assert.That(client.Welcome.ProtocolMinor, Is.GreaterThanOrEqualTo(7), "a v1.7 server (rate, back)");
            return client;
        }

        List<string> SentSince(int mark) { return _sent.Since(mark); }

        int Mark() { return _sent.Mark(); }

        static Dictionary<int, int> Copy(IReadOnlyDictionary<int, int> ratings) { return ratings.ToDictionary(kv => kv.Key, kv => kv.Value); }

        /// <summary>A grid as the server's belief made it: its faces in order with their probabilities.</summary>
        static List<string> Belief(CandidatesMessage grid)
        {
            return grid.Items.Select(i => i.Id + ":" + (i.Probability.HasValue ? i.Probability.Value.ToString("R") : "-")).ToList();
        }

        [Test]
        public void ARating_IsKeptAtOnce_ARatingAgainReplacesIt_AndTheSameValueSendsNothing()
        {
            var client = Connect();
            var selection = new SelectionSession(client);
            int changes = 0;
            selection.RatingsChanged += () => changes++;
            Assert.IsFalse(selection.CanRate, "no selection yet");
            Assert.IsNull(selection.RatingOf(1));
            CollectionAssert.IsEmpty(selection.Ratings);

            CandidatesMessage first = Sync.Run(() => selection.StartRandomAsync("pca", 7, Policies.Thompson));
            Assert.IsTrue(selection.CanRate, "a grid, a v1.1 server, connected");
            int pick = first.Items[4].Id;
            CandidatesMessage second = Sync.Run(() => selection.ChooseAsync(pick));

            // kept at once (a control shows it before the reply), and the server's reply agrees
            Task<RatedMessage> pending = selection.RateAsync(pick, 3);
            Assert.AreEqual(3, selection.RatingOf(pick), "kept before the reply");
            Assert.AreEqual(1, changes, "RatingsChanged");
            RatedMessage rated = Sync.Run(() => pending);
            Assert.AreEqual(pick, rated.Id);
            Assert.AreEqual(3, rated.Rating, "the server took 3");
            Assert.AreEqual(3, selection.RatingOf(pick));

            // a second rating of the same face replaces the first
            rated = Sync.Run(() => selection.RateAsync(pick, 5));
            Assert.AreEqual(5, rated.Rating);
            Assert.AreEqual(5, selection.RatingOf(pick));
            Assert.AreEqual(2, changes);
            Assert.AreEqual(1, selection.Ratings.Count, "one face, one rating");

            // the same value again: nothing is sent, nothing changes
            int mark = Mark();
            Assert.IsNull(Sync.Run(() => selection.RateAsync(pick, 5)), "nothing sent: no reply");
            CollectionAssert.IsEmpty(SentSince(mark));
            Assert.AreEqual(2, changes, "no RatingsChanged");

            // another face of the grid; out of range is refused before anything is sent or kept
            int other = second.Items[3].Id;
            Sync.Run(() => selection.RateAsync(other, 1));
            CollectionAssert.AreEquivalent(new Dictionary<int, int> { { pick, 5 }, { other, 1 } }, Copy(selection.Ratings));
            mark = Mark();
            Assert.Throws<ArgumentOutOfRangeException>(() => Sync.Run(() => selection.RateAsync(other, 6)));
            Assert.Throws<ArgumentOutOfRangeException>(() => Sync.Run(() => selection.RateAsync(other, 0)));
            CollectionAssert.IsEmpty(SentSince(mark));
            Assert.AreEqual(1, selection.RatingOf(other));

            // a read-only view
            var view = (IDictionary<int, int>)selection.Ratings;
            Assert.IsTrue(view.IsReadOnly);
            Assert.Throws<NotSupportedException>(() => view[other] = 4);

            // a control asks every frame: allocation-free
            bool can = false;
            int sum = 0;
            for (int i = 0; i < 100; i++) { can |= selection.CanRate; sum += selection.RatingOf(pick) ?? 0; }  // warm up
            long before = GC.GetAllocatedBytesForCurrentThread();
            for (int i = 0; i < 10000; i++) { can &= selection.CanRate; sum += selection.RatingOf(pick) ?? 0; sum += selection.RatingOf(-1) ?? 0; }
            long allocated = GC.GetAllocatedBytesForCurrentThread() - before;
            Assert.IsTrue(can);
            Assert.AreEqual(0, allocated, "bytes allocated by 10,000 CanRate and RatingOf");

            // after the decision the ratings stay, and no more are taken
            Sync.Run(() => selection.DecideAsync(pick));
            Assert.IsFalse(selection.CanRate);
            Assert.AreEqual(5, selection.RatingOf(pick));
            mark = Mark();
            Assert.Throws<InvalidOperationException>(() => Sync.Run(() => selection.RateAsync(other, 2)));
            CollectionAssert.IsEmpty(SentSince(mark));
        }

        /// <summary>Selection A rates on the grid that will return, rates on a later grid (a new face, and the first face
        /// again), goes back and chooses. Selection B, same seed, gives only the ratings A should still have; C gives none. The
        /// server's grid after A's choose equals B's (faces and the belief's probabilities) and differs from C's: the server kept
        /// exactly what A's session shows.</summary>
        [Test]
        public void Back_ForgetsTheRatingsOfTheGridsItLeaves_AndKeepsThoseOfTheGridThatReturns()
        {
            CandidatesMessage[] grids = null;
            Func<SelectionSession, int, CandidatesMessage> prefix = (s, rateOnFirst) =>
            {
                CandidatesMessage g1 = Sync.Run(() => s.StartRandomAsync("pca", 17, Policies.Thompson));
                if (rateOnFirst > 0) Sync.Run(() => s.RateAsync(g1.Items[0].Id, rateOnFirst));  // on the first grid (step 1)
                CandidatesMessage g2 = Sync.Run(() => s.ChooseAsync(g1.Items[4].Id));
                grids = new[] { g1, g2 };
                return g2;
            };

            var client = Connect();
            var a = new SelectionSession(client);
            int changes = 0;
            a.RatingsChanged += () => changes++;
            CandidatesMessage second = prefix(a, 2);
            int early = grids[0].Items[0].Id;
            int x = second.Items[3].Id;
            Sync.Run(() => a.RateAsync(x, 5));                     // on the grid that will return (step 2)
            CandidatesMessage third = Sync.Run(() => a.ChooseAsync(second.Items[2].Id));
            int z = third.Items[5].Id;
            Sync.Run(() => a.RateAsync(z, 1));                     // a face first rated on the later grid (step 3)
            Sync.Run(() => a.RateAsync(x, 1));                     // and x again, on the later grid
            Assert.AreEqual(1, a.RatingOf(x));
            CollectionAssert.AreEquivalent(new Dictionary<int, int> { { early, 2 }, { x, 1 }, { z, 1 } }, Copy(a.Ratings));
            changes = 0;

            CandidatesMessage back = Sync.Run(() => a.BackAsync());
            Assert.AreEqual(2, back.Step);
            Assert.IsNull(a.RatingOf(z), "given on the grid left: forgotten");
            Assert.AreEqual(5, a.RatingOf(x), "x has the rating it had on the grid that returns");
            Assert.AreEqual(2, a.RatingOf(early), "given on the first grid: kept");
            Assert.AreEqual(1, changes, "RatingsChanged");
            Assert.IsTrue(a.CanRate);
            // the same value as now is not sent again (the server holds 5 for x once more)
            int mark = Mark();
            Assert.IsNull(Sync.Run(() => a.RateAsync(x, 5)));
            CollectionAssert.IsEmpty(SentSince(mark));

            int next = back.Items[6].Id;
            CandidatesMessage afterBack = Sync.Run(() => a.ChooseAsync(next));

            // B: the same selection with only the ratings A shows; C: without them
            var b = new SelectionSession(Connect());
            CandidatesMessage bSecond = prefix(b, 2);
            Sync.Run(() => b.RateAsync(x, 5));
            CandidatesMessage kept = Sync.Run(() => b.ChooseAsync(next));
            var c = new SelectionSession(Connect());
            prefix(c, 0);
            CandidatesMessage none = Sync.Run(() => c.ChooseAsync(next));

            CollectionAssert.AreEqual(second.Items.Select(i => i.Id).ToList(), bSecond.Items.Select(i => i.Id).ToList(), "the same seed: the same grids");
            CollectionAssert.AreEqual(Belief(kept), Belief(afterBack), "the server's belief after the back holds exactly the ratings the session shows");
            CollectionAssert.AreNotEqual(Belief(none), Belief(kept), "and those ratings weigh (without them the grid differs)");

            // and a back to the first grid forgets what was given on the second; the first grid's rating stays
            Sync.Run(() => a.BackAsync());
            Sync.Run(() => a.BackAsync());
            Assert.AreEqual(1, a.Current.Step);
            CollectionAssert.AreEquivalent(new Dictionary<int, int> { { early, 2 } }, Copy(a.Ratings));
        }

        [Test]
        public void ANewSelection_StartsWithNoRatings()
        {
            var client = Connect();
            var selection = new SelectionSession(client);
            int changes = 0;
            selection.RatingsChanged += () => changes++;
            CandidatesMessage first = Sync.Run(() => selection.StartRandomAsync("pca", 29, Policies.Thompson));
            int face = first.Items[0].Id;
            Sync.Run(() => selection.RateAsync(face, 4));
            Assert.AreEqual(1, changes);

            // the same start again: the same faces, a new selection without the rating
            CandidatesMessage again = Sync.Run(() => selection.StartRandomAsync("pca", 29, Policies.Thompson));
            Assert.AreEqual(face, again.Items[0].Id, "the same seed: the same first grid");
            Assert.IsNull(selection.RatingOf(face));
            CollectionAssert.IsEmpty(selection.Ratings);
            Assert.AreEqual(2, changes, "RatingsChanged");
            // so the same rating is news to the server: it is sent, and taken
            int mark = Mark();
            RatedMessage rated = Sync.Run(() => selection.RateAsync(face, 4));
            CollectionAssert.AreEqual(new[] { MessageTypes.Rate }, SentSince(mark));
            Assert.AreEqual(4, rated.Rating);
            Assert.AreEqual(4, selection.RatingOf(face));

            // a feature switch is a new selection too
            string other = client.Welcome.Algorithms.FirstOrDefault(name => name != "pca") ?? "pca";
            Sync.Run(() => selection.StartRandomAsync(other, 29, Policies.Thompson));
            CollectionAssert.IsEmpty(selection.Ratings, "after a start with " + other);
        }

        [Test]
        public void ARatingTheServerRefuses_IsTakenBack()
        {
            var client = Connect();
            var selection = new SelectionSession(client);
            var seen = new List<Dictionary<int, int>>();
            selection.RatingsChanged += () => seen.Add(Copy(selection.Ratings));
            CandidatesMessage first = Sync.Run(() => selection.StartRandomAsync("pca", 31, Policies.Thompson));

            // a face this selection never showed: not_found, and the rating is taken back
            int neverShown = Enumerable.Range(0, client.Welcome.Catalog.Count).First(id => first.Items.All(i => i.Id != id));
            var notShown = Assert.Throws<OmokageServerException>(() => Sync.Run(() => selection.RateAsync(neverShown, 4)));
            Assert.AreEqual(ErrorCodes.NotFound, notShown.Code);
            Assert.IsNull(selection.RatingOf(neverShown));
            CollectionAssert.IsEmpty(selection.Ratings);
            Assert.AreEqual(2, seen.Count, "given, then taken back");
            CollectionAssert.AreEquivalent(new Dictionary<int, int> { { neverShown, 4 } }, seen[0]);
            CollectionAssert.IsEmpty(seen[1]);

            // a face rated 4, then re-rated when the server no longer takes ratings (the selection was decided behind the
            // session's back): wrong_state, and the face has its 4 again
            int face = first.Items[2].Id;
            Sync.Run(() => selection.RateAsync(face, 4));
            Sync.Run(() => client.DecideAsync(face));
            var decided = Assert.Throws<OmokageServerException>(() => Sync.Run(() => selection.RateAsync(face, 2)));
            Assert.AreEqual(ErrorCodes.WrongState, decided.Code);
            Assert.AreEqual(4, selection.RatingOf(face), "the rating the server kept");
            CollectionAssert.AreEquivalent(new Dictionary<int, int> { { face, 4 } }, seen[seen.Count - 1]);
        }
    }

    /// <summary>A v1.0 server (<c>welcome.protocol_minor</c> absent or 0) has no <c>rate</c>: nothing is offered, nothing sent.
    /// Scripted: the real server speaks its newest minor to every client.</summary>
    [TestFixture]
    public class RatingV1_0Tests
    {
        static readonly string Hash = new string('b', 64);

        [Test]
        public void AV1_0Server_OffersNoRating_AndNothingIsSent()
        {
            using (var server = new FakeServer())
            {
                server.Handler = (c, m) =>
                {
                    long? rid = m.GetInt64("rid");
                    switch (m.GetString("type"))
                    {
                        case MessageTypes.Hello:
                            c.Send(FakeServer.Welcome(rid, c.SessionId).Set("protocol_minor", 0L));
                            return true;
                        case MessageTypes.Start:
                            var items = new List<object>();
                            for (long id = 1; id <= 9; id++)
                                items.Add(new MsgMap { { "id", id }, { "distance", null }, { "texture", Hash }, { "title", "Face " + id }, { "url", "https://avatars.example/" + id } });
                            c.Send(new MsgMap { { "type", "candidates" }, { "rid", rid }, { "step", 1L }, { "algorithm", "pca" }, { "items", items } });
                            return true;
                        case MessageTypes.Rate:  // what a v1.0 server answers to a type it does not know
                            c.Send(new MsgMap { { "type", "error" }, { "rid", rid }, { "code", "unknown_type" }, { "message", "unknown message type 'rate'" } });
                            return true;
                    }
                    return false;
                };
                var client = new OmokageClient(new OmokageClientOptions(server.Url) { PingInterval = TimeSpan.Zero, AutoReconnect = false, RequestTimeout = TimeSpan.FromSeconds(5) });
                try
                {
                    Sync.Run(() => client.ConnectAsync());
                    Assert.AreEqual(0, client.Welcome.ProtocolMinor);
                    var selection = new SelectionSession(client);
                    int changes = 0;
                    selection.RatingsChanged += () => changes++;
                    CandidatesMessage grid = Sync.Run(() => selection.StartRandomAsync("pca", 1, null));
                    Assert.IsTrue(selection.CanChoose, "a grid to choose from");
                    Assert.IsFalse(selection.CanRate, "but no rating to offer");

                    Assert.Throws<InvalidOperationException>(() => Sync.Run(() => selection.RateAsync(grid.Items[0].Id, 4)));
                    Assert.AreEqual(0, server.CountReceived(MessageTypes.Rate), "nothing sent");
                    Assert.IsNull(selection.RatingOf(grid.Items[0].Id));
                    CollectionAssert.IsEmpty(selection.Ratings);
                    Assert.AreEqual(0, changes, "no RatingsChanged");
                }
                finally
                {
                    client.Dispose();
                }
            }
        }
    }
}
