using System;
using System.Collections.Generic;
using System.Linq;
using System.Threading;
using System.Threading.Tasks;
using NUnit.Framework;
using Omokage.Client.MessagePack;

namespace Omokage.Client.Tests
{
    /// <summary>
    /// v1.7, resuming a selection, against a scripted server (<see cref="FakeServer"/>) that plays docs/protocol.md's part:
    /// each welcome gives a new token, a hello presenting the live one gets <c>resumed: true</c> and the grid that was on
    /// screen as <c>candidates</c> without rid. The client's reconnect loop presents the latest token (after a dropped link
    /// and after a half-open one found by the probe a resume runs), the resumed grid becomes the selection's current one
    /// with nothing sent, a spent token is replaced by the new welcome's (and forgotten when it gives none), a welcome that
    /// promises a grid and sends none fails the attempt, and a choose, skip, back or start whose reply was lost with the link
    /// is taken up from the resumed grid. Once a selection request went out on the resumed connection, its grid is nobody's to
    /// take up any more; between the resumed welcome and the restore nothing can be picked, and offline there is no back.
    /// </summary>
    [TestFixture]
    public class ResumeTests
    {
        static readonly string Hash = new string('a', 64);

        /// <summary>The scripted server's side of one selection (one client at a time).</summary>
        sealed class Script
        {
            public readonly FakeServer Server = new FakeServer();
            public readonly List<FakeServer.Connection> Connections = new List<FakeServer.Connection>();
            public readonly HashSet<FakeServer.Connection> HalfOpen = new HashSet<FakeServer.Connection>();
            public int Issued;
            public string Live;               // the token the server would accept now
            public MsgMap Grid;               // the grid on screen (server side), null before a start
            public readonly List<MsgMap> Grids = new List<MsgMap>();  // the selection's grids up to Grid (back pops one)
            public bool GiveTokens = true;    // false: a server that keeps no selections (resume-minutes 0, a restart)
            public string TokenPrefix = "tok-";
            public string NoGridFor;          // a broken server: resumed true for this token, and no grid follows
            public bool DropOnChoose;         // the link dies after the server took a choose, before its reply
            public bool DropOnStart;
            public bool DropOnBack;           // the link dies after the server took a back, before its reply

            public Script()
            {
                Server.Handler = Handle;
            }

            public List<MsgMap> Hellos { get { return Server.Received.FindAll(m => m.GetString("type") == MessageTypes.Hello); } }

            public FakeServer.Connection Current { get { lock (Connections) return Connections[Connections.Count - 1]; } }

            bool Handle(FakeServer.Connection c, MsgMap m)
            {
                lock (HalfOpen)
                    if (HalfOpen.Contains(c)) return true;  // bytes go nowhere: the Wi-Fi slept
                long? rid = m.GetInt64("rid");
                switch (m.GetString("type"))
                {
                    case MessageTypes.Hello:
                        lock (Connections) Connections.Add(c);
                        var welcome = FakeServer.Welcome(rid, c.SessionId).Set("protocol_minor", 7L);
                        string presented = m.GetString("resume");
                        bool goOn = presented != null && presented == Live && Grid != null;
                        Live = null;  // spent on presentation, whatever the answer
                        if (presented != null) welcome.Set("resumed", goOn);
                        if (GiveTokens)
                        {
                            Live = TokenPrefix + (++Issued);
                            welcome.Set("resume", new MsgMap { { "token", Live }, { "ttl_s", 600.0 } });
                        }
                        c.Send(welcome);
                        if (goOn && presented != NoGridFor) c.Send(Copy(Grid));  // without rid: it answers no request
                        return true;
                    case MessageTypes.Start:
                        Grid = Candidates(1, Enumerable.Range(1, 9).Select(i => (long)i).ToArray());
                        Grids.Clear();
                        Grids.Add(Grid);
                        if (DropOnStart) { c.Close(); return true; }
                        c.Send(Copy(Grid).Set("rid", rid));
                        return true;
                    case MessageTypes.Choose:
                    case MessageTypes.Skip:
                        long step = Grid.GetInt64("step").Value + 1;
                        long first = m.GetString("type") == MessageTypes.Choose ? m.GetInt64("id").Value : 100 + step * 10;
                        var ids = new List<long> { first };
                        for (long i = 1; i < 9; i++) ids.Add(step * 10 + i);
                        Grid = Candidates(step, ids.ToArray());
                        Grids.Add(Grid);
                        if (DropOnChoose) { c.Close(); return true; }
                        c.Send(Copy(Grid).Set("rid", rid));
                        return true;
                    case MessageTypes.Back:
                        if (Grids.Count < 2)
                        {
                            c.Send(new MsgMap { { "type", "error" }, { "rid", rid }, { "code", ErrorCodes.WrongState }, { "message", "this is the selection's first grid" } });
                            return true;
                        }
                        Grids.RemoveAt(Grids.Count - 1);
                        Grid = Grids[Grids.Count - 1];  // the same grid as before, at its step
                        if (DropOnBack) { c.Close(); return true; }
                        c.Send(Copy(Grid).Set("rid", rid));
                        return true;
                    case MessageTypes.Decide:
                        long decided = m.GetInt64("id").Value;
                        c.Send(new MsgMap { { "type", "decided" }, { "rid", rid }, { "item", new MsgMap { { "id", decided }, { "texture", Hash }, { "title", "Face " + decided }, { "url", "https://avatars.example/" + decided } } }, { "steps", Grid.GetInt64("step") } });
                        return true;
                    case MessageTypes.StudyNext:
                        c.Send(new MsgMap { { "type", "error" }, { "rid", rid }, { "code", ErrorCodes.WrongState }, { "message", "not a study participant" } });
                        return true;
                    case MessageTypes.Rate:
                        c.Send(new MsgMap { { "type", "rated" }, { "rid", rid }, { "id", m["id"] }, { "rating", m["rating"] } });
                        return true;
                }
                return false;  // pings: the fake's default
            }

