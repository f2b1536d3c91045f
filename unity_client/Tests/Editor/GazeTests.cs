using System;
using System.Collections.Generic;
using System.Threading.Tasks;
using NUnit.Framework;
using Omokage.Client.MessagePack;

namespace Omokage.Client.Tests
{
    /// <summary>The gaze sender's engine-free half (protocol v1.2 gaze.batch / layout): batching, clock alignment, the
    /// client's own hits, no allocation per frame, and the batch sent before a pick.</summary>
    [TestFixture]
    public class GazeTests
    {
        /// <summary>A clock whose offset to the server is exactly <paramref name="offset"/> (a zero round trip).</summary>
        static ClockSync ClockWithOffset(double offset)
        {
            var clock = new ClockSync();
            clock.AddSample(100.0, 100.0, 100.0 + offset);
            return clock;
        }

        /// <summary>The 3×3 grid of the golden vector layout.msgpack: 0.3 m panels 0.36 m apart, 1.5 m ahead (−z), facing the user.</summary>
        static PanelPose[] Grid()
        {
            var panels = new PanelPose[9];
            for (int k = 0; k < 9; k++)
            {
                int row = k / 3, col = k % 3;
                panels[k] = new PanelPose { Px = (col - 1) * 0.36, Py = 1.5 + (1 - row) * 0.36, Pz = -1.5, Qw = 1, Width = 0.3, Height = 0.3 };
            }
            return panels;
        }

        [Test]
        public void Samples_AreStampedOnTheServerClock()
        {
            var clock = new ClockSync();
            var stream = new GazeStream(clock);
            Assert.IsFalse(stream.Record(GazeWireSample.Head, 5.0, 0, 1.5, 0, 0, 0, -1, 1), "no offset yet: no sample");
            Assert.AreEqual(1, stream.DroppedNoClock);

            // ping sent at local 10.0, pong back at 10.2, server said 1010.3: offset = 1010.3 − 10.1 = 1000.2
            clock.AddSample(10.0, 10.2, 1010.3);
            Assert.AreEqual(1000.2, clock.Offset, 1e-9);
            Assert.IsTrue(stream.Record(GazeWireSample.Head, 10.5, 0, 1.5, 0, 0, 0, -2, 1));
            var batch = new GazeWireSample[256];
            Assert.AreEqual(1, stream.TakeBatch(batch, 10.6));
            Assert.AreEqual(1010.7, batch[0].T, 1e-9, "local time + offset");
            Assert.AreEqual(-1.0, batch[0].Dz, 1e-12, "the direction is normalised");
            Assert.IsFalse(batch[0].HasHit, "no hit given: the server casts it");

            // a better ping (smaller round trip) moves the offset back: times stay strictly increasing per source
            clock.AddSample(11.0, 11.02, 1011.0);  // offset 999.99
            Assert.IsFalse(stream.Record(GazeWireSample.Head, 10.7, 0, 1.5, 0, 0, 0, -1, 1), "would go back in server time");
            Assert.IsTrue(stream.Record(GazeWireSample.Head, 10.8, 0, 1.5, 0, 0, 0, -1, 1));
            Assert.AreEqual(1, stream.TakeBatch(batch, 11.0));
            Assert.AreEqual(10.8 + 999.99, batch[0].T, 1e-9);
        }

