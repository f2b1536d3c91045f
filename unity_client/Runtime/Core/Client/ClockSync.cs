using System;
using System.Collections.Generic;
using System.Diagnostics;

namespace Omokage.Client
{
    /// <summary>One ping/pong exchange.</summary>
    public struct PingResult
    {
        /// <summary>Round trip in seconds.</summary>
        public double RoundTrip;
        /// <summary>Estimated server clock minus local clock, seconds (NTP-style: server_time − (t0 + t1) / 2).</summary>
        public double ClockOffset;
        /// <summary>The server's clock when it answered, Unix seconds.</summary>
        public double ServerTime;
    }

    /// <summary>
    /// The local clock (Unix seconds, monotonic between samples) and the estimated offset of the server's
    /// clock, from ping/pong round trips. The estimate is the offset of the sample with the smallest round
    /// trip among the last <see cref="Window"/> samples (the least queuing delay, the least error).
    /// Gaze samples will be stamped with <see cref="ServerNow"/>. Thread-safe.
    /// </summary>
    public sealed class ClockSync
    {
        static readonly double StartUnix = (DateTime.UtcNow - new DateTime(1970, 1, 1, 0, 0, 0, DateTimeKind.Utc)).TotalSeconds;
        static readonly Stopwatch Monotonic = Stopwatch.StartNew();

        readonly object _gate = new object();
        readonly Queue<PingResult> _samples = new Queue<PingResult>();

        public ClockSync(int window = 8) { Window = Math.Max(1, window); }

        public int Window { get; private set; }

        /// <summary>Local clock in Unix seconds: the wall clock at startup plus a monotonic stopwatch.</summary>
        public static double LocalNow() { return StartUnix + Monotonic.Elapsed.TotalSeconds; }

        /// <summary>Whether at least one ping has completed.</summary>
        public bool HasEstimate { get { lock (_gate) return _samples.Count > 0; } }

        /// <summary>Server clock minus local clock, seconds (0 before the first sample).</summary>
        public double Offset { get { lock (_gate) return Best().ClockOffset; } }

        /// <summary>Round trip of the sample the estimate comes from, seconds.</summary>
        public double RoundTrip { get { lock (_gate) return Best().RoundTrip; } }

        /// <summary>The last sample's round trip, seconds.</summary>
        public double LastRoundTrip { get; private set; }

        /// <summary>The server's clock now, estimated (Unix seconds).</summary>
        public double ServerNow() { return LocalNow() + Offset; }

        /// <summary>Records one exchange: <paramref name="t0"/> sent, <paramref name="t1"/> received (local clock), server time from the pong.</summary>
        public PingResult AddSample(double t0, double t1, double serverTime)
        {
            var sample = new PingResult { RoundTrip = Math.Max(0, t1 - t0), ClockOffset = serverTime - (t0 + t1) / 2, ServerTime = serverTime };
            lock (_gate)
            {
                _samples.Enqueue(sample);
                while (_samples.Count > Window) _samples.Dequeue();
                LastRoundTrip = sample.RoundTrip;
            }
            return sample;
        }

        public void Reset()
        {
            lock (_gate) _samples.Clear();
        }

        PingResult Best()
        {
            var best = new PingResult();
            bool any = false;
            foreach (var s in _samples)
            {
                if (!any || s.RoundTrip < best.RoundTrip) best = s;
                any = true;
            }
            return best;
        }
    }
}