            /// <summary>A <c>candidates</c> in the server's field order (no rid).</summary>
            public static MsgMap Candidates(long step, params long[] ids)
            {
                var items = new List<object>();
                foreach (long id in ids)
                    items.Add(new MsgMap { { "id", id }, { "distance", null }, { "texture", Hash }, { "title", "Face " + id }, { "url", "https://avatars.example/" + id }, { "probability", 0.1 } });
                return new MsgMap { { "type", "candidates" }, { "step", step }, { "algorithm", "pca" }, { "items", items }, { "policy", "thompson" } };
            }

            static MsgMap Copy(MsgMap m)
            {
                var copy = new MsgMap();
                copy.Set("type", m["type"]);
                foreach (var kv in m) copy.Set(kv.Key, kv.Value);
                return copy;
            }
        }

        Script _script;
        OmokageClient _client;
        readonly List<string> _events = new List<string>();
        int _welcomes;

        [SetUp]
        public void StartServer()
        {
            _script = new Script();
            _events.Clear();
            _welcomes = 0;
        }

        [TearDown]
        public void StopServer()
        {
            if (_client != null) _client.Dispose();
            _client = null;
            _script.Server.Dispose();
        }

        OmokageClient Client(Action<OmokageClientOptions> configure = null)
        {
            var options = new OmokageClientOptions(_script.Server.Url)
            {
                PingInterval = TimeSpan.Zero,
                ReconnectInitialDelay = TimeSpan.FromMilliseconds(50),
                ReconnectMaxDelay = TimeSpan.FromMilliseconds(200),
                ConnectTimeout = TimeSpan.FromSeconds(5),
                RequestTimeout = TimeSpan.FromSeconds(10),
            };
            if (configure != null) configure(options);
            _client = new OmokageClient(options);
            _client.SelectionResumed += g => { lock (_events) _events.Add("resumed " + g.Step); };
            _client.Connected += w => { lock (_events) { _events.Add("connected " + w.SessionId); _welcomes++; } };
            _client.BackgroundError += e => { lock (_events) _events.Add("error " + e.GetType().Name); };
            return _client;
        }

        int Welcomes { get { lock (_events) return _welcomes; } }

        /// <summary>Drops the current link from the server's side (a Wi-Fi drop) and waits for the reconnection's welcome.</summary>
        void DropAndWaitForTheNextWelcome()
        {
            int before = Welcomes;
            _script.Current.Close();
            WaitForWelcome(before);
        }

        void WaitForWelcome(int before)
        {
            Sync.WaitUntil(() => Welcomes > before && _client.IsConnected, TimeSpan.FromSeconds(15), "the reconnection's welcome");
        }

        static List<int> Ids(CandidatesMessage grid) { return grid.Items.Select(i => i.Id).ToList(); }