        [Test]
        public void Batches_AreDueEvery100ms_OldestFirst_AtMost256()
        {
            var stream = new GazeStream(ClockWithOffset(1000), 2048);
            var batch = new GazeWireSample[256];
            double t = 50.0;
            stream.TakeBatch(batch, t);  // start the flush clock
            int due = 0, sent = 0;
            for (int frame = 0; frame < 90; frame++)  // one second at 90 Hz
            {
                t += 1.0 / 90;
                Assert.IsTrue(stream.Record(GazeWireSample.Head, t, 0, 1.6, 0, 0, 0, -1, 1, 4, 0.5, 0.5));
                if (!stream.FlushDue(t)) continue;
                due++;
                int n = stream.TakeBatch(batch, t);
                Assert.That(n, Is.InRange(8, 10), "about 100 ms of 90 Hz samples");
                for (int i = 1; i < n; i++) Assert.That(batch[i].T, Is.GreaterThan(batch[i - 1].T), "oldest first");
                Assert.IsTrue(batch[0].HasHit);
                Assert.AreEqual(4, batch[0].Panel);
                sent += n;
            }
            Assert.That(due, Is.InRange(9, 10), "one batch per 100 ms");
            Assert.AreEqual(90, sent + stream.Pending);
            int left = stream.Pending;

            // a backlog (no connection for a while) goes out in batches of 256
            for (int i = 0; i < 600; i++) stream.Record(GazeWireSample.Eye, t + i * 0.01, 0, 1.6, 0, 0, 0, -1, 0.9);
            Assert.IsTrue(stream.FlushDue(t), "a full batch is due at once");
            var sizes = new List<int>();
            int n2;
            while ((n2 = stream.TakeBatch(batch, t)) > 0) sizes.Add(n2);
            CollectionAssert.AreEqual(new[] { 256, 256, left + 600 - 512 }, sizes);

            // the built message is the protocol's: 9 entries per ray, 12 with a hit
            stream.Record(GazeWireSample.Head, t + 10, 0, 1.6, 0, 0, 0, -1, 1, -1, 0.3, 0.3);
            stream.Record(GazeWireSample.Head, t + 10.1, 0, 1.6, 0, 0, 0, -1, 1);
            int k = stream.TakeBatch(batch, t + 10.2);
            var wire = Requests.GazeBatch(3, batch, k);
            var samples = wire.GetList("samples");
            Assert.AreEqual(2, samples.Count);
            Assert.AreEqual(12, ((List<object>)samples[0]).Count);
            Assert.AreEqual(-1L, ((List<object>)samples[0])[9], "panel −1: no panel");
            Assert.AreEqual(0.0, ((List<object>)samples[0])[10], "u, v are 0 for no panel");
            Assert.AreEqual(9, ((List<object>)samples[1]).Count);
        }

        [Test]
        public void Rate_IsCappedPerSource_AtTheServersLimit()
        {
            var stream = new GazeStream(ClockWithOffset(0), 8192);
            stream.Configure(new GazeLimits { MaxRateHz = 60, MaxSamplesPerBatch = 100 });
            int head = 0, eye = 0;
            for (int i = 0; i < 2400; i++)  // ten seconds at 240 Hz, head and eye
            {
                if (stream.Record(GazeWireSample.Head, 1 + i / 240.0, 0, 0, 0, 0, 0, 1, 1)) head++;
                if (stream.Record(GazeWireSample.Eye, 1 + i / 240.0, 0, 0, 0, 0, 0, 1, 1)) eye++;
            }
            // 60 a second over the ~10 s, plus the bucket's burst at the start
            Assert.That(head, Is.InRange(599, 600 + (int)stream.RateBurst), "head: 60 per second");
            Assert.AreEqual(head, eye, "eye: its own 60 per second");
            Assert.AreEqual(4800 - head - eye, stream.DroppedRate);
            Assert.AreEqual(100, stream.TakeBatch(new GazeWireSample[256], 20), "max_samples_per_batch from the welcome");
        }

