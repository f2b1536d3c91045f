using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.Threading;
using NUnit.Framework;
using Omokage.Client.MessagePack;

namespace Omokage.Client.Tests
{
    /// <summary>v1.3 live sketch search, engine-free: the drawing and its pieces (<see cref="SketchPad"/>), the local ink
    /// (<see cref="SketchRaster"/>), no allocation per frame, and the client's handling of coalesced results, stale results
    /// and refusals against the scripted <see cref="FakeServer"/>.</summary>
    [TestFixture]
    public class SketchTests
    {
        const double Frame = 1.0 / 90;

        /// <summary>Draws a horizontal line at 90 Hz for <paramref name="frames"/> frames from t; returns the time after.</summary>
        static double DrawLine(SketchPad pad, double t, int frames, float y, List<SketchPiece> pieces)
        {
            for (int i = 0; i < frames; i++)
            {
                t += Frame;
                if (pad.Frame(true, 0.1f + 0.8f * i / frames, y, t))
                {
                    SketchPiece piece;
                    while (pad.TakePiece(t, out piece)) pieces.Add(piece);
                }
            }
            return t;
        }

        static double PenUpAndDrain(SketchPad pad, double t, List<SketchPiece> pieces)
        {
            pad.Frame(false, 0, 0, t);
            for (int i = 0; i < 30 && pad.HasUnsent; i++)
            {
                t += Frame;
                SketchPiece piece;
                if (pad.PieceDue(t) && pad.TakePiece(t, out piece)) pieces.Add(piece);
            }
            return t;
        }

        [Test]
        public void LiveStroke_GoesOutInPieces_AtMost30PerSecond_ThenAppended()
        {
            var pad = new SketchPad();
            var pieces = new List<SketchPiece>();
            PenUpAndDrain(pad, DrawLine(pad, 100.0, 90, 0.5f, pieces), pieces);  // one second at 90 Hz
            Assert.AreEqual(1, pad.StrokeCount);
            Assert.AreEqual(90, pad.PointCount, "every frame moved more than MinStep");
            Assert.That(pieces.Count, Is.InRange(28, 32), "about 30 pieces for one second of drawing");
            Assert.IsFalse(pieces[0].Append, "the first piece starts the stroke");
            int next = 0;
            for (int i = 0; i < pieces.Count; i++)
            {
                if (i > 0) Assert.IsTrue(pieces[i].Append, "continuation pieces append");
                Assert.AreEqual(0, pieces[i].Stroke);
                Assert.AreEqual(next, pieces[i].FirstPoint, "pieces are contiguous, in order");
                next += pieces[i].Count;
            }
            Assert.AreEqual(90, next, "every point sent once");
            Assert.IsFalse(pad.HasUnsent);
            Assert.AreEqual(SketchTools.Line, pieces[0].Style.Tool);
        }

        [Test]
        public void PieceTimes_KeepTo30Hz_NeverTwoInAFrame()
        {
            foreach (double hz in new[] { 72.0, 90.0, 120.0, 1000.0 })
            {
                var pad = new SketchPad();
                var times = new List<double>();
                for (int i = 1; i <= (int)(19.9 * hz); i++)  // 20 s: strokes of 0.8 s, the pen up 0.2 s
                {
                    double t = 10.0 + i / hz;
                    double phase = (t - 10.0) % 1.0;
                    pad.Frame(phase < 0.8, (float)phase, 0.05f + 0.045f * (int)(t - 10.0), t);
                    SketchPiece piece;
                    int thisFrame = 0;
                    while (pad.TakePiece(t, out piece))
                    {
                        times.Add(t);
                        thisFrame++;
                    }
                    Assert.That(thisFrame, Is.LessThanOrEqualTo(1), hz + " Hz: never two pieces in one frame");
                }
                Assert.AreEqual(20, pad.StrokeCount, hz + " Hz");
                for (int i = 0; i + 30 < times.Count; i++)
                    Assert.That(times[i + 30] - times[i], Is.GreaterThanOrEqualTo(29.0 / 30 - 1e-9), hz + " Hz: 31 pieces span a second");
                Assert.That(times.Count, Is.InRange(20 * 0.8 * 30 - 20, 20 * 0.8 * 30 + 20), hz + " Hz: ~30 pieces a second while drawing");
            }
        }