        [Test]
        public void AReconnect_PresentsTheToken_AndTheResumedGridBecomesTheCurrentOne()
        {
            var client = Client();
            WelcomeMessage first = Sync.Run(() => client.ConnectAsync());
            Assert.IsNull(_script.Hellos[0]["resume"], "the first hello has no token to present");
            Assert.AreEqual("tok-1", client.ResumeToken, "the welcome's token is kept");
            Assert.IsNull(client.ResumedGrid);

            var selection = new SelectionSession(client);
            int changes = 0;
            selection.GridChanged += g => changes++;
            Sync.Run(() => selection.StartRandomAsync("pca", 3, Policies.Thompson));
            CandidatesMessage onScreen = Sync.Run(() => selection.ChooseAsync(4));
            Assert.AreEqual(2, onScreen.Step);

            // the Wi-Fi drops: the reconnect loop's hello presents the token, the server goes on with the selection
            DropAndWaitForTheNextWelcome();
            Assert.AreEqual("tok-1", _script.Hellos[1].GetString("resume"), "the reconnection presents the token of the last welcome");
            Assert.AreEqual(true, client.Welcome.Resumed);
            Assert.IsNotNull(client.ResumedGrid, "the candidates without rid is the resumed grid");
            Assert.AreEqual(2, client.ResumedGrid.Step);
            CollectionAssert.AreEqual(Ids(onScreen), Ids(client.ResumedGrid));
            Assert.AreEqual(first.SessionId, client.ResumedFrom);
            Assert.AreEqual("tok-2", client.ResumeToken, "the spent token is replaced by the new welcome's");
            lock (_events)
            {
                int resumed = _events.IndexOf("resumed 2");
                Assert.That(resumed, Is.GreaterThanOrEqualTo(0), "SelectionResumed was raised: " + string.Join(", ", _events));
                Assert.AreEqual("connected " + client.SessionId, _events[resumed + 1], "SelectionResumed comes just before Connected");
                Assert.IsFalse(_events.Any(e => e.StartsWith("error")), "nothing went wrong: " + string.Join(", ", _events));
            }

            Assert.IsTrue(selection.NeedsRestore, "another server session");
            int received = _script.Server.Received.Count;
            changes = 0;
            Assert.AreEqual(RestoreOutcome.Resumed, Sync.Run(() => selection.RestoreAsync()));
            Assert.AreEqual(received, _script.Server.Received.Count, "nothing is sent to go on");
            Assert.AreSame(client.ResumedGrid, selection.Current, "the resumed grid is the current one");
            Assert.AreEqual(1, changes, "GridChanged: the app shows it like any grid");
            Assert.AreEqual(4, selection.ChosenId, "the face chosen last is still first");
            Assert.AreEqual(client.SessionId, selection.SessionId);
            Assert.IsFalse(selection.NeedsRestore, "restored");
            Assert.AreEqual(RestoreOutcome.SameSession, Sync.Run(() => selection.RestoreAsync()), "taken up once");
            Assert.AreEqual(3, Sync.Run(() => selection.ChooseAsync(12)).Step, "the user picks on from the resumed grid");

            // the app is paused and the link goes half-open: the probe on resume drops it, the next token is presented
            lock (_script.HalfOpen) _script.HalfOpen.Add(_script.Current);
            int before = Welcomes;
            Assert.IsFalse(Sync.Run(() => client.ProbeAsync(TimeSpan.FromMilliseconds(300))), "no pong from a half-open link");
            WaitForWelcome(before);
            Assert.AreEqual("tok-2", _script.Hellos[2].GetString("resume"), "the token survives the pause; each welcome's replaces the last");
            Assert.AreEqual(RestoreOutcome.Resumed, Sync.Run(() => selection.RestoreAsync()));
            Assert.AreEqual(3, selection.Current.Step);
            Assert.AreEqual(12, selection.ChosenId);

            // a server that kept nothing (restarted, or --resume-minutes 0): resumed false, no token; the old restore applies
            _script.Live = null;  // restarted: it knows no token, and keeps no selections from now on
            _script.GiveTokens = false;
            DropAndWaitForTheNextWelcome();
            Assert.AreEqual("tok-3", _script.Hellos[3].GetString("resume"));
            Assert.AreEqual(false, client.Welcome.Resumed, "resumed: false");
            Assert.IsNull(client.ResumedGrid, "no grid");
            Assert.IsNull(client.ResumedFrom, "from nowhere");
            Assert.IsNull(client.ResumeToken, "a welcome without a token leaves none to present");
            Assert.IsFalse(selection.TryResume(), "nothing to take up");
            Assert.IsTrue(selection.NeedsRestore, "restored as before v1.7");
            DropAndWaitForTheNextWelcome();
            Assert.IsNull(_script.Hellos[4]["resume"], "no token, no resume field");
            Assert.IsNull(client.Welcome.Resumed, "a hello without resume is not told about it");

            client.Dispose();
            Assert.IsNull(client.ResumeToken);
        }

        [Test]
        public void TryResume_TakesOneConnectionsGridAndSession_EvenWhenAnotherReconnectLandsMeanwhile()
        {
            var client = Client();
            Sync.Run(() => client.ConnectAsync());
            string a = client.SessionId;
            var selection = new SelectionSession(client);
            Sync.Run(() => selection.StartRandomAsync("pca", 3, Policies.Thompson));
            Sync.Run(() => selection.ChooseAsync(4));

            DropAndWaitForTheNextWelcome();  // B goes on from A
            string b = client.SessionId;
            ResumeSnapshot read = client.Resumption;  // what TryResume reads ...
            Assert.AreEqual(b, read.SessionId);
            Assert.AreEqual(2, read.Grid.Step);
            Assert.AreEqual(a, read.ResumedFrom);

            DropAndWaitForTheNextWelcome();  // ... before a second reconnection lands: C goes on from B, with a grid of its own
            string c = client.SessionId;
            Assert.AreNotEqual(b, c);
            Assert.AreNotSame(read.Grid, client.ResumedGrid);
            Assert.AreEqual(b, read.SessionId, "a snapshot keeps its connection's session (immutable)");
            Assert.AreEqual(a, read.ResumedFrom);
            Assert.IsFalse(read.GoesOnFrom(b), "B's snapshot: B went on from A, not from itself");
            Assert.IsTrue(client.GoesOnFrom(b) && client.GoesOnFrom(a), "the client's current one: C went on from B, and so from A");

            Assert.IsTrue(selection.TryResume(read));
            Assert.AreSame(read.Grid, selection.Current);
            // read apart, B's grid would have been paired with C's session: a choose on it then meets C's grid (wrong_state on
            // a real server) and the restore below would say SameSession
            Assert.AreEqual(b, selection.SessionId, "the session the taken grid belongs to");
            Assert.IsTrue(selection.NeedsRestore, "the client is in C by now");
            int sent = _script.Server.Received.Count;
            Assert.AreEqual(RestoreOutcome.Resumed, Sync.Run(() => selection.RestoreAsync()), "C's grid is taken up next");
            Assert.AreEqual(sent, _script.Server.Received.Count, "nothing sent");
            Assert.AreEqual(c, selection.SessionId);
            Assert.AreSame(client.ResumedGrid, selection.Current);
            Assert.AreEqual(RestoreOutcome.SameSession, Sync.Run(() => selection.RestoreAsync()));
        }

