using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.Linq;
using NUnit.Framework;

namespace Omokage.Client.Tests
{
    /// <summary>v1.3 live sketch search against a real `omokage serve` with a sketch model (<see cref="SketchServer"/>):
    /// strokes drawn live through <see cref="SketchPad"/> in pieces, coalesced results with 9 faces and a JPEG preview, a
    /// selection started from the drawing, and refusals that leave the drawing unchanged.</summary>
    [TestFixture]
    [Category("Live")]
    public class LiveSketchTests
    {
        readonly LiveClients _clients = new LiveClients();

        OmokageClient Connect(int? minor = null)
        {
            return _clients.Connect(SketchServer.Url(), o => { if (minor.HasValue) o.ProtocolMinor = minor; });
        }

        [TearDown]
        public void CloseClients() { _clients.CloseAll(); }

        /// <summary>Draws one stroke the way the panel does: a point per 90 Hz frame, pieces at ≤ 30 Hz; returns the last
        /// rid sent. The frames are replayed at once (the pad is given their times).</summary>
        static int DrawStroke(OmokageClient client, SketchPad pad, ref double t, Func<float, float> x, Func<float, float> y, int frames)
        {
            int last = 0;
            SketchPiece piece;
            for (int i = 0; i <= frames; i++)
            {
                t += 1.0 / 90;
                float u = i / (float)frames;
                if (pad.Frame(true, x(u), y(u), t))
                    while (pad.TakePiece(t, out piece))
                        last = client.SendSketchStroke(pad.Points, piece.FirstPoint, piece.Count, piece.Style, piece.Append);
            }
            pad.Frame(false, 0, 0, t);
            while (pad.TakePieceNow(out piece))
                last = client.SendSketchStroke(pad.Points, piece.FirstPoint, piece.Count, piece.Style, piece.Append);
            return last;
        }

