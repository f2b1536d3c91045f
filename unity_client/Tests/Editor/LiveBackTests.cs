using System;
using System.Collections.Generic;
using System.Linq;
using System.Threading;
using NUnit.Framework;

namespace Omokage.Client.Tests
{
    /// <summary>
    /// v1.7 <c>back</c> against a real `omokage serve` (OMOKAGE_SERVER_URL): after choose, choose, back the grid before the
    /// last pick comes back with the same faces in the same order and its step, the session's face chosen last goes back with
    /// it (also past a skip, and down to the first grid), and the selection goes on from there; back on the first grid,
    /// before a start and after the decision is <c>wrong_state</c>, surfaced as an <see cref="OmokageServerException"/> (and
    /// <see cref="OmokageError.From"/>'s code), with the grid and the link unchanged. The lost-reply case is in
    /// <see cref="LiveResumeTests"/> (it needs the relay) and <see cref="ResumeTests"/>.
    /// </summary>
    [TestFixture]
    [Category("Live")]
    public class LiveBackTests
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
            Assert.That(client.Welcome.ProtocolMinor, Is.GreaterThanOrEqualTo(7), "a v1.7 server");
            return client;
        }

        List<string> SentSince(int mark) { return _sent.Since(mark); }

        int Mark() { return _sent.Mark(); }

        static List<int> Ids(CandidatesMessage grid) { return grid.Items.Select(i => i.Id).ToList(); }

        static void AssertSameGrid(CandidatesMessage expected, CandidatesMessage actual, string what)
        {
            Assert.AreEqual(expected.Step, actual.Step, what + ": its step");
            CollectionAssert.AreEqual(Ids(expected), Ids(actual), what + ": the same faces in the same order");
            CollectionAssert.AreEqual(expected.Items.Select(i => i.Texture).ToList(), actual.Items.Select(i => i.Texture).ToList(), what + ": textures");
            Assert.AreEqual(expected.Algorithm, actual.Algorithm);
            Assert.AreEqual(expected.Policy, actual.Policy);
        }

        [Test]
        public void ChooseChooseBack_ShowsThePreviousGrid_AndTheSelectionGoesOnFromIt()
        {
            var client = Connect();
            var selection = new SelectionSession(client);
            var changed = new List<CandidatesMessage>();
            selection.GridChanged += changed.Add;

            CandidatesMessage first = Sync.Run(() => selection.StartRandomAsync("pca", 17, Policies.Thompson));
            Assert.IsFalse(selection.CanGoBack, "the first grid: nothing to go back to");
            int a = first.Items[4].Id;
            CandidatesMessage second = Sync.Run(() => selection.ChooseAsync(a));
            Assert.IsTrue(selection.CanGoBack);
            int b = second.Items[2].Id;
            CandidatesMessage third = Sync.Run(() => selection.ChooseAsync(b));
            Assert.AreEqual(3, third.Step);
            Assert.AreEqual(b, selection.ChosenId);

            // the pending gaze belongs to the grid being left: it goes out before the back
            Assert.IsTrue(client.GazeAccepted, "welcome.gaze");
            Sync.Run(() => client.PingAsync());
            double t = ClockSync.LocalNow();
            for (int i = 0; i < 4; i++) client.Gaze.Record(GazeWireSample.Head, t + i * 0.011, 0, 1.6, 0, 0, 0, -1, 1);
            int mark = Mark();
            changed.Clear();
            CandidatesMessage back = Sync.Run(() => selection.BackAsync());
            CollectionAssert.AreEqual(new[] { "gaze.batch", "back" }, SentSince(mark), "the gaze batch, then the back");

            AssertSameGrid(second, back, "the grid before the last choose");
            Assert.AreSame(back, selection.Current, "it is the current grid");
            CollectionAssert.AreEqual(new[] { back }, changed, "GridChanged: the app shows it like any grid");
            Assert.AreEqual(a, selection.ChosenId, "the face chosen last on that grid, not the undone one");
            Assert.AreEqual(a, back.Items[0].Id);
            Assert.IsTrue(selection.CanGoBack, "step 2: one more back is possible");

            // the selection goes on from the grid that came back: the undone face is simply one of its faces again
            int c = back.Items[5].Id;
            CandidatesMessage next = Sync.Run(() => selection.ChooseAsync(c));
            Assert.AreEqual(3, next.Step, "the step after the grid that came back");
            Assert.AreEqual(c, next.Items[0].Id, "the chosen face first");
            Assert.AreEqual(c, selection.ChosenId);
            var earlier = new HashSet<int>(Ids(first).Concat(Ids(second)));
            foreach (var item in next.Items.Skip(1))
                Assert.IsFalse(earlier.Contains(item.Id), "face #" + item.Id + " was on a grid still in the selection");

            // a button asks every frame: CanGoBack allocates nothing
            bool can = false;
            for (int i = 0; i < 100; i++) can |= selection.CanGoBack;  // warm up
            long before = GC.GetAllocatedBytesForCurrentThread();
            for (int i = 0; i < 10000; i++) can &= selection.CanGoBack;
            long allocated = GC.GetAllocatedBytesForCurrentThread() - before;
            Assert.IsTrue(can);
            Assert.AreEqual(0, allocated, "bytes allocated by 10,000 CanGoBack");

            DecidedMessage decided = Sync.Run(() => selection.DecideAsync(c));
            Assert.AreEqual(c, decided.Item.Id);
            Assert.IsFalse(selection.CanGoBack, "decided");
            var refused = Assert.Throws<OmokageServerException>(() => Sync.Run(() => selection.BackAsync()));
            Assert.AreEqual(ErrorCodes.WrongState, refused.Code, "back after the decision");
            Assert.AreSame(next, selection.Current, "the decided grid stays");
        }

        [Test]
        public void BackOnTheFirstGrid_IsWrongState_AndChangesNothing()
        {
            var client = Connect();

            // before any start
            var early = Assert.Throws<OmokageServerException>(() => Sync.Run(() => client.BackAsync()));
            Assert.AreEqual(ErrorCodes.WrongState, early.Code, "back before start");

            var selection = new SelectionSession(client);
            CandidatesMessage first = Sync.Run(() => selection.StartRandomAsync("pca", 5, null));
            int changes = 0;
            selection.GridChanged += g => changes++;
            Assert.IsFalse(selection.CanGoBack);

            var refused = Assert.Throws<OmokageServerException>(() => Sync.Run(() => selection.BackAsync()));
            Assert.AreEqual(ErrorCodes.WrongState, refused.Code);
            Assert.IsTrue(refused.Rid.HasValue, "the error answers the back's rid");
            OmokageError error = OmokageError.From(refused);
            Assert.AreEqual(ErrorCodes.WrongState, error.Code, "what CandidateGrid.onError gets");
            StringAssert.Contains(refused.ServerMessage, error.Message, "the server's reason, for people");
            Assert.AreSame(first, selection.Current, "the grid stays");
            Assert.AreEqual(0, changes, "no GridChanged");
            Assert.IsTrue(client.IsConnected, "the link stays");

            // the selection goes on as if nothing happened
            CandidatesMessage second = Sync.Run(() => selection.ChooseAsync(first.Items[0].Id));
            Assert.AreEqual(2, second.Step);
        }

        [Test]
        public void BackPastASkip_TheChosenFaceComesBackWithItsGrid()
        {
            var client = Connect();
            var selection = new SelectionSession(client);
            CandidatesMessage first = Sync.Run(() => selection.StartRandomAsync("pca", 23, null));

            // a skip on the first grid, undone: the first grid again
            Sync.Run(() => selection.SkipAsync());
            CandidatesMessage again = Sync.Run(() => selection.BackAsync());
            AssertSameGrid(first, again, "the first grid after a skip and back");
            Assert.IsNull(selection.ChosenId);
            Assert.IsFalse(selection.CanGoBack);

            int a = first.Items[1].Id;
            CandidatesMessage chosen = Sync.Run(() => selection.ChooseAsync(a));
            CandidatesMessage skipped = Sync.Run(() => selection.SkipAsync());
            Assert.AreEqual(3, skipped.Step);
            Assert.IsNull(selection.ChosenId, "a skip's grid has no chosen face");

            CandidatesMessage back = Sync.Run(() => selection.BackAsync());
            AssertSameGrid(chosen, back, "the grid before the skip");
            Assert.AreEqual(a, selection.ChosenId, "the face chosen on it is the one chosen last again");

            back = Sync.Run(() => selection.BackAsync());
            AssertSameGrid(first, back, "down to the first grid");
            Assert.IsNull(selection.ChosenId, "nothing was chosen on the first grid");
            Assert.IsFalse(selection.CanGoBack);
            Assert.AreEqual(ErrorCodes.WrongState, Assert.Throws<OmokageServerException>(() => Sync.Run(() => selection.BackAsync())).Code);

            // and on from there: a skip now is step 2
            Assert.AreEqual(2, Sync.Run(() => selection.SkipAsync()).Step);
            Assert.IsTrue(selection.CanGoBack);
        }
    }
}