        [Test]
        public void LongStrokes_AreSplitByMessage_AndGoOnAsANewStrokeAtTheStrokeLimit()
        {
            var pad = new SketchPad();
            pad.Configure(new SketchLimits { MaxPointsPerMessage = 8, MaxPointsPerStroke = 20, MaxStrokes = 256 });
            pad.MinStep = 0;
            for (int i = 0; i < 30; i++) pad.Pen(i / 30f, 0.5f);
            pad.EndStroke();
            Assert.AreEqual(2, pad.StrokeCount, "20 points, then a new stroke from the 20th");
            Assert.AreEqual(20, pad.StrokeLength(0));
            Assert.AreEqual(11, pad.StrokeLength(1), "its first point repeats the last of the stroke before");
            Assert.AreEqual(pad.Points[2 * 19], pad.Points[2 * pad.StrokeStart(1)]);
            var pieces = new List<SketchPiece>();
            SketchPiece piece;
            while (pad.TakePieceNow(out piece)) pieces.Add(piece);
            CollectionAssert.AreEqual(new[] { 8, 8, 4, 8, 3 }, pieces.ConvertAll(p => p.Count), "at most 8 points a message");
            CollectionAssert.AreEqual(new[] { false, true, true, false, true }, pieces.ConvertAll(p => p.Append));
            CollectionAssert.AreEqual(new[] { 0, 0, 0, 1, 1 }, pieces.ConvertAll(p => p.Stroke));
        }

        [Test]
        public void Undo_DropsUnsentStrokesSilently_AndAsksTheServerOtherwise()
        {
            var pad = new SketchPad();
            var pieces = new List<SketchPiece>();
            double t = PenUpAndDrain(pad, DrawLine(pad, 0, 20, 0.2f, pieces), pieces);
            Assert.IsFalse(pad.HasUnsent);
            DrawLine(pad, t, 5, 0.6f, pieces);  // a second stroke, partly sent
            int before = pieces.Count;
            SketchPiece piece;
            pad.TakePieceNow(out piece);
            Assert.AreEqual(1, piece.Stroke);
            Assert.IsTrue(pad.Undo(), "the server has some of it: sketch.undo");
            Assert.AreEqual(1, pad.StrokeCount);
            Assert.IsFalse(pad.HasUnsent, "its unsent remainder is dropped too");

            pad.Pen(0.5f, 0.5f);
            pad.Pen(0.6f, 0.6f);  // a third stroke, nothing sent yet
            Assert.IsFalse(pad.Undo(), "never sent: dropped locally, nothing to tell the server");
            Assert.AreEqual(1, pad.StrokeCount);
            Assert.IsFalse(pad.HasUnsent);

            Assert.IsTrue(pad.Clear(), "the server has the first stroke");
            Assert.AreEqual(0, pad.StrokeCount);
            Assert.AreEqual(0, pad.PointCount);
            Assert.IsFalse(pad.Clear(), "nothing left");
            Assert.IsFalse(pad.Undo());
            Assert.That(pieces.Count, Is.GreaterThanOrEqualTo(before));
        }

        [Test]
        public void MarkAllUnsent_ReplaysTheDrawingStrokeByStroke()
        {
            var pad = new SketchPad();
            pad.MinStep = 0;
            pad.Style = new SketchStyle(SketchTools.Paint, 200, 100, 50, 0.08);
            for (int s = 0; s < 3; s++)
            {
                for (int i = 0; i < 4; i++) pad.Pen(0.1f * i, 0.2f * s);
                pad.EndStroke();
            }
            SketchPiece piece;
            while (pad.TakePieceNow(out piece)) { }
            pad.MarkAllUnsent();
            var replay = new List<SketchPiece>();
            while (pad.TakePieceNow(out piece)) replay.Add(piece);
            CollectionAssert.AreEqual(new[] { 0, 1, 2 }, replay.ConvertAll(p => p.Stroke));
            Assert.IsTrue(replay.TrueForAll(p => !p.Append && p.Count == 4 && p.Style.IsPaint), "each stroke whole, in its own style");
        }

