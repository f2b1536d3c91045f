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
    /// Gaze samples will be stamped with <see cref="ServerNow"/>.
    /// <para>The estimate is forgotten (as by <see cref="Reset"/>) when the local clock and the wall clock drift apart by
    /// more than <see cref="MaxDrift"/> since it was made: the stopwatch stands still while the headset sleeps, so an
    /// offset measured before is off by the sleep; the next ping measures it afresh.</para> Thread-safe.
    /// </summary>
    public sealed class ClockSync
    {
        static readonly double StartUnix = WallNow();
        static readonly Stopwatch Monotonic = Stopwatch.StartNew();

        /// <summary>Drift (seconds) between the local clock and the wall clock that makes the estimate stale.</summary>
        public const double MaxDrift = 0.5;

        readonly object _gate = new object();
        readonly Queue<PingResult> _samples = new Queue<PingResult>();
        readonly Func<double> _wall;
        double _drift;  // wall clock minus local clock when the samples began

        public ClockSync(int window = 8) : this(window, null) { }

        /// <param name="window">Samples the estimate is chosen from.</param>
        /// <param name="wallClock">The wall clock, Unix seconds (null: <see cref="DateTime.UtcNow"/>); tests pass their own.</param>
        public ClockSync(int window, Func<double> wallClock)
        {
            Window = Math.Max(1, window);
            _wall = wallClock ?? WallNow;
            _drift = _wall() - LocalNow();
        }

        public int Window { get; private set; }

        /// <summary>Local clock in Unix seconds: the wall clock at startup plus a monotonic stopwatch.</summary>
        public static double LocalNow() { return StartUnix + Monotonic.Elapsed.TotalSeconds; }

        static double WallNow() { return (DateTime.UtcNow - new DateTime(1970, 1, 1, 0, 0, 0, DateTimeKind.Utc)).TotalSeconds; }

        /// <summary>Whether at least one ping has completed (since the last reset or drift).</summary>
        public bool HasEstimate { get { lock (_gate) { ForgetIfDrifted(); return _samples.Count > 0; } } }

        /// <summary>Server clock minus local clock, seconds (0 before the first sample).</summary>
        public double Offset { get { lock (_gate) { ForgetIfDrifted(); return Best().ClockOffset; } } }

        /// <summary>The offset and true, or false before the first sample (one check, so a drift between two reads cannot
        /// pair "has an estimate" with the 0 of none).</summary>
        public bool TryGetOffset(out double offset)
        {
            lock (_gate)
            {
                ForgetIfDrifted();
                offset = Best().ClockOffset;
                return _samples.Count > 0;
            }
        }

        /// <summary>Round trip of the sample the estimate comes from, seconds.</summary>
        public double RoundTrip { get { lock (_gate) return Best().RoundTrip; } }

        /// <summary>Estimates forgotten because the local clock drifted from the wall clock (e.g. the headset slept).</summary>
        public int DriftResets { get; private set; }

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
                ForgetIfDrifted();  // samples from before a sleep would win with their small round trips
                _samples.Enqueue(sample);
                while (_samples.Count > Window) _samples.Dequeue();
                LastRoundTrip = sample.RoundTrip;
            }
            return sample;
        }

        /// <summary>Forgets the estimate (a new server, the app resumed): <see cref="HasEstimate"/> is false until the next ping.</summary>
        public void Reset()
        {
            lock (_gate)
            {
                _samples.Clear();
                _drift = _wall() - LocalNow();
            }
        }

        // under _gate; allocates nothing (DateTime.UtcNow and the stopwatch only)
        void ForgetIfDrifted()
        {
            double drift = _wall() - LocalNow();
            if (Math.Abs(drift - _drift) <= MaxDrift) return;
            _drift = drift;
            if (_samples.Count == 0) return;
            _samples.Clear();
            DriftResets++;
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
