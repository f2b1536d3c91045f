using System;
using System.Collections.Generic;
using System.Linq;
using NUnit.Framework;

namespace Omokage.Client.Tests
{
    /// <summary>
    /// What the app keeps across a pause: the selection outlives its connection, and a lost server session is restored
    /// without starting over (live: a real `omokage serve`; a new client stands for the reconnection after a pause).
    /// </summary>
    [TestFixture]
    [Category("Live")]
    public class SelectionSessionTests
    {
        readonly List<OmokageClient> _clients = new List<OmokageClient>();
        readonly SentTypes _sent = new SentTypes();

        OmokageClient Connect()
        {
            var client = new OmokageClient(new OmokageClientOptions(TestEnv.ServerUrl())
            {
                AutoReconnect = false,
                PingInterval = TimeSpan.Zero,
                RequestTimeout = TimeSpan.FromSeconds(20),
            });
            _sent.Watch(client);
            _clients.Add(client);
            Sync.Run(() => client.ConnectAsync());
            return client;
        }

        [TearDown]
        public void Close()
        {
            foreach (var c in _clients) c.Dispose();
            _clients.Clear();
            _sent.Clear();
        }

        List<string> SentSince(int mark) { return _sent.Since(mark); }

        int Mark() { return _sent.Mark(); }

        [Test]
        public void Restore_AfterANewSession_RechoosesTheChosenFace()
        {
            var first = Connect();
            var selection = new SelectionSession(first);
            var grid = Sync.Run(() => selection.StartRandomAsync("pca", 21, Policies.Study));
            int chosen = grid.Items[5].Id;
            Sync.Run(() => selection.ChooseAsync(chosen));
            Assert.AreEqual(chosen, selection.ChosenId);
            Assert.IsFalse(selection.NeedsRestore);
            Assert.AreEqual(RestoreOutcome.SameSession, Sync.Run(() => selection.RestoreAsync()), "nothing to do on the same session");

            first.Dispose();  // the OS dropped the socket while the app was paused
            var second = Connect();
            selection.Client = second;
            Assert.IsTrue(selection.NeedsRestore);
            int mark = Mark();
            Assert.AreEqual(RestoreOutcome.Rechosen, Sync.Run(() => selection.RestoreAsync()));
            CollectionAssert.AreEqual(new[] { "texture.get", "start", "choose" }, SentSince(mark), "no random restart");
            Assert.AreEqual(chosen, selection.Current.Items[0].Id, "the chosen face is first again");
            Assert.AreEqual(chosen, selection.ChosenId);
            Assert.AreEqual(second.SessionId, selection.SessionId);
            Assert.IsFalse(selection.NeedsRestore);
            Assert.AreEqual(3, Sync.Run(() => selection.ChooseAsync(selection.Current.Items[1].Id)).Step, "the selection goes on (steps count from the restore)");
        }

        [Test]
        public void Restore_ASeededFirstGrid_ComesBackFaceForFace()
        {
            var selection = new SelectionSession(Connect());
            var grid = Sync.Run(() => selection.StartRandomAsync("pca", 33, null));
            selection.Client.Dispose();
            selection.Client = Connect();
            Assert.AreEqual(RestoreOutcome.SameSeed, Sync.Run(() => selection.RestoreAsync()));
            CollectionAssert.AreEqual(grid.Items.Select(i => i.Id).ToList(), selection.Current.Items.Select(i => i.Id).ToList());
        }

        [Test]
        public void Restore_AfterASkip_ShowsTheFirstFaceAndItsNearest()
        {
            var selection = new SelectionSession(Connect());
            Sync.Run(() => selection.StartRandomAsync("pca", null, Policies.Study));
            var skipped = Sync.Run(() => selection.SkipAsync());
            Assert.IsNull(selection.ChosenId);
            selection.Client.Dispose();
            selection.Client = Connect();
            Assert.AreEqual(RestoreOutcome.NearestToFirst, Sync.Run(() => selection.RestoreAsync()));
            Assert.IsTrue(selection.Current.Items.Any(i => i.Id == skipped.Items[0].Id), "the first face of the lost grid is there");
            Assert.IsNull(selection.ChosenId, "nothing is chosen on the user's behalf");
        }

        [Test]
        public void Restore_AfterADecision_KeepsItAndSendsNothing()
        {
            var selection = new SelectionSession(Connect());
            var grid = Sync.Run(() => selection.StartRandomAsync("pca", 5, null));
            var decided = Sync.Run(() => selection.DecideAsync(grid.Items[2].Id));
            selection.Client.Dispose();  // the browser opened; the app was paused
            selection.Client = Connect();
            int mark = Mark();
            Assert.IsFalse(selection.NeedsRestore);
            Assert.AreEqual(RestoreOutcome.Decided, Sync.Run(() => selection.RestoreAsync()));
            Assert.AreSame(decided, selection.LastDecision, "the decision is kept");
            CollectionAssert.IsEmpty(SentSince(mark), "no new selection is started behind the user's back");
        }

        [Test]
        public void NothingShown_NothingRestored()
        {
            var selection = new SelectionSession(Connect());
            Assert.AreEqual(RestoreOutcome.NothingShown, Sync.Run(() => selection.RestoreAsync()));
            Assert.IsNull(selection.Current);
        }
    }
}