        [Test]
        public void AFullDrawing_IgnoresNewStrokes()
        {
            var pad = new SketchPad(maxStrokes: 2, maxPoints: 100);
            pad.MinStep = 0;
            for (int s = 0; s < 3; s++)
            {
                pad.Pen(0.1f, 0.1f * s);
                pad.Pen(0.2f, 0.1f * s);
                pad.EndStroke();
            }
            Assert.AreEqual(2, pad.StrokeCount);
            Assert.IsTrue(pad.Full);
            pad.Undo();
            Assert.IsFalse(pad.Full);
            pad.Pen(float.NaN, 0.5f);
            Assert.AreEqual(1, pad.StrokeCount, "NaN is never recorded");
            pad.Pen(-3f, 7f);
            Assert.AreEqual(0f, pad.Points[2 * pad.StrokeStart(1)], "clamped onto the canvas");
            Assert.AreEqual(1f, pad.Points[2 * pad.StrokeStart(1) + 1]);
        }

        [Test]
        public void Ink_ShowsStrokesInTheirColour_AndUndoRedrawsWithoutThem()
        {
            var raster = new SketchRaster(64);
            var pad = new SketchPad { Ink = raster };
            pad.Style = new SketchStyle(SketchTools.Line, 10, 20, 30, 0.05);
            pad.Pen(0.1f, 0.25f);
            pad.Pen(0.9f, 0.25f);
            pad.EndStroke();
            pad.Style = new SketchStyle(SketchTools.Paint, 250, 0, 0, 0.1);
            pad.Pen(0.5f, 0.8f);
            pad.EndStroke();
            byte r, g, b;
            Assert.IsTrue(raster.Dirty);
            raster.PixelAt(0.5f, 0.25f, out r, out g, out b);
            Assert.AreEqual(new[] { 10, 20, 30 }, new[] { (int)r, g, b }, "the line, near the top (y down)");
            raster.PixelAt(0.5f, 0.8f, out r, out g, out b);
            Assert.AreEqual(250, r, "the paint dot");
            raster.PixelAt(0.5f, 0.5f, out r, out g, out b);
            Assert.AreEqual(255, g, "untouched paper");
            // rows run bottom-up for LoadRawTextureData: canvas y = 0.25 is row 48 of 64
            Assert.AreEqual(10, raster.Pixels[4 * (48 * 64 + 32)]);

            raster.Dirty = false;
            pad.Undo();
            Assert.IsTrue(raster.Dirty);
            raster.PixelAt(0.5f, 0.8f, out r, out g, out b);
            Assert.AreEqual(255, g, "the paint is gone");
            raster.PixelAt(0.5f, 0.25f, out r, out g, out b);
            Assert.AreEqual(10, r, "the line stays");
        }

        [Test]
        public void StrokeLimit_WithOneSlotLeft_EndsTheDrawingInsteadOfOverrunning()
        {
            // 5 points in all, 4 a stroke: the 5th point of a long stroke would start a new stroke from the 4th (one point)
            // and then need a 6th slot; it threw IndexOutOfRangeException
            var pad = new SketchPad(8, 5);
            pad.Configure(new SketchLimits { MaxPointsPerStroke = 4 });
            pad.MinStep = 0;
            for (int i = 0; i < 5; i++) pad.Pen(i / 10f, 0.5f);
            Assert.AreEqual(1, pad.StrokeCount, "no room for the continuation: the stroke ends");
            Assert.AreEqual(4, pad.PointCount);
            Assert.IsFalse(pad.Drawing);
            pad.Pen(0.9f, 0.9f);  // pen down again: a one-point stroke still fits
            Assert.AreEqual(2, pad.StrokeCount);
            Assert.AreEqual(5, pad.PointCount);
            Assert.IsTrue(pad.Full);
            pad.Pen(0.95f, 0.9f);
            Assert.AreEqual(5, pad.PointCount, "full: nothing more");

            // with two slots left the stroke goes on from its last point as before
            pad = new SketchPad(8, 6);
            pad.Configure(new SketchLimits { MaxPointsPerStroke = 4 });
            pad.MinStep = 0;
            for (int i = 0; i < 6; i++) pad.Pen(i / 10f, 0.5f);
            Assert.AreEqual(2, pad.StrokeCount);
            Assert.AreEqual(6, pad.PointCount);
            Assert.AreEqual(pad.Points[2 * 3], pad.Points[2 * pad.StrokeStart(1)], "the new stroke begins at the last point");
        }