        [Test]
        public void Rate_AtTheLimitsOwnRate_KeepsEveryJitteredFrame()
        {
            // a 120 Hz headset at the server's 120 Hz: frames come ±2 ms around their vsync. A minimum interval of 1/120 s
            // dropped every frame that came early after a kept one (up to half of them); the token bucket keeps them all.
            var stream = new GazeStream(ClockWithOffset(0), 4096);
            var random = new Random(7);
            int kept = 0, frames = 1200;
            for (int i = 0; i < frames; i++)
            {
                double t = 10 + i / 120.0 + (random.NextDouble() * 2 - 1) * 0.002;
                if (stream.Record(GazeWireSample.Head, t, 0, 0, 0, 0, 0, 1, 1)) kept++;
                if (stream.Record(GazeWireSample.Eye, t, 0, 0, 0, 0, 0, 1, 1)) kept++;
            }
            Assert.AreEqual(2 * frames, kept, "every frame of both sources");
            Assert.AreEqual(0, stream.DroppedRate);

            // times stay strictly increasing per source, whatever the bucket holds
            stream.Clear();
            Assert.IsTrue(stream.Record(GazeWireSample.Head, 30.0, 0, 0, 0, 0, 0, 1, 1));
            Assert.IsFalse(stream.Record(GazeWireSample.Head, 30.0, 0, 0, 0, 0, 0, 1, 1), "the same time again");
            Assert.IsFalse(stream.Record(GazeWireSample.Head, 29.9, 0, 0, 0, 0, 0, 1, 1), "an earlier time");
            Assert.IsTrue(stream.Record(GazeWireSample.Head, 30.001, 0, 0, 0, 0, 0, 1, 1), "a burst token");
        }

        [Test]
        public void Samples_WaitForANewPing_AfterTheHeadsetSlept()
        {
            // the stopwatch stands still while the headset sleeps; the wall clock does not: 30 s of sleep here
            double slept = 0;
            var clock = new ClockSync(8, () => ClockSync.LocalNow() + slept);
            var stream = new GazeStream(clock);
            double now = ClockSync.LocalNow();
            clock.AddSample(now - 0.01, now, now + 5.0);  // offset ~5 s, a 10 ms round trip
            Assert.IsTrue(stream.Record(GazeWireSample.Head, now, 0, 1.6, 0, 0, 0, -1, 1));
            slept = 0.3;
            Assert.IsTrue(clock.HasEstimate, "a drift within 0.5 s keeps the estimate");
            slept = 30.3;
            Assert.IsFalse(stream.Record(GazeWireSample.Head, now + 1, 0, 1.6, 0, 0, 0, -1, 1), "a stale offset is not used");
            Assert.AreEqual(1, stream.DroppedNoClock);
            Assert.IsFalse(clock.HasEstimate);
            Assert.AreEqual(1, clock.DriftResets);

            // the resume's ping: a new offset, not the pre-sleep sample with its smaller round trip
            now = ClockSync.LocalNow();
            clock.AddSample(now - 0.05, now, now + 35.0);
            Assert.AreEqual(35.0 + 0.025, clock.Offset, 1e-6);
            Assert.IsTrue(stream.Record(GazeWireSample.Head, now + 2, 0, 1.6, 0, 0, 0, -1, 1));
            Assert.AreEqual(1, clock.DriftResets, "the new relation between the clocks holds");

            // Reset (the app resumed) forgets the estimate too and takes the clocks as they are now
            clock.Reset();
            Assert.IsFalse(clock.HasEstimate);
            slept = 30.5;
            clock.AddSample(now - 0.05, now, now + 35.0);
            Assert.IsTrue(clock.HasEstimate);
        }

        [Test]
        public void Overflow_DropsTheOldest()
        {
            var stream = new GazeStream(ClockWithOffset(0), 16);
            for (int i = 0; i < 40; i++) stream.Record(GazeWireSample.Head, i * 0.1, 0, 0, 0, 0, 0, 1, 1);
            Assert.AreEqual(16, stream.Pending);
            Assert.AreEqual(24, stream.DroppedOverflow);
            var batch = new GazeWireSample[256];
            Assert.AreEqual(16, stream.TakeBatch(batch, 10));
            Assert.AreEqual(2.4, batch[0].T, 1e-9, "the newest 16 are kept");
            Assert.IsFalse(stream.Record(GazeWireSample.Head, 5, double.NaN, 0, 0, 0, 0, 1, 1));
            Assert.IsFalse(stream.Record(GazeWireSample.Head, 5, 0, 0, 0, 0, 0, 0, 1), "a zero direction");
            Assert.AreEqual(2, stream.DroppedInvalid);
        }

