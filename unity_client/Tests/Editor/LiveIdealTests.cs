using System;
using System.Collections.Generic;
using System.Linq;
using NUnit.Framework;

namespace Omokage.Client.Tests
{
    /// <summary>v1.5 ideal face against a real `omokage serve` (OMOKAGE_SERVER_URL; .ci/csharp.sh fits a PCA model, so the server
    /// announces <c>welcome.ideal</c>): after a choose, <c>ideal</c> gives a generated JPEG of <c>welcome.ideal.image_size</c>
    /// and 9 faces the selection has not shown, nearest first; near another face shown, near one never shown
    /// (<c>not_found</c>), outside a selection (<c>wrong_state</c>); <see cref="SelectionSession.IdealAsync"/>; a v1.4 client is
    /// not told.</summary>
    [TestFixture]
    [Category("Live")]
    public class LiveIdealTests
    {
        readonly LiveClients _clients = new LiveClients();

        [TearDown]
        public void CloseClients() { _clients.CloseAll(); }

        OmokageClient Connect(int? minor = Protocol.Minor)
        {
            return _clients.Connect(TestEnv.ServerUrl(), o => o.ProtocolMinor = minor);
        }

        static void CheckIdeal(OmokageClient client, IdealResultMessage ideal, ICollection<int> shown)
        {
            Assert.AreEqual(9, ideal.Items.Count, "limits.grid_size faces");
            var ids = ideal.Items.Select(i => i.Id).ToList();
            CollectionAssert.AllItemsAreUnique(ids);
            foreach (int id in ids) CollectionAssert.DoesNotContain(shown, id, "a face already shown in this selection");
            for (int i = 0; i < ideal.Items.Count; i++)
            {
                Assert.IsTrue(ideal.Items[i].Distance.HasValue, "each face's distance to the generated one");
                Assert.That(ideal.Items[i].Distance.Value, Is.GreaterThanOrEqualTo(0));
                if (i > 0) Assert.That(ideal.Items[i].Distance.Value, Is.GreaterThanOrEqualTo(ideal.Items[i - 1].Distance.Value), "nearest first");
                Assert.IsTrue(Hashing.IsHash(ideal.Items[i].Texture), "a texture hash to fetch");
                StringAssert.StartsWith("https://", ideal.Items[i].Url);
            }
            Assert.AreEqual("jpeg", ideal.Preview.Format);
            Assert.AreEqual("jpeg", Hashing.SniffImageFormat(ideal.Preview.Data), "the inline preview is a JPEG");
            Assert.IsTrue(ideal.Preview.HashMatches(), "addressed by its SHA-256");
            Assert.AreEqual(client.IdealImageSize, ideal.Preview.Width, "welcome.ideal.image_size");
            Assert.AreEqual(client.IdealImageSize, ideal.Preview.Height);
        }

        [Test]
        public void AfterAChoose_TheIdealFace_AndNineUnseenFacesNearIt()
        {
            var client = Connect();
            Assert.IsTrue(client.IdealAccepted, "the server serves a PCA model: welcome.ideal");
            Assert.AreEqual(client.Welcome.Catalog.ImageSize, client.IdealImageSize, "the catalog's image size");

            var before = Assert.Throws<OmokageServerException>(() => Sync.Run(() => client.IdealAsync()));
            Assert.AreEqual(ErrorCodes.WrongState, before.Code, "no selection yet");

            CandidatesMessage first = Sync.Run(() => client.StartRandomAsync("pca", 3));
            int chosen = first.Items[3].Id;
            CandidatesMessage second = Sync.Run(() => client.ChooseAsync(chosen));
            var shown = new HashSet<int>(first.Items.Select(i => i.Id).Concat(second.Items.Select(i => i.Id)));

            IdealResultMessage ideal = Sync.Run(() => client.IdealAsync());
            Assert.AreEqual(chosen, ideal.Near, "near the last face chosen");
            CheckIdeal(client, ideal, shown);

            int other = first.Items[7].Id;
            IdealResultMessage nearOther = Sync.Run(() => client.IdealAsync(other));
            Assert.AreEqual(other, nearOther.Near, "near another face shown in this selection");
            CheckIdeal(client, nearOther, shown);

            int never = Enumerable.Range(0, client.Welcome.Catalog.Count).First(id => !shown.Contains(id));
            var notShown = Assert.Throws<OmokageServerException>(() => Sync.Run(() => client.IdealAsync(never)));
            Assert.AreEqual(ErrorCodes.NotFound, notShown.Code, "near a face never shown");
            Assert.Throws<ArgumentOutOfRangeException>(() => client.IdealAsync(-1), "refused before anything is sent");

            // the grid did not change: the selection goes on
            CandidatesMessage third = Sync.Run(() => client.ChooseAsync(second.Items[1].Id));
            Assert.AreEqual(3, third.Step);
            Sync.Run(() => client.DecideAsync(third.Items[0].Id));
            var after = Assert.Throws<OmokageServerException>(() => Sync.Run(() => client.IdealAsync()));
            Assert.AreEqual(ErrorCodes.WrongState, after.Code, "after the decision");
        }