        [Test]
        public void WelcomeLimits_BoundPointsWidthAndTools()
        {
            var welcome = (WelcomeMessage)ServerMessage.Parse(SketchWelcome(1, "s").Set("sketch", new MsgMap
            {
                { "resolution", 32L }, { "preview_size", 96L }, { "tools", new List<object> { "line" } }, { "min_width", 0.005 },
                { "max_width", 0.05 }, { "max_strokes", 256L }, { "max_points_per_message", 512L }, { "max_points_per_stroke", 4096L },
                { "max_points", 10L },
            }));
            SketchLimits limits = welcome.Sketch;
            Assert.AreEqual(10, limits.MaxPoints, "welcome.sketch.max_points");
            Assert.AreEqual(65536, ((WelcomeMessage)ServerMessage.Parse(SketchWelcome(1, "s"))).Sketch.MaxPoints, "absent: the protocol's");

            var pad = new SketchPad();
            pad.Configure(limits);
            pad.MinStep = 0;
            Assert.AreEqual(10, pad.MaxPoints);
            pad.Style = new SketchStyle(SketchTools.Paint, 200, 10, 10, 0.2);  // too wide, and a tool the server does not offer
            for (int i = 0; i < 6; i++) pad.Pen(i / 10f, 0.2f);
            pad.EndStroke();
            Assert.AreEqual(0.05, pad.StrokeStyle(0).Width, 1e-12, "clamped to max_width");
            Assert.AreEqual(SketchTools.Line, pad.StrokeStyle(0).Tool, "a tool the server offers");
            Assert.AreEqual(200, pad.StrokeStyle(0).R, "the colour stays");
            pad.Style = new SketchStyle(SketchTools.Line, 0, 0, 0, 0.001);
            for (int i = 0; i < 6; i++) pad.Pen(i / 10f, 0.6f);
            Assert.AreEqual(0.005, pad.StrokeStyle(1).Width, 1e-12, "clamped to min_width");
            Assert.AreEqual(10, pad.PointCount, "max_points over the whole drawing");
            Assert.IsTrue(pad.Full);
            var pieces = new List<SketchPiece>();
            SketchPiece piece;
            while (pad.TakePieceNow(out piece)) pieces.Add(piece);
            Assert.AreEqual(0.005, pieces[1].Style.Width, 1e-12, "what is sent is the fitted style");

            // a server that offers paint only: a line becomes paint
            var paintOnly = new SketchLimits { Tools = new List<string> { SketchTools.Paint } };
            Assert.AreEqual(SketchTools.Paint, paintOnly.Fit(SketchStyle.DefaultPen).Tool);
            Assert.AreEqual(0.012, paintOnly.Fit(SketchStyle.DefaultPen).Width, 1e-12, "within the widths: unchanged");
        }

        [Test]
        public void PerFramePath_AllocatesNothing()
        {
            var raster = new SketchRaster(256);
            var pad = new SketchPad { Ink = raster };
            pad.Configure(new SketchLimits());  // the welcome's limits: each stroke's style is fitted to them as it begins
            double t = 1.0;
            int pieces = 0;
            Action frames = () =>
            {
                for (int i = 0; i < 20000; i++)
                {
                    t += Frame;
                    int phase = i % 180;  // 1.5 s strokes, then 0.5 s with the pen up
                    float a = phase * 0.05f;
                    bool down = phase < 135;
                    bool due = pad.Frame(down, 0.5f + 0.3f * (float)Math.Cos(a), 0.5f + 0.3f * (float)Math.Sin(a), t);
                    SketchPiece piece;
                    if (due)
                        while (pad.TakePiece(t, out piece)) pieces++;
                    raster.Dirty = false;  // the component uploads it here
                    if (pad.StrokeCount >= 200) pad.Clear();
                    else if (i % 3600 == 3599) pad.Undo();
                }
            };
            frames();  // warm up: JIT and first-use allocations
            long before = GC.GetAllocatedBytesForCurrentThread();
            frames();
            long allocated = GC.GetAllocatedBytesForCurrentThread() - before;
            Assert.AreEqual(0, allocated, "bytes allocated by 20,000 frames (pen, ink, pieces, undo, clear)");
            Assert.That(pieces, Is.GreaterThan(9000), "two runs of 167 s with the pen down, at ~30 pieces a second");
        }