        [Test]
        public void RepliesLostWithTheLink_AreTakenUpFromTheResumedGrid()
        {
            var client = Client();
            Sync.Run(() => client.ConnectAsync());
            var selection = new SelectionSession(client);

            // the start reached the server, its reply did not reach the client
            _script.DropOnStart = true;
            int before = Welcomes;
            Assert.Throws<OmokageConnectionException>(() => Sync.Run(() => selection.StartRandomAsync("pca", null, null)));
            _script.DropOnStart = false;
            WaitForWelcome(before);
            Assert.IsNull(selection.Current);
            Assert.AreEqual(RestoreOutcome.Resumed, Sync.Run(() => selection.RestoreAsync()), "nothing shown yet, but the server kept the selection");
            Assert.AreEqual(1, selection.Current.Step);
            Assert.AreEqual("pca", selection.Algorithm);
            Assert.AreEqual("thompson", selection.Policy, "the resumed grid's policy");
            Assert.IsNull(selection.ChosenId);

            // a choose reached the server, its reply did not: the resumed grid is that reply, the face chosen first
            _script.DropOnChoose = true;
            before = Welcomes;
            Assert.Throws<OmokageConnectionException>(() => Sync.Run(() => selection.ChooseAsync(5)));
            _script.DropOnChoose = false;
            WaitForWelcome(before);
            Assert.AreEqual(RestoreOutcome.Resumed, Sync.Run(() => selection.RestoreAsync()));
            Assert.AreEqual(2, selection.Current.Step, "one step on: the server took the choose");
            Assert.AreEqual(5, selection.ChosenId, "the face whose choose reached the server is the one chosen last");

            // and a skip whose reply was lost: its grid starts with an unseen face, nothing is chosen
            _script.DropOnChoose = true;
            before = Welcomes;
            Assert.Throws<OmokageConnectionException>(() => Sync.Run(() => selection.SkipAsync()));
            _script.DropOnChoose = false;
            WaitForWelcome(before);
            Assert.AreEqual(RestoreOutcome.Resumed, Sync.Run(() => selection.RestoreAsync()));
            Assert.AreEqual(3, selection.Current.Step);
            Assert.IsNull(selection.ChosenId);
        }

