using System;

namespace Omokage.Client
{
    /// <summary>
    /// Exponential back-off for reconnecting: initial, initial × factor, … capped at max, each delay
    /// spread by ± jitter (a fraction) so many headsets do not reconnect in lockstep after a server restart.
    /// </summary>
    public sealed class Backoff
    {
        readonly Random _random;
        int _attempt;

        public Backoff(TimeSpan initial, TimeSpan max, double factor = 2.0, double jitter = 0.2, int? seed = null)
        {
            if (initial <= TimeSpan.Zero) throw new ArgumentOutOfRangeException("initial");
            if (max < initial) throw new ArgumentOutOfRangeException("max");
            if (factor < 1) throw new ArgumentOutOfRangeException("factor");
            Initial = initial;
            Max = max;
            Factor = factor;
            Jitter = Math.Max(0, Math.Min(1, jitter));
            _random = seed.HasValue ? new Random(seed.Value) : new Random();
        }

        public TimeSpan Initial { get; private set; }
        public TimeSpan Max { get; private set; }
        public double Factor { get; private set; }
        public double Jitter { get; private set; }

        /// <summary>Delays handed out since the last <see cref="Reset"/>.</summary>
        public int Attempt { get { return _attempt; } }

        /// <summary>The delay before the next attempt, without jitter.</summary>
        public TimeSpan NominalDelay(int attempt)
        {
            double ms = Initial.TotalMilliseconds * Math.Pow(Factor, Math.Min(attempt, 62));
            return TimeSpan.FromMilliseconds(Math.Min(ms, Max.TotalMilliseconds));
        }

        public TimeSpan Next()
        {
            double ms = NominalDelay(_attempt).TotalMilliseconds;
            _attempt++;
            double spread;
            lock (_random) spread = (_random.NextDouble() * 2 - 1) * Jitter;
            return TimeSpan.FromMilliseconds(Math.Max(0, ms * (1 + spread)));
        }

        public void Reset() { _attempt = 0; }
    }
}