        [Test]
        public void StrokeBuilders_CheckTheShape_NotTheValues()
        {
            var pen = SketchStyle.DefaultPen;
            Assert.Throws<ArgumentOutOfRangeException>(() => Requests.SketchStroke(1, new double[] { 0.5 }, pen), "an odd count");
            Assert.Throws<ArgumentOutOfRangeException>(() => Requests.SketchStroke(1, new double[0], pen));
            Assert.Throws<ArgumentOutOfRangeException>(() => Requests.SketchStroke(1, new double[1026], pen), "over 512 points");
            Assert.Throws<ArgumentOutOfRangeException>(() => Requests.SketchStroke(1, new float[4], 1, 2, pen), "past the buffer");
            var nan = Requests.SketchStroke(1, new[] { float.NaN, 0.5f }, 0, 1, pen);
            Assert.IsTrue(double.IsNaN((double)nan.GetList("points")[0]), "the server judges the values");
            Assert.AreEqual(0.1, SketchStyle.Wire(0.1f));
            Assert.AreEqual(0.1234568, SketchStyle.Wire(0.12345678f), "7 significant digits: what a float means");
            Assert.AreEqual(double.PositiveInfinity, SketchStyle.Wire(float.PositiveInfinity));
            var wire = MsgPackReader.DecodeMap(MsgPackWriter.Encode(Requests.SketchStroke(3, new[] { 0.25f, 0.75f }, 0, 1,
                new SketchStyle(SketchTools.Line, 1, 2, 3, 0.01))));
            CollectionAssert.AreEqual(new[] { "type", "rid", "points", "colour", "width" }, wire.Keys, "tool line and append false are left out");
        }

        // --- the client against the scripted server ---------------------------------------------------

        static MsgMap Result(long? rid, long revision, long strokes, int items)
        {
            var list = new List<object>();
            for (int i = 0; i < items; i++)
                list.Add(new MsgMap { { "id", (long)i }, { "texture", new string('a', 64) }, { "title", "Face " + i }, { "url", "https://a.example/" + i }, { "probability", 0.1 } });
            byte[] jpeg = { 0xff, 0xd8, 0xff, 0xe0, 1, 2, 3 };
            return new MsgMap
            {
                { "type", "sketch.result" }, { "rid", rid }, { "revision", revision }, { "strokes", strokes }, { "items", list },
                { "preview", new MsgMap { { "hash", Hashing.Sha256Hex(jpeg) }, { "format", "jpeg" }, { "width", 96L }, { "height", 96L }, { "data", jpeg } } },
            };
        }

        static MsgMap SketchWelcome(long? rid, string session)
        {
            return FakeServer.Welcome(rid, session).Set("protocol_minor", 3L).Set("sketch", new MsgMap
            {
                { "resolution", 32L }, { "preview_size", 96L }, { "tools", new List<object> { "line", "paint" } }, { "min_width", 0.001 },
                { "max_width", 0.25 }, { "max_strokes", 256L }, { "max_points_per_message", 512L }, { "max_points_per_stroke", 4096L },
            });
        }

        static OmokageClient NewClient(FakeServer server)
        {
            return new OmokageClient(new OmokageClientOptions(server.Url)
            {
                AutoReconnect = false, PingInterval = TimeSpan.Zero, RequestTimeout = TimeSpan.FromSeconds(10),
            });
        }