        [Test]
        public void RayCast_MatchesTheServersPanelsAndUV()
        {
            PanelPose[] grid = Grid();
            double u, v;
            // the golden vector gaze_batch_hits: straight ahead from (0, 1.5, 0) hits panel 4's centre
            Assert.AreEqual(4, GazeGeometry.RayCast(grid, 9, 0, 1.5, 0, 0, 0, -1, out u, out v));
            Assert.AreEqual(0.5, u, 1e-12);
            Assert.AreEqual(0.5, v, 1e-12);
            // and (0.6, 0, −0.8) misses everything
            Assert.AreEqual(-1, GazeGeometry.RayCast(grid, 9, 0, 1.5, 0, 0.6, 0, -0.8, out u, out v));
            // upper left quarter of panel 0: u < 0.5, v > 0.5 (u along +x, v along +y)
            Assert.AreEqual(0, GazeGeometry.RayCast(grid, 9, -0.36 - 0.05, 1.86 + 0.1, 0, 0, 0, -1, out u, out v));
            Assert.AreEqual(0.5 - 0.05 / 0.3, u, 1e-9);
            Assert.AreEqual(0.5 + 0.1 / 0.3, v, 1e-9);
            // looking away (the panels are behind the origin) hits nothing
            Assert.AreEqual(-1, GazeGeometry.RayCast(grid, 9, 0, 1.5, 0, 0, 0, 1, out u, out v));
            // a panel turned 90° about y (normal along x) is hit from the side
            var turned = new[] { new PanelPose { Px = 2, Py = 0, Pz = 0, Qy = Math.Sqrt(0.5), Qw = Math.Sqrt(0.5), Width = 1, Height = 1 } };
            Assert.AreEqual(0, GazeGeometry.RayCast(turned, 1, 0, 0, 0, 1, 0, 0, out u, out v));
            Assert.AreEqual(0.5, u, 1e-9);
            // only the first `count` panels count
            Assert.AreEqual(-1, GazeGeometry.RayCast(grid, 4, 0, 1.5, 0, 0, 0, -1, out u, out v));
        }

        [Test]
        public void Layout_IsDueForANewSessionAndWhenTheGridMoves()
        {
            var sender = new GazeSender();
            Assert.IsFalse(sender.LayoutDue("s1"), "no panels: nothing to send");
            PanelPose[] grid = Grid();
            sender.SetPanelCount(9);
            for (int k = 0; k < 9; k++) sender.SetPanel(k, grid[k]);
            Assert.IsTrue(sender.LayoutDue("s1"));
            List<PanelPose> layout = sender.TakeLayout("s1");
            Assert.AreEqual(9, layout.Count);
            Assert.IsFalse(sender.LayoutDue("s1"));
            grid[3].Px += 0.001;
            sender.SetPanel(3, grid[3]);
            Assert.IsFalse(sender.LayoutDue("s1"), "1 mm is within the tolerance");
            grid[3].Px += 0.02;
            sender.SetPanel(3, grid[3]);
            Assert.IsTrue(sender.LayoutDue("s1"), "the grid moved");
            sender.TakeLayout("s1");
            Assert.IsTrue(sender.LayoutDue("s2"), "a new server session needs the layout again");
            var wire = Requests.Layout(12, layout);
            Assert.AreEqual(9, wire.GetList("panels").Count);
        }

        [Test]
        public void PerFramePath_AllocatesNothing()
        {
            var stream = new GazeStream(ClockWithOffset(1000), 1024);
            var sender = new GazeSender();
            PanelPose[] grid = Grid();
            sender.SetPanelCount(9);
            for (int k = 0; k < 9; k++) sender.SetPanel(k, grid[k]);
            var batch = new GazeWireSample[256];
            double t = 1.0;
            Action frames = () =>
            {
                for (int i = 0; i < 20000; i++)
                {
                    t += 1.0 / 90;
                    double yaw = Math.Sin(i * 0.01) * 0.3;
                    bool due = sender.Frame(stream, t, 0, 1.6, 0, yaw, -0.05, -1, true, 0.01, 1.6, 0, yaw * 0.9, -0.04, -1, 0.95);
                    if (due) stream.TakeBatch(batch, t);
                    sender.LayoutDue("s1");
                }
            };
            frames();  // warm up: JIT and first-use allocations
            sender.TakeLayout("s1");
            long before = GC.GetAllocatedBytesForCurrentThread();
            frames();
            long allocated = GC.GetAllocatedBytesForCurrentThread() - before;
            Assert.AreEqual(0, allocated, "bytes allocated by 20,000 frames (head + eye, ray-cast, record, batch copy)");
            Assert.That(stream.Recorded, Is.GreaterThan(70000), "both sources recorded at 90 Hz");
            Assert.That(sender.LastHeadPanel, Is.InRange(-1, 8));
        }