        [Test]
        public void ABackWhoseReplyWasLost_IsTakenUpFromTheResumedGrid_WithThePickOfThatStep()
        {
            var client = Client();
            Sync.Run(() => client.ConnectAsync());
            var selection = new SelectionSession(client);
            Sync.Run(() => selection.StartRandomAsync("pca", 3, null));
            Sync.Run(() => selection.ChooseAsync(4));                       // step 2: 4 first
            CandidatesMessage skipped = Sync.Run(() => selection.SkipAsync());  // step 3: unseen faces
            Sync.Run(() => selection.ChooseAsync(32));                      // step 4: 32 first
            Assert.AreEqual(4, selection.Current.Step);

            // the back reached the server (it is at step 3 now), its reply did not: the resumed grid is that reply
            _script.DropOnBack = true;
            int before = Welcomes;
            Assert.Throws<OmokageConnectionException>(() => Sync.Run(() => selection.BackAsync()));
            WaitForWelcome(before);
            Assert.AreEqual(4, selection.Current.Step, "nothing changed before the restore");
            Assert.AreEqual(RestoreOutcome.Resumed, Sync.Run(() => selection.RestoreAsync()));
            Assert.AreEqual(3, selection.Current.Step, "one step back: the server took the back");
            CollectionAssert.AreEqual(Ids(skipped), Ids(selection.Current));
            Assert.IsNull(selection.ChosenId, "the grid that came back followed a skip: nothing chosen on it");

            // once more: back to the grid of the choose, whose face is the one chosen last again
            before = Welcomes;
            Assert.Throws<OmokageConnectionException>(() => Sync.Run(() => selection.BackAsync()));
            _script.DropOnBack = false;
            WaitForWelcome(before);
            Assert.AreEqual(RestoreOutcome.Resumed, Sync.Run(() => selection.RestoreAsync()));
            Assert.AreEqual(2, selection.Current.Step);
            Assert.AreEqual(4, selection.ChosenId, "the face chosen at step 2, as it was then");

            // a back that never reached the server (the link was half-open): the resumed grid is the one on screen
            lock (_script.HalfOpen) _script.HalfOpen.Add(_script.Current);
            before = Welcomes;
            int backs = _script.Server.CountReceived(MessageTypes.Back);
            var lost = System.Threading.Tasks.Task.Run(() => selection.BackAsync());
            Sync.WaitUntil(() => _script.Server.CountReceived(MessageTypes.Back) > backs, TimeSpan.FromSeconds(5), "the back on the half-open link");
            Assert.IsFalse(Sync.Run(() => client.ProbeAsync(TimeSpan.FromMilliseconds(300))), "no pong from a half-open link");
            Assert.Throws<OmokageConnectionException>(() => Sync.Run(() => lost), "the back in flight failed with the link");
            WaitForWelcome(before);
            Assert.AreEqual(RestoreOutcome.Resumed, Sync.Run(() => selection.RestoreAsync()));
            Assert.AreEqual(2, selection.Current.Step, "the same step: the server never saw the back");
            Assert.AreEqual(4, selection.ChosenId);

            // and the selection goes on from there, back included
            Assert.AreEqual(3, Sync.Run(() => selection.ChooseAsync(21)).Step);
            Assert.AreEqual(21, selection.ChosenId);
            Assert.AreEqual(2, Sync.Run(() => selection.BackAsync()).Step);
            Assert.AreEqual(4, selection.ChosenId);
            Assert.AreEqual(1, Sync.Run(() => selection.BackAsync()).Step);
            Assert.IsNull(selection.ChosenId, "the first grid: nothing chosen yet");
            Assert.IsFalse(selection.CanGoBack);
            var refused = Assert.Throws<OmokageServerException>(() => Sync.Run(() => selection.BackAsync()));
            Assert.AreEqual(ErrorCodes.WrongState, refused.Code);
            Assert.AreEqual(1, selection.Current.Step, "a refused back changes nothing");
        }

        /// <summary>v1.1 ratings across a lost link: the server kept them with the selection, less those a back it took
        /// forgot (the grid that came back one step back: the ratings given on the grid left go); a start whose reply was lost
        /// is a new selection, without the ratings of the one before.</summary>
        [Test]
        public void RatingsAcrossALostLink_FollowTheGridTheServerWentOnWith()
        {
            var client = Client();
            Sync.Run(() => client.ConnectAsync());
            var selection = new SelectionSession(client);
            Sync.Run(() => selection.StartRandomAsync("pca", 3, null));
            Sync.Run(() => selection.RateAsync(2, 2));                      // step 1
            Sync.Run(() => selection.ChooseAsync(4));                       // step 2: 4 first
            Sync.Run(() => selection.RateAsync(4, 3));                      // step 2
            Sync.Run(() => selection.ChooseAsync(21));                      // step 3: 21 first
            Sync.Run(() => selection.RateAsync(4, 5));                      // step 3: 4 again
            Sync.Run(() => selection.RateAsync(22, 1));                     // step 3

            // a plain drop: the same grid resumed, every rating kept
            DropAndWaitForTheNextWelcome();
            Assert.AreEqual(RestoreOutcome.Resumed, Sync.Run(() => selection.RestoreAsync()));
            Assert.AreEqual(3, selection.Current.Step);
            CollectionAssert.AreEquivalent(new Dictionary<int, int> { { 2, 2 }, { 4, 5 }, { 22, 1 } },
                                           selection.Ratings.ToDictionary(kv => kv.Key, kv => kv.Value));

            // the back reached the server, its reply did not: the resumed grid is one step back, and the server forgot the
            // ratings given on the grid it left
            _script.DropOnBack = true;
            int before = Welcomes;
            Assert.Throws<OmokageConnectionException>(() => Sync.Run(() => selection.BackAsync()));
            _script.DropOnBack = false;
            WaitForWelcome(before);
            Assert.AreEqual(3, selection.Current.Step, "nothing changed before the restore");
            Assert.AreEqual(5, selection.RatingOf(4));
            int changes = 0;
            selection.RatingsChanged += () => changes++;
            Assert.AreEqual(RestoreOutcome.Resumed, Sync.Run(() => selection.RestoreAsync()));
            Assert.AreEqual(2, selection.Current.Step);
            Assert.AreEqual(3, selection.RatingOf(4), "the rating 4 had on the grid that came back");
            Assert.IsNull(selection.RatingOf(22), "given on the grid left");
            Assert.AreEqual(2, selection.RatingOf(2));
            Assert.AreEqual(1, changes);

            // a new start reached the server, its reply did not: the resumed first grid is a new selection's
            _script.DropOnStart = true;
            before = Welcomes;
            Assert.Throws<OmokageConnectionException>(() => Sync.Run(() => selection.StartRandomAsync("pca", 5, null)));
            _script.DropOnStart = false;
            WaitForWelcome(before);
            Assert.AreEqual(RestoreOutcome.Resumed, Sync.Run(() => selection.RestoreAsync()));
            Assert.AreEqual(1, selection.Current.Step);
            CollectionAssert.IsEmpty(selection.Ratings, "a new selection has no ratings");
        }