        /// <summary>
        /// The server coalesces like the real one: while it "projects" it answers nothing; then one result answers the newest
        /// message. Scripted here: messages are held until the test releases them, then answered with one result for the
        /// newest. A stale result (an older rid again) and a duplicate are dropped; a refused stroke's error carries its rid.
        /// </summary>
        [Test]
        public void CoalescedResults_AnswerTheNewestMessage_StaleOnesAreDropped_RefusalsCarryTheirRid()
        {
            using (var server = new FakeServer())
            {
                var held = new List<long>();
                FakeServer.Connection conn = null;
                server.Handler = (c, m) =>
                {
                    string type = m.GetString("type");
                    long? rid = m.GetInt64("rid");
                    if (type == MessageTypes.Hello) { c.Send(SketchWelcome(rid, c.SessionId)); return true; }
                    if (!type.StartsWith("sketch.", StringComparison.Ordinal)) return false;
                    conn = c;
                    var points = m.GetList("points");
                    if (points != null && double.IsNaN((double)points[0]))
                    {
                        c.Send(new MsgMap { { "type", "error" }, { "rid", rid }, { "code", "bad_field" }, { "message", "sketch.stroke.points: NaN; the drawing is unchanged" } });
                        return true;
                    }
                    lock (held) held.Add(rid.Value);
                    return true;
                };
                var client = NewClient(server);
                try
                {
                    var results = new List<SketchResultMessage>();
                    var rejected = new List<ErrorMessage>();
                    var unsolicited = new List<ServerMessage>();
                    client.SketchResultReceived += r => { lock (results) results.Add(r); };
                    client.SketchRejected += e => { lock (rejected) rejected.Add(e); };
                    client.MessageReceived += m => { lock (unsolicited) unsolicited.Add(m); };
                    Sync.Run(() => client.ConnectAsync());
                    Assert.IsTrue(client.SketchAccepted);

                    // a begin and a live stroke in 6 pieces: sent at once, nothing awaited
                    var watch = Stopwatch.StartNew();
                    int begin = client.SendSketchBegin();
                    var rids = new List<int>();
                    for (int i = 0; i < 6; i++)
                        rids.Add(client.SendSketchStroke(new[] { 0.1f * i, 0.5f, 0.1f * i + 0.05f, 0.5f }, 0, 2, SketchStyle.DefaultPen, i > 0));
                    Assert.That(watch.ElapsedMilliseconds, Is.LessThan(1000), "no reply awaited");
                    Assert.IsTrue(client.SketchPending);
                    Assert.AreEqual(7, client.SketchMessagesSent);
                    Sync.WaitUntil(() => { lock (held) return held.Count == 7; }, TimeSpan.FromSeconds(5), "the server got all 7");
                    var waitThird = client.WaitSketchResultAsync(rids[2]);  // registered before the results come

                    // the server projected the begin, then everything after it at once: two results
                    conn.Send(Result(begin, 0, 0, 0));
                    conn.Send(Result(rids[5], 6, 1, 9));
                    Sync.WaitUntil(() => { lock (results) return results.Count == 2; }, TimeSpan.FromSeconds(5), "two results");
                    SketchResultMessage third = Sync.Run(() => waitThird);
                    Assert.AreEqual(rids[5], third.Rid, "the result that includes rid " + rids[2] + " answers the newest, " + rids[5]);
                    Assert.AreEqual(9, third.Items.Count);
                    Assert.IsFalse(client.SketchPending);
                    Assert.AreSame(third, client.LatestSketchResult);
                    Assert.AreEqual(rids[5], Sync.Run(() => client.WaitSketchResultAsync(rids[1])).Rid, "already covered: at once");

                    // stale: an older result again, and a duplicate of the newest
                    conn.Send(Result(rids[3], 4, 1, 9));
                    conn.Send(Result(rids[5], 6, 1, 9));
                    int undo = client.SendSketchUndo();
                    conn.Send(Result(undo, 7, 0, 0));
                    Sync.WaitUntil(() => { lock (results) return results.Count == 3; }, TimeSpan.FromSeconds(5), "the undo's result");
                    Assert.AreEqual(2, client.SketchResultsIgnored, "the stale and the repeated result");
                    lock (results)
                    {
                        CollectionAssert.AreEqual(new[] { 0, 6, 7 }, results.ConvertAll(r => r.Revision), "only newer results, in order");
                        CollectionAssert.AreEqual(new int?[] { begin, rids[5], undo }, results.ConvertAll(r => r.Rid));
                    }

                    // a refused stroke: its error names its rid and fails whoever waits for it
                    int bad = client.SendSketchStroke(new[] { double.NaN, 0.5 }, SketchStyle.DefaultPen);
                    var refused = Assert.Throws<OmokageServerException>(() => Sync.Run(() => client.WaitSketchResultAsync(bad)));
                    Assert.AreEqual(ErrorCodes.BadField, refused.Code);
                    Assert.AreEqual(bad, refused.Rid);
                    Sync.WaitUntil(() => { lock (rejected) return rejected.Count == 1; }, TimeSpan.FromSeconds(5), "SketchRejected");
                    Assert.AreEqual(bad, rejected[0].Rid);
                    Assert.IsFalse(client.SketchPending, "a refused message is covered by no result");
                    Assert.Throws<ArgumentException>(() => client.WaitSketchResultAsync(123456).GetAwaiter().GetResult(), "not a sketch rid");
                    lock (unsolicited) Assert.IsEmpty(unsolicited, "sketch results and refusals do not go to MessageReceived");
                    Assert.AreEqual(3, client.SketchResults);

                    // the wire: append only on continuation pieces, the style of the stroke
                    var strokes = server.Received.FindAll(m => m.GetString("type") == MessageTypes.SketchStroke);
                    Assert.AreEqual(7, strokes.Count);
                    Assert.IsNull(strokes[0]["append"]);
                    Assert.AreEqual(true, strokes[1]["append"]);
                    Assert.AreEqual(0.05, ((IList<object>)strokes[0]["points"])[2]);
                }
                finally { client.Dispose(); }
            }
        }