        [Test]
        public void PendingGaze_IsSentBeforeChooseSkipAndDecide()
        {
            using (var server = new FakeServer())
            {
                var received = new List<string>();
                server.Handler = (c, m) =>
                {
                    string type = m.GetString("type");
                    lock (received) received.Add(type);
                    long? rid = m.GetInt64("rid");
                    if (type == MessageTypes.Hello)
                    {
                        var w = FakeServer.Welcome(rid, c.SessionId);
                        w.Set("protocol_minor", 2L).Set("gaze", new MsgMap { { "max_rate_hz", 120.0 }, { "max_samples_per_batch", 256L } });
                        c.Send(w);
                        return true;
                    }
                    if (type == MessageTypes.GazeBatch && m.GetList("samples").Count == 3)
                    {
                        c.Send(new MsgMap { { "type", "error" }, { "rid", rid }, { "code", "bad_field" }, { "message", "1 of 3 dropped (not_unit)" }, { "dropped", 1L } });
                        return true;
                    }
                    if (type == MessageTypes.Choose || type == MessageTypes.Skip)
                    {
                        c.Send(new MsgMap { { "type", "candidates" }, { "rid", rid }, { "step", 2L }, { "algorithm", "pca" }, { "items", new List<object>() } });
                        return true;
                    }
                    if (type == MessageTypes.Decide)
                    {
                        c.Send(new MsgMap
                        {
                            { "type", "decided" }, { "rid", rid },
                            { "item", new MsgMap { { "id", 1L }, { "texture", "x" }, { "title", "t" }, { "url", "https://a.example/" } } }, { "steps", 2L },
                        });
                        return true;
                    }
                    return false;
                };
                var client = new OmokageClient(new OmokageClientOptions(server.Url) { AutoReconnect = false, PingInterval = TimeSpan.Zero });
                try
                {
                    var rejected = new List<ErrorMessage>();
                    client.GazeRejected += e => { lock (rejected) rejected.Add(e); };
                    Sync.Run(() => client.ConnectAsync());
                    Assert.IsTrue(client.GazeAccepted);
                    Sync.Run(() => client.PingAsync());
                    Assert.IsTrue(client.Clock.HasEstimate);
                    double t = ClockSync.LocalNow();
                    for (int i = 0; i < 5; i++) client.Gaze.Record(GazeWireSample.Head, t + i * 0.011, 0, 1.6, 0, 0, 0, -1, 1);
                    Sync.Run(() => client.ChooseAsync(1));
                    for (int i = 0; i < 3; i++) client.Gaze.Record(GazeWireSample.Head, t + 1 + i * 0.011, 0, 1.6, 0, 0, 0, -1, 1);
                    Sync.Run(() => client.SkipAsync());
                    Sync.Run(() => client.DecideAsync(1));  // nothing pending: no batch
                    lock (received)
                        CollectionAssert.AreEqual(new[] { "hello", "ping", "gaze.batch", "choose", "gaze.batch", "skip", "decide" }, received);
                    Assert.AreEqual(8, client.GazeSamplesSent);
                    Assert.AreEqual(2, client.GazeBatchesSent);
                    Sync.WaitUntil(() => { lock (rejected) return rejected.Count == 1; }, TimeSpan.FromSeconds(5), "the batch's error");
                    Assert.AreEqual(1, rejected[0].Dropped);
                    Assert.AreEqual(1, client.GazeSamplesDroppedByServer);
                }
                finally { client.Dispose(); }
            }
        }
    }
}