        [Test]
        public void ASelectionRequestOnTheResumedConnection_RetiresItsGrid_SoASessionEnabledLaterDoesNotShowAStaleOne()
        {
            var client = Client();
            Sync.Run(() => client.ConnectAsync());
            string from = client.SessionId;
            var selection = new SelectionSession(client);
            Sync.Run(() => selection.StartRandomAsync("pca", 3, null));
            Sync.Run(() => selection.ChooseAsync(4));
            DropAndWaitForTheNextWelcome();
            Assert.AreEqual(RestoreOutcome.Resumed, Sync.Run(() => selection.RestoreAsync()));

            // a second grid enabled before anything is sent shows what the server shows; what changes no grid keeps it
            var early = new SelectionSession(client);
            Assert.IsTrue(early.TryResume());
            Assert.AreEqual(2, early.Current.Step);
            Sync.Run(() => client.PingAsync());
            Assert.IsNotNull(client.ResumedGrid, "a ping changes no grid");

            // the user goes on from the resumed grid: the server is at step 3, then 4
            Sync.Run(() => selection.ChooseAsync(21));
            Assert.IsNull(client.ResumedGrid, "the server shows another grid now");
            Assert.IsNull(client.ResumedFrom);
            Assert.IsFalse(client.GoesOnFrom(from));
            Assert.AreEqual(client.SessionId, client.Resumption.SessionId, "still this connection's snapshot");
            Sync.Run(() => selection.SkipAsync());
            Assert.AreEqual(4, selection.Current.Step);

            // another grid enabled on the same connection (a UI swap, a scene load) has nothing to take up: the step-2 grid
            // is not the server's, and a choose on it would be judged against step 4's faces
            var late = new SelectionSession(client);
            int sent = _script.Server.Received.Count;
            Assert.IsFalse(late.TryResume(), "the resumed grid is stale");
            Assert.AreEqual(RestoreOutcome.NothingShown, Sync.Run(() => late.RestoreAsync()));
            Assert.IsNull(late.Current);
            Assert.AreEqual(sent, _script.Server.Received.Count, "nothing sent");
            Assert.AreEqual(RestoreOutcome.SameSession, Sync.Run(() => selection.RestoreAsync()), "the user's own grid is the server's");

            // every other selection request retires it too, each on a connection that resumed afresh
            var requests = new List<KeyValuePair<string, Func<Task>>>
            {
                new KeyValuePair<string, Func<Task>>("back", () => client.BackAsync()),
                new KeyValuePair<string, Func<Task>>("start", () => client.StartRandomAsync("pca", 5, null)),
                new KeyValuePair<string, Func<Task>>("study.next (refused)", async () =>
                {
                    try { await client.StudyNextAsync(); }
                    catch (OmokageServerException e) when (e.Code == ErrorCodes.WrongState) { }
                }),
                new KeyValuePair<string, Func<Task>>("decide", () => client.DecideAsync(1)),
            };
            foreach (var request in requests)
            {
                DropAndWaitForTheNextWelcome();
                Assert.IsNotNull(client.ResumedGrid, request.Key + ": resumed");
                Sync.Run(request.Value);
                Assert.IsNull(client.ResumedGrid, request.Key + " retires the resumed grid");
                Assert.IsFalse(new SelectionSession(client).TryResume(), request.Key + ": nothing to take up");
            }
        }