        [Test]
        public void AResultOfADrawingALaterBeginReplaced_IsStale_ButStillCompletesItsWaiters()
        {
            using (var server = new FakeServer())
            {
                FakeServer.Connection conn = null;
                server.Handler = (c, m) =>
                {
                    long? rid = m.GetInt64("rid");
                    if (m.GetString("type") == MessageTypes.Hello) { c.Send(SketchWelcome(rid, c.SessionId)); return true; }
                    conn = c;
                    return m.GetString("type").StartsWith("sketch.", StringComparison.Ordinal);
                };
                var client = NewClient(server);
                try
                {
                    var results = new List<SketchResultMessage>();
                    client.SketchResultReceived += r => { lock (results) results.Add(r); };
                    Sync.Run(() => client.ConnectAsync());
                    client.SendSketchBegin();
                    int stroke = client.SendSketchStroke(new[] { 0.2, 0.2, 0.3, 0.3 }, SketchStyle.DefaultPen);
                    int again = client.SendSketchBegin();  // the user starts over before the stroke's result came
                    Sync.WaitUntil(() => server.Received.Count == 4, TimeSpan.FromSeconds(5), "all sent");
                    var waitStroke = client.WaitSketchResultAsync(stroke);  // registered before its (stale) result comes
                    conn.Send(Result(stroke, 1, 1, 9));
                    Assert.AreEqual(stroke, Sync.Run(() => waitStroke).Rid, "its waiter gets it");
                    conn.Send(Result(again, 0, 0, 0));
                    Sync.WaitUntil(() => { lock (results) return results.Count == 1; }, TimeSpan.FromSeconds(5), "the new drawing's result");
                    Thread.Sleep(100);
                    lock (results) Assert.AreEqual(again, results[0].Rid, "the old drawing's result is not shown");
                    Assert.AreEqual(again, client.LatestSketchResult.Rid);
                    Assert.AreEqual(1, client.SketchResultsIgnored);
                }
                finally { client.Dispose(); }
            }
        }

        /// <summary>v1.6: a sharper preview is raised for the result on show only: not for an older revision, nor for a
        /// drawing a later sketch.begin replaced (a preview that crossed the begin on the way).</summary>
        [Test]
        public void ASharperPreview_IsRaisedForTheResultOnShowOnly()
        {
            using (var server = new FakeServer())
            {
                FakeServer.Connection conn = null;
                server.Handler = (c, m) =>
                {
                    long? rid = m.GetInt64("rid");
                    if (m.GetString("type") == MessageTypes.Hello)
                    {
                        var w = SketchWelcome(rid, c.SessionId).Set("protocol_minor", 6L);
                        ((MsgMap)w["sketch"]).Set("sharpens", true);
                        c.Send(w);
                        return true;
                    }
                    conn = c;
                    return m.GetString("type").StartsWith("sketch.", StringComparison.Ordinal);
                };
                var client = NewClient(server);
                try
                {
                    var previews = new List<SketchPreviewMessage>();
                    var unsolicited = new List<ServerMessage>();
                    client.SketchPreviewReceived += p => { lock (previews) previews.Add(p); };
                    client.MessageReceived += m => { lock (unsolicited) unsolicited.Add(m); };
                    Assert.IsTrue(Sync.Run(() => client.ConnectAsync()).Sketch.Sharpens);
                    int begin = client.SendSketchBegin();
                    int stroke = client.SendSketchStroke(new[] { 0.2, 0.2, 0.3, 0.3 }, SketchStyle.DefaultPen);
                    Sync.WaitUntil(() => server.Received.Count == 3, TimeSpan.FromSeconds(5), "all sent");
                    conn.Send(Result(begin, 0, 0, 0));
                    conn.Send(Preview(0));                  // the empty drawing's, while it is on show: raised
                    conn.Send(Result(stroke, 1, 1, 9));
                    conn.Send(Preview(0));                  // an older revision's: dropped
                    conn.Send(Preview(1));                  // the result on show: raised
                    Sync.WaitUntil(() => { lock (previews) return previews.Count == 2; }, TimeSpan.FromSeconds(5), "two previews");
                    client.SendSketchBegin();               // the user starts over; a preview of the old drawing crosses it
                    Sync.WaitUntil(() => server.Received.Count == 4, TimeSpan.FromSeconds(5), "the begin sent");
                    conn.Send(Preview(1));
                    Thread.Sleep(200);
                    lock (previews) CollectionAssert.AreEqual(new[] { 0, 1 }, previews.ConvertAll(p => p.Revision));
                    Assert.AreEqual(2, client.SketchPreviews);
                    lock (unsolicited) Assert.IsEmpty(unsolicited, "previews do not go to MessageReceived");
                }
                finally { client.Dispose(); }
            }
        }