        [Test]
        public void SelectionSession_KeepsTheIdealOfItsSelection()
        {
            var client = Connect();
            var session = new SelectionSession(client);
            Assert.Throws<InvalidOperationException>(() => Sync.Run(() => session.IdealAsync()), "no grid yet");
            var raised = new List<IdealResultMessage>();
            session.IdealReceived += raised.Add;

            CandidatesMessage grid = Sync.Run(() => session.StartRandomAsync("pca", 11, null));
            grid = Sync.Run(() => session.SkipAsync());
            IdealResultMessage ideal = Sync.Run(() => session.IdealAsync());
            Assert.AreSame(ideal, session.LastIdeal);
            Assert.AreEqual(1, raised.Count);
            CollectionAssert.Contains(grid.Items.Select(i => i.Id).ToList(), ideal.Near, "after a skip: the most probable face on screen");

            Sync.Run(() => session.StartRandomAsync("pca", 12, null));
            Assert.IsNull(session.LastIdeal, "a new selection has a new belief");
            Sync.Run(() => session.DecideAsync(session.Current.Items[0].Id));
            Assert.Throws<InvalidOperationException>(() => Sync.Run(() => session.IdealAsync()), "decided");
            Assert.AreEqual(1, raised.Count);
        }

        [Test]
        public void SelectionSession_ForgetsAnIdealWhosePickWasTakenBack()
        {
            var client = Connect();
            Assume.That(client.Welcome.ProtocolMinor, Is.GreaterThanOrEqualTo(7), "back needs a v1.7 server");
            var session = new SelectionSession(client);
            CandidatesMessage first = Sync.Run(() => session.StartRandomAsync("pca", 13, null));
            IdealResultMessage early = Sync.Run(() => session.IdealAsync());
            Sync.Run(() => session.ChooseAsync(first.Items[3].Id));
            Sync.Run(() => session.BackAsync());
            Assert.AreSame(early, session.LastIdeal, "asked for on the grid that returns: its belief never held the undone pick");

            CandidatesMessage second = Sync.Run(() => session.ChooseAsync(first.Items[5].Id));
            IdealResultMessage late = Sync.Run(() => session.IdealAsync());
            Assert.AreSame(late, session.LastIdeal);
            Sync.Run(() => session.ChooseAsync(second.Items[2].Id));
            Sync.Run(() => session.BackAsync());
            Assert.AreSame(late, session.LastIdeal, "back to the grid it was asked for on: still this belief's");
            Sync.Run(() => session.BackAsync());
            Assert.AreEqual(1, session.Current.Step);
            Assert.IsNull(session.LastIdeal, "its belief held the pick taken back");
        }

        [Test]
        public void AV1_4Client_IsNotToldAboutIdealFaces()
        {
            var old = Connect(4);
            Assert.IsFalse(old.IdealAccepted);
            Assert.AreEqual(0, old.IdealImageSize);
            Assert.IsFalse(old.Welcome.Raw.ContainsKey("ideal"), "not on the wire");
            Assert.IsNull(old.GazeProfile);
        }
    }
}