        [Test]
        public void Strokes_GetNineFacesAndAJpegPreview_ThenASelectionStartsFromTheDrawing()
        {
            var client = Connect();
            Assert.That(client.Welcome.ProtocolMinor, Is.GreaterThanOrEqualTo(3), "a v1.3 server (or newer: minors are additive)");
            SketchLimits limits = client.Welcome.Sketch;
            Assert.IsNotNull(limits, "welcome.sketch");
            Assert.That(limits.Resolution, Is.GreaterThan(0));
            Assert.That(limits.PreviewSize, Is.GreaterThan(0));
            CollectionAssert.Contains(limits.Tools, SketchTools.Paint);
            var results = new List<SketchResultMessage>();
            var rejected = new List<ErrorMessage>();
            client.SketchResultReceived += r => { lock (results) results.Add(r); };
            client.SketchRejected += e => { lock (rejected) rejected.Add(e); };

            int begin = client.SendSketchBegin();
            SketchResultMessage empty = Sync.Run(() => client.WaitSketchResultAsync(begin));
            Assert.AreEqual(0, empty.Revision);
            Assert.AreEqual(0, empty.Strokes);
            Assert.AreEqual(0, empty.Items.Count, "nothing drawn: no faces");
            Assert.AreEqual("jpeg", Hashing.SniffImageFormat(empty.Preview.Data), "the average face");

            var pad = new SketchPad();
            pad.Configure(limits);
            double t = 1000;
            int sentBefore = (int)client.SketchMessagesSent;
            var watch = Stopwatch.StartNew();
            // a face outline (a circle), two eyes, and a stroke of hair colour across the top
            DrawStroke(client, pad, ref t, u => 0.5f + 0.32f * (float)Math.Cos(2 * Math.PI * u), u => 0.55f + 0.38f * (float)Math.Sin(2 * Math.PI * u), 90);
            DrawStroke(client, pad, ref t, u => 0.33f + 0.1f * u, u => 0.5f, 20);
            pad.Style = new SketchStyle(SketchTools.Paint, 236, 120, 170, 0.08);
            int last = DrawStroke(client, pad, ref t, u => 0.2f + 0.6f * u, u => 0.15f, 45);
            Assert.That(watch.ElapsedMilliseconds, Is.LessThan(2000), "strokes are sent without waiting for results");
            int pieces = (int)client.SketchMessagesSent - sentBefore;
            Assert.That(pieces, Is.GreaterThan(3), "live strokes go out in pieces");

            SketchResultMessage result = Sync.Run(() => client.WaitSketchResultAsync(last));
            Assert.AreEqual(last, result.Rid, "the last stroke's result answers it");
            Assert.AreEqual(3, result.Strokes, "appended pieces are one stroke each");
            Assert.AreEqual(pieces, result.Revision, "every piece is one revision");
            Assert.AreEqual(9, result.Items.Count);
            Assert.AreEqual(9, result.Items.Select(i => i.Id).Distinct().Count());
            foreach (var item in result.Items)
            {
                Assert.IsTrue(item.Probability.HasValue, "each face has its probability under the drawing");
                Assert.That(item.Probability.Value, Is.InRange(0.0, 1.0));
                Assert.IsTrue(Hashing.IsHash(item.Texture));
            }
            for (int i = 1; i < 9; i++)
                Assert.That(result.Items[i].Probability.Value, Is.LessThanOrEqualTo(result.Items[i - 1].Probability.Value), "best first");
            Assert.AreEqual("jpeg", result.Preview.Format);
            Assert.AreEqual("jpeg", Hashing.SniffImageFormat(result.Preview.Data), "a JPEG by its magic bytes");
            Assert.IsTrue(result.Preview.HashMatches());
            Assert.AreEqual(limits.PreviewSize, result.Preview.Width);
            lock (results)
            {
                Assert.That(results.Count, Is.LessThanOrEqualTo(pieces + 1), "no more results than messages: coalesced");
                for (int i = 1; i < results.Count; i++)
                    Assert.That(results[i].Revision, Is.GreaterThan(results[i - 1].Revision), "each result newer than the one before");
            }

            // undo the paint: two strokes left
            int undo = client.SendSketchUndo();
            Assert.IsTrue(pad.Undo());
            SketchResultMessage undone = Sync.Run(() => client.WaitSketchResultAsync(undo));
            Assert.AreEqual(2, undone.Strokes);
            Assert.AreEqual(pieces + 1, undone.Revision);
            Assert.AreEqual(9, undone.Items.Count);

            // pick from these: the selection's first grid is the drawing's 9 faces
            CandidatesMessage grid = Sync.Run(() => client.StartSketchAsync("pca", client.Welcome.DefaultPolicy));
            Assert.AreEqual(1, grid.Step);
            Assert.AreEqual(9, grid.Items.Count);
            CollectionAssert.AreEquivalent(undone.Items.Select(i => i.Id).ToList(), grid.Items.Select(i => i.Id).ToList(),
                                           "the latest result's faces");
            CandidatesMessage next = Sync.Run(() => client.ChooseAsync(grid.Items[2].Id));
            Assert.AreEqual(2, next.Step, "then as any selection");
            Assert.AreEqual(grid.Items[2].Id, next.Items[0].Id);
            lock (rejected) Assert.IsEmpty(rejected, string.Join("; ", rejected.Select(e => e.Code + " " + e.Message)));

            // the textures of a result's faces are fetched like any others
            TextureFetchResult textures = Sync.Run(() => client.FetchTexturesAsync(undone.Items.Select(i => i.Texture)));
            Assert.AreEqual(0, textures.NotFound.Count);
        }