        static MsgMap Preview(long revision)
        {
            byte[] jpeg = { 0xff, 0xd8, 0xff, 0xe0, 9, 9, 9 };
            return new MsgMap
            {
                { "type", "sketch.preview" }, { "revision", revision },
                { "preview", new MsgMap { { "hash", Hashing.Sha256Hex(jpeg) }, { "format", "jpeg" }, { "width", 96L }, { "height", 96L }, { "data", jpeg } } },
            };
        }

        [Test]
        public void ALostConnection_FailsWaiters_AndTheNextOneStartsWithoutADrawing()
        {
            using (var server = new FakeServer())
            {
                FakeServer.Connection conn = null;
                server.Handler = (c, m) =>
                {
                    long? rid = m.GetInt64("rid");
                    if (m.GetString("type") == MessageTypes.Hello) { c.Send(SketchWelcome(rid, c.SessionId)); return true; }
                    conn = c;
                    if (m.GetString("type") == MessageTypes.SketchBegin) { c.Send(Result(rid, 0, 0, 0)); return true; }
                    if (m.GetString("type") == MessageTypes.Start)
                    {
                        Assert.AreEqual(InitModes.Sketch, m.GetString("init"));
                        c.Send(new MsgMap { { "type", "candidates" }, { "rid", rid }, { "step", 1L }, { "algorithm", "pca" }, { "items", new List<object>() } });
                        return true;
                    }
                    return m.GetString("type").StartsWith("sketch.", StringComparison.Ordinal);
                };
                var client = new OmokageClient(new OmokageClientOptions(server.Url)
                {
                    // reconnecting after 3 s, so that a wait asked for in between meets the dropped link (with 1 s, a
                    // loaded CI machine once reconnected first and the wait hung on the new link)
                    PingInterval = TimeSpan.Zero, ReconnectInitialDelay = TimeSpan.FromSeconds(3), ReconnectMaxDelay = TimeSpan.FromSeconds(3),
                });
                try
                {
                    var welcomes = new SemaphoreSlim(0);
                    client.Connected += w => welcomes.Release();
                    Sync.Run(() => client.ConnectAsync());
                    Assert.IsTrue(welcomes.Wait(5000));
                    int begin = client.SendSketchBegin();
                    Assert.AreEqual(0, Sync.Run(() => client.WaitSketchResultAsync(begin)).Revision);
                    Assert.AreEqual(1, Sync.Run(() => client.StartSketchAsync("pca", Policies.Thompson)).Step, "start init=sketch");
                    int stroke = client.SendSketchStroke(new[] { 0.2, 0.2 }, SketchStyle.DefaultPen);
                    var wait = client.WaitSketchResultAsync(stroke);  // registered now, before the link drops
                    Sync.WaitUntil(() => conn != null && server.CountReceived(MessageTypes.SketchStroke) == 1, TimeSpan.FromSeconds(5), "the stroke arrives");
                    conn.Close();  // the link drops before the result
                    Assert.Throws<OmokageConnectionException>(() => Sync.Run(() => wait));
                    // asked after the link dropped and before the client is back: it fails at once, not at the timeout
                    var asked = System.Diagnostics.Stopwatch.StartNew();
                    Assert.Throws<OmokageConnectionException>(() => Sync.Run(() => client.WaitSketchResultAsync(stroke)));
                    Assert.Less(asked.Elapsed.TotalSeconds, 0.9, "failed at once");
                    Assert.IsTrue(welcomes.Wait(10000), "reconnected");
                    Assert.IsNull(client.LatestSketchResult, "a new connection has no drawing");
                    Assert.IsFalse(client.SketchPending);
                    Assert.Throws<ArgumentException>(() => client.WaitSketchResultAsync(stroke).GetAwaiter().GetResult(), "the old connection's rid");
                }
                finally { client.Dispose(); }
            }
        }
    }
}