        [Test]
        public void BetweenAResumedWelcomeAndTheRestore_NothingCanBePicked()
        {
            var client = Client();
            Sync.Run(() => client.ConnectAsync());
            var selection = new SelectionSession(client);
            Sync.Run(() => selection.StartRandomAsync("pca", 3, null));
            Sync.Run(() => selection.ChooseAsync(4));
            Assert.IsTrue(selection.CanChoose);
            Assert.IsTrue(selection.CanGoBack);

            // what a button asks the moment the client is Connected again, before the app's Connected handler (posted to
            // the main thread) restores: a pick sent then is applied on the server and dropped by the restore
            bool? canChoose = null, canGoBack = null;
            client.StateChanged += state =>
            {
                if (state != ConnectionState.Connected || canChoose.HasValue) return;
                canChoose = selection.CanChoose;
                canGoBack = selection.CanGoBack;
            };
            DropAndWaitForTheNextWelcome();
            Assert.AreEqual(true, client.Welcome.Resumed);
            Assert.AreEqual(false, canChoose, "no choose, skip or decide before the restore");
            Assert.AreEqual(false, canGoBack, "no back before the restore");
            Assert.IsTrue(selection.NeedsRestore);
            Assert.IsFalse(selection.CanChoose);
            Assert.IsFalse(selection.CanGoBack);

            // a UI asks every frame: allocation-free, also while a restore is due
            bool any = false;
            for (int i = 0; i < 100; i++) any |= selection.CanChoose | selection.CanGoBack;  // warm up
            long before = GC.GetAllocatedBytesForCurrentThread();
            for (int i = 0; i < 10000; i++) any |= selection.CanChoose | selection.CanGoBack;
            Assert.AreEqual(0, GC.GetAllocatedBytesForCurrentThread() - before, "bytes allocated by 10,000 CanChoose and CanGoBack");
            Assert.IsFalse(any);

            Assert.AreEqual(RestoreOutcome.Resumed, Sync.Run(() => selection.RestoreAsync()));
            Assert.IsTrue(selection.CanChoose, "restored: picking goes on");
            Assert.IsTrue(selection.CanGoBack);
            Assert.AreEqual(1, Sync.Run(() => selection.BackAsync()).Step);
        }

        [Test]
        public void Offline_NoBackIsOffered()
        {
            var client = Client(o => o.AutoReconnect = false);
            Sync.Run(() => client.ConnectAsync());
            var selection = new SelectionSession(client);
            Sync.Run(() => selection.StartRandomAsync("pca", 3, null));
            Sync.Run(() => selection.ChooseAsync(4));
            Assert.IsTrue(selection.CanGoBack);

            _script.Current.Close();
            Sync.WaitUntil(() => client.State == ConnectionState.Disconnected, TimeSpan.FromSeconds(10), "the link lost");
            Assert.IsFalse(selection.CanGoBack, "a back now would only fail with \"not connected\"");
            Assert.Throws<OmokageConnectionException>(() => Sync.Run(() => selection.BackAsync()));

            int welcomes = Welcomes;
            Sync.Run(() => client.ConnectAsync());
            WaitForWelcome(welcomes);
            Assert.IsFalse(selection.CanGoBack, "connected, but the restore is due");
            Assert.AreEqual(RestoreOutcome.Resumed, Sync.Run(() => selection.RestoreAsync()));
            Assert.IsTrue(selection.CanGoBack);
        }

        [Test]
        public void AResumedWelcomeWithoutItsGrid_FailsTheAttempt_AndTheNextPresentsTheNewToken()
        {
            var client = Client(o => o.ConnectTimeout = TimeSpan.FromSeconds(1));
            Sync.Run(() => client.ConnectAsync());
            var selection = new SelectionSession(client);
            Sync.Run(() => selection.StartRandomAsync("pca", 3, null));

            _script.NoGridFor = "tok-1";  // a broken server: resumed true, then nothing
            DropAndWaitForTheNextWelcome();
            List<MsgMap> hellos = _script.Hellos;
            Assert.AreEqual(3, hellos.Count, "one failed attempt, then one that resumed");
            Assert.AreEqual("tok-1", hellos[1].GetString("resume"));
            Assert.AreEqual("tok-2", hellos[2].GetString("resume"), "the failed attempt's welcome gave the token presented next");
            lock (_events)
                Assert.Contains("error OmokageTimeoutException", _events, "the missing grid is reported: " + string.Join(", ", _events));
            Assert.AreEqual(_script.Connections[2].SessionId, client.SessionId, "the connection that resumed is the one in use");
            Assert.AreEqual(RestoreOutcome.Resumed, Sync.Run(() => selection.RestoreAsync()));
            Assert.AreEqual(1, selection.Current.Step);
        }

        [Test]
        public void ResumeSelectionsOff_PresentsNoToken()
        {
            var client = Client(o => o.ResumeSelections = false);
            Sync.Run(() => client.ConnectAsync());
            Sync.Run(() => new SelectionSession(client).StartRandomAsync("pca", 3, null));
            DropAndWaitForTheNextWelcome();
            Assert.IsNull(_script.Hellos[1]["resume"], "every new connection starts afresh");
            Assert.IsNull(client.ResumedGrid);
            Assert.IsNull(client.Welcome.Resumed);
        }

        [Test]
        public void ATokenNoHelloCouldPresent_IsKeptAsNone()
        {
            _script.TokenPrefix = new string('x', 64);  // 65 characters and more: over hello.resume's 64
            var client = Client();
            Assert.IsFalse(Sync.Run(() => client.ConnectAsync()).Resume.Presentable);
            Assert.IsNull(client.ResumeToken, "nothing to present");
            DropAndWaitForTheNextWelcome();
            Assert.IsNull(_script.Hellos[1]["resume"], "the reconnection works, it just does not resume");
            Assert.IsTrue(client.IsConnected);
        }

