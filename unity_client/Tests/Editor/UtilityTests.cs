using System;
using System.Collections.Generic;
using System.Threading;
using System.Threading.Tasks;
using NUnit.Framework;

namespace Omokage.Client.Tests
{
    [TestFixture]
    public class UtilityTests
    {
        [Test]
        public void Backoff_DoublesUpToTheCap_AndResets()
        {
            var b = new Backoff(TimeSpan.FromMilliseconds(100), TimeSpan.FromMilliseconds(1000), 2.0, 0.0);
            var delays = new List<double>();
            for (int i = 0; i < 6; i++) delays.Add(b.Next().TotalMilliseconds);
            CollectionAssert.AreEqual(new double[] { 100, 200, 400, 800, 1000, 1000 }, delays);
            b.Reset();
            Assert.AreEqual(100, b.Next().TotalMilliseconds);
        }

        [Test]
        public void Backoff_JitterStaysWithinItsSpread()
        {
            var b = new Backoff(TimeSpan.FromMilliseconds(1000), TimeSpan.FromMilliseconds(1000), 2.0, 0.2, 42);
            for (int i = 0; i < 100; i++)
            {
                double ms = b.Next().TotalMilliseconds;
                Assert.That(ms, Is.InRange(800.0, 1200.0));
            }
        }

        [Test]
        public void ClockSync_UsesTheSampleWithTheSmallestRoundTrip()
        {
            var c = new ClockSync(4);
            Assert.IsFalse(c.HasEstimate);
            c.AddSample(100.0, 100.2, 110.1);   // rtt 0.2, offset 10.0
            c.AddSample(200.0, 200.02, 210.0);  // rtt 0.02, offset 9.99
            c.AddSample(300.0, 300.5, 310.45);  // rtt 0.5, offset 10.2
            Assert.IsTrue(c.HasEstimate);
            Assert.AreEqual(9.99, c.Offset, 1e-9);
            Assert.AreEqual(0.02, c.RoundTrip, 1e-9);
            Assert.AreEqual(0.5, c.LastRoundTrip, 1e-9);
            for (int i = 0; i < 4; i++) c.AddSample(400.0 + i, 400.1 + i, 405.05 + i);  // the best sample slides out of the window
            Assert.AreEqual(5.0, c.Offset, 1e-9);
        }

        [Test]
        public void ClockSync_LocalClockIsUnixSecondsAndMonotonic()
        {
            double unix = (DateTime.UtcNow - new DateTime(1970, 1, 1, 0, 0, 0, DateTimeKind.Utc)).TotalSeconds;
            double a = ClockSync.LocalNow();
            double b = ClockSync.LocalNow();
            Assert.That(Math.Abs(a - unix), Is.LessThan(5.0));
            Assert.That(b, Is.GreaterThanOrEqualTo(a));
        }

        [Test]
        public void RingBuffer_KeepsTheNewestItemsOldestFirst()
        {
            var r = new RingBuffer<int>(3);
            r.Add(1);
            r.Add(2);
            CollectionAssert.AreEqual(new[] { 1, 2 }, r.ToList());
            r.Add(3);
            r.Add(4);
            r.Add(5);
            CollectionAssert.AreEqual(new[] { 3, 4, 5 }, r.ToList());
            Assert.AreEqual(5, r.Newest);
            Assert.AreEqual(2, r.Overwritten);
            Assert.AreEqual(3, r[0]);
            r.Clear();
            Assert.AreEqual(0, r.Count);
        }

        [Test]
        public void GazeSamples_GoInARingBuffer()
        {
            var r = new RingBuffer<GazeSample>(2);
            r.Add(new GazeSample { Time = 1, ItemId = 5 });
            r.Add(new GazeSample { Time = 2, ItemId = -1 });
            r.Add(new GazeSample { Time = 3, ItemId = 7 });
            Assert.AreEqual(2.0, r[0].Time);
            Assert.AreEqual(7, r.Newest.ItemId);
        }

        [Test]
        public void MainThreadQueue_RunsPostsFromOtherThreadsOnTheDrainingThread()
        {
            var q = new MainThreadQueue();
            int drainingThread = Thread.CurrentThread.ManagedThreadId;
            var ranOn = new List<int>();
            var posters = new List<Task>();
            for (int i = 0; i < 8; i++)
                posters.Add(Task.Run(() => q.Post(() => ranOn.Add(Thread.CurrentThread.ManagedThreadId))));
            Task.WaitAll(posters.ToArray());
            var errors = new List<Exception>();
            q.Post(() => { throw new InvalidOperationException("boom"); });
            Assert.AreEqual(9, q.Drain(100, errors.Add));
            Assert.AreEqual(8, ranOn.Count);
            foreach (int id in ranOn) Assert.AreEqual(drainingThread, id);
            Assert.AreEqual(1, errors.Count, "a failing action is reported and does not stop the others");
        }

        [Test]
        public void MainThreadQueue_DrainsAtMostMaxPerCall()
        {
            var q = new MainThreadQueue();
            int n = 0;
            for (int i = 0; i < 5; i++) q.Post(() => n++);
            Assert.AreEqual(2, q.Drain(2));
            Assert.AreEqual(3, q.Count);
            q.Drain();
            Assert.AreEqual(5, n);
        }

        [Test]
        public void MainThreadQueue_ClearDropsWhatALastPlayLeftBehind()
        {
            var q = new MainThreadQueue();
            int n = 0;
            for (int i = 0; i < 3; i++) q.Post(() => n++);
            Assert.AreEqual(3, q.Clear());
            Assert.AreEqual(0, q.Drain());
            Assert.AreEqual(0, n, "nothing queued before the reset runs");
        }

        [Test]
        public void TextureCache_EvictsLeastRecentlyUsedOverItsBudget()
        {
            var cache = new TextureCache(250);
            cache.Add(Tex("a", 100));
            cache.Add(Tex("b", 100));
            TextureData t;
            Assert.IsTrue(cache.TryGet("a", out t));  // a is now more recent than b
            cache.Add(Tex("c", 100));
            Assert.IsTrue(cache.Contains("a"));
            Assert.IsFalse(cache.Contains("b"));
            Assert.IsTrue(cache.Contains("c"));
            Assert.AreEqual(200, cache.TotalBytes);
            cache.Add(Tex("c", 100));
            Assert.AreEqual(2, cache.Count, "adding a hash twice keeps one entry");
        }

        static TextureData Tex(string hash, int size)
        {
            return new TextureData { Hash = hash, Format = "png", Width = 1, Height = 1, Data = new byte[size] };
        }
    }
}