        [Test]
        public void ABadPoint_IsBadField_AndTheDrawingIsUnchanged()
        {
            var client = Connect();
            var rejected = new List<ErrorMessage>();
            client.SketchRejected += e => { lock (rejected) rejected.Add(e); };
            client.SendSketchBegin();
            int first = client.SendSketchStroke(new[] { 0.2, 0.3, 0.5, 0.35, 0.8, 0.3 }, SketchStyle.DefaultPen);
            SketchResultMessage before = Sync.Run(() => client.WaitSketchResultAsync(first));
            Assert.AreEqual(1, before.Strokes);

            int bad = client.SendSketchStroke(new[] { 0.2, double.NaN, 0.4, 0.4 }, SketchStyle.DefaultPen);
            var e1 = Assert.Throws<OmokageServerException>(() => Sync.Run(() => client.WaitSketchResultAsync(bad)));
            Assert.AreEqual(ErrorCodes.BadField, e1.Code);
            Assert.AreEqual(bad, e1.Rid, "the error carries the refused message's rid");
            StringAssert.Contains("points", e1.ServerMessage);
            int far = client.SendSketchStroke(new[] { 0.2, 0.2, 9.0, 0.4 }, SketchStyle.DefaultPen);
            Assert.AreEqual(ErrorCodes.BadField, Assert.Throws<OmokageServerException>(() => Sync.Run(() => client.WaitSketchResultAsync(far))).Code,
                            "a coordinate far off the canvas");
            int wide = client.SendSketchStroke(new[] { 0.2, 0.2 }, new SketchStyle(null, 0, 0, 0, 0.9));
            var e3 = Assert.Throws<OmokageServerException>(() => Sync.Run(() => client.WaitSketchResultAsync(wide)));
            Assert.AreEqual(ErrorCodes.BadField, e3.Code);
            StringAssert.Contains("width", e3.ServerMessage);
            Sync.WaitUntil(() => { lock (rejected) return rejected.Count == 3; }, TimeSpan.FromSeconds(5), "three refusals");
            lock (rejected) CollectionAssert.AreEqual(new int?[] { bad, far, wide }, rejected.Select(e => e.Rid).ToList());

            // unchanged: the next stroke makes two strokes, one revision on
            int next = client.SendSketchStroke(new[] { 0.4, 0.6, 0.6, 0.6 }, SketchStyle.DefaultPen);
            SketchResultMessage after = Sync.Run(() => client.WaitSketchResultAsync(next));
            Assert.AreEqual(2, after.Strokes, "the refused strokes are not in the drawing");
            Assert.AreEqual(before.Revision + 1, after.Revision, "nor did they count as revisions");
        }

        [Test]
        public void AFlood_IsCoalesced_AndTheLastResultIncludesEverything()
        {
            var client = Connect();
            int results = 0;
            client.SketchResultReceived += r => System.Threading.Interlocked.Increment(ref results);
            client.SendSketchBegin();
            int last = 0;
            var style = new SketchStyle(SketchTools.Line, 30, 30, 30, 0.01);
            for (int i = 0; i < 150; i++)
                last = client.SendSketchStroke(new[] { 0.1 + 0.005 * i, 0.5 + 0.2 * Math.Sin(i * 0.2) }, style, i > 0);
            SketchResultMessage result = Sync.Run(() => client.WaitSketchResultAsync(last));
            Assert.AreEqual(150, result.Revision, "one stroke of 150 pieces");
            Assert.AreEqual(1, result.Strokes);
            Assert.That(results, Is.LessThan(151), "fewer results than messages");
            Assert.IsFalse(client.SketchPending);
        }

        [Test]
        public void StrokesBeforeBegin_AndAStartWithoutADrawing_AreWrongState_AndAV1_2ClientIsNotToldAboutSketching()
        {
            var client = Connect();
            int early = client.SendSketchStroke(new[] { 0.5, 0.5 }, SketchStyle.DefaultPen);
            Assert.AreEqual(ErrorCodes.WrongState, Assert.Throws<OmokageServerException>(() => Sync.Run(() => client.WaitSketchResultAsync(early))).Code);
            var start = Assert.Throws<OmokageServerException>(() => Sync.Run(() => client.StartSketchAsync("pca")));
            Assert.AreEqual(ErrorCodes.WrongState, start.Code, "no drawing with a result yet");
            int begin = client.SendSketchBegin();
            Sync.Run(() => client.WaitSketchResultAsync(begin));
            Assert.AreEqual(ErrorCodes.WrongState, Assert.Throws<OmokageServerException>(() => Sync.Run(() => client.StartSketchAsync("pca"))).Code,
                            "an empty drawing has no faces to start from");

            var old = Connect(2);
            Assert.That(old.Welcome.ProtocolMinor, Is.GreaterThanOrEqualTo(3), "the server's minor, whatever the client's");
            Assert.IsNull(old.Welcome.Sketch, "a client that said minor 2 never sees welcome.sketch");
            Assert.IsFalse(old.SketchAccepted);
        }
    }
}