        [Test]
        public void AnOlderClient_IsGivenNoToken_AndPresentsNone()
        {
            _script.GiveTokens = false;  // what a v1.7 server does for a client that announced minor 6
            var client = Client(o => o.ProtocolMinor = 6);
            Sync.Run(() => client.ConnectAsync());
            Assert.AreEqual(6L, _script.Hellos[0].GetInt64("protocol_minor"));
            Assert.IsNull(client.ResumeToken);
            DropAndWaitForTheNextWelcome();
            Assert.IsNull(_script.Hellos[1]["resume"]);
        }

        /// <summary>How long to wait for a reconnection that must not happen: the back-off here is 50 … 200 ms, so a client that
        /// reconnected would have said several hellos by then.</summary>
        static readonly TimeSpan LongerThanAReconnect = TimeSpan.FromMilliseconds(1500);

        [Test]
        public void AConnectionClosedAsSuperseded_DoesNotReconnect_DropsItsToken_AndStartsAfreshOnRequest()
        {
            var client = Client();
            var states = new List<ConnectionState>();
            client.StateChanged += st => { lock (states) states.Add(st); };
            Exception lost = null;
            client.Disconnected += e => lost = e;
            Sync.Run(() => client.ConnectAsync());
            string first = client.SessionId;
            var selection = new SelectionSession(client);
            Sync.Run(() => selection.StartRandomAsync("pca", 3, Policies.Thompson));
            Sync.Run(() => selection.ChooseAsync(4));
            Assert.AreEqual("tok-1", client.ResumeToken);

            // another connection presented tok-1 while this one was open: the server closes this one (docs/protocol.md)
            _script.Current.SendClose(Protocol.SupersededCloseStatus, Protocol.SupersededReason);
            Sync.WaitUntil(() => client.State == ConnectionState.Superseded && Volatile.Read(ref lost) != null, TimeSpan.FromSeconds(10),
                           "the state Superseded, and Disconnected (raised after StateChanged)");
            Assert.IsInstanceOf<OmokageSupersededException>(lost, "Disconnected says why");
            Assert.IsNull(client.ResumeToken, "the token is spent: the other connection holds the selection's new one");
            Thread.Sleep(LongerThanAReconnect);
            Assert.AreEqual(ConnectionState.Superseded, client.State, "still superseded: nothing reconnects on its own");
            Assert.AreEqual(1, _script.Server.Connections, "no reconnection: it would start another selection over the user's head");
            Assert.AreEqual(1, _script.Hellos.Count);
            lock (states)
                CollectionAssert.AreEqual(new[] { ConnectionState.Connecting, ConnectionState.Connected, ConnectionState.Superseded }, states);

            // the user asks for a new selection here: a new connection that presents no token, and a new selection on it
            WelcomeMessage fresh = Sync.Run(() => client.StartAfreshAsync());
            Assert.AreEqual(2, _script.Hellos.Count);
            Assert.IsNull(_script.Hellos[1]["resume"], "the fresh connection presents no token");
            Assert.IsNull(fresh.Resumed, "a hello without resume is not told about it");
            Assert.AreEqual(ConnectionState.Connected, client.State);
            Assert.AreNotEqual(first, client.SessionId);
            Assert.AreEqual("tok-2", client.ResumeToken, "the new connection's own token");
            Assert.IsNull(client.ResumedGrid);
            CandidatesMessage grid = Sync.Run(() => selection.StartRandomAsync("pca", 5, Policies.Thompson));
            Assert.AreEqual(1, grid.Step, "a new selection");
            Assert.AreEqual(2, _script.Server.CountReceived(MessageTypes.Start));
            Assert.Throws<InvalidOperationException>(() => Sync.Run(() => client.StartAfreshAsync()), "connected: nothing to start afresh");
        }

        [Test]
        public void AReconnectionClosedAsSuperseded_IsNotRetried()
        {
            var client = Client();
            Sync.Run(() => client.ConnectAsync());
            Sync.Run(() => new SelectionSession(client).StartRandomAsync("pca", 3, null));
            Exception failed = null;
            client.BackgroundError += e => { if (e is OmokageSupersededException) failed = e; };

            // the link drops; as the reconnection presents the token, another connection presents it too and comes later: the
            // server closes the reconnection before (or after) its welcome
            var script = _script.Server.Handler;
            _script.Server.Handler = (c, m) =>
            {
                if (m.GetString("type") != MessageTypes.Hello || m.GetString("resume") == null) return script(c, m);
                c.SendClose(Protocol.SupersededCloseStatus, Protocol.SupersededReason);
                return true;
            };
            _script.Current.Close();
            Sync.WaitUntil(() => client.State == ConnectionState.Superseded, TimeSpan.FromSeconds(10), "the state Superseded");
            Thread.Sleep(LongerThanAReconnect);
            Assert.AreEqual(ConnectionState.Superseded, client.State);
            Assert.AreEqual(2, _script.Hellos.Count, "one reconnection, not retried: a retry would present the token again and take the selection back");
            Assert.IsNull(client.ResumeToken);
            Assert.IsInstanceOf<OmokageSupersededException>(failed, "the attempt's failure is reported");
        }
    }
}
