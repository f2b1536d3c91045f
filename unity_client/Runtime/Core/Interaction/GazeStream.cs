using System;
using System.Collections.Generic;

namespace Omokage.Client
{
    /// <summary>
    /// The pending gaze of one connection (protocol v1.2 <c>gaze.batch</c>, docs/gaze.md), engine-free and
    /// allocation-free on the per-frame path: <see cref="Record"/> copies one sample into a preallocated ring buffer;
    /// <see cref="TakeBatch"/> copies up to 256 of them, oldest first, into a caller's array (the message itself is built
    /// once per batch, every <see cref="FlushInterval"/>, not per frame).
    /// <list type="bullet">
    /// <item>Time: samples are stamped on the <b>server's</b> clock, the local time plus <see cref="ClockSync.Offset"/>
    /// from the ping/pong exchange. Until a ping has completed there is no offset and samples are not recorded
    /// (<see cref="DroppedNoClock"/>): the server would drop local-clock stamps as <c>future</c> or mis-time them.</item>
    /// <item>Rate: per source, a token bucket of <see cref="MaxRateHz"/> tokens a second holding at most
    /// <see cref="RateBurst"/>: a sample without a token is dropped here (<see cref="DroppedRate"/>) rather than by the server
    /// (<c>error overloaded</c>). A bucket, not a minimum interval: frames at the limit's own rate (120 Hz) come a little
    /// early or late, and a minimum interval dropped every early one, up to half of them. A sample not later than the
    /// source's previous one is dropped too, so each source's times stay strictly increasing (the server drops
    /// <c>out_of_order</c> samples), even when a better ping moves the offset back.</item>
    /// <item>Overflow: when nothing is taken for long (no connection), the oldest samples are overwritten
    /// (<see cref="DroppedOverflow"/>).</item>
    /// </list>
    /// Thread-safe (one lock; <see cref="OmokageClient"/> takes batches before <c>choose</c>, <c>skip</c> and <c>decide</c>,
    /// possibly off the main thread).
    /// </summary>
    public sealed class GazeStream
    {
        readonly object _gate = new object();
        readonly GazeWireSample[] _ring;
        readonly ClockSync _clock;
        int _start;
        int _count;
        double _lastHead = double.NegativeInfinity;
        double _lastEye = double.NegativeInfinity;
        double _tokensHead, _tokensEye;  // each source's bucket just after its last sample kept
        double _lastFlush = double.NegativeInfinity;

        /// <summary>A stream stamping samples with <paramref name="clock"/>'s offset; <paramref name="capacity"/> samples
        /// are kept at most (1,024: about 10 s at 100 Hz).</summary>
        public GazeStream(ClockSync clock, int capacity = 1024)
        {
            if (clock == null) throw new ArgumentNullException("clock");
            if (capacity < 1) throw new ArgumentOutOfRangeException("capacity");
            _clock = clock;
            _ring = new GazeWireSample[capacity];
        }

        /// <summary>Samples per second per source at most (the server's <c>welcome.gaze.max_rate_hz</c>, 120).</summary>
        public double MaxRateHz = 120;

        /// <summary>Samples a source may send at once above <see cref="MaxRateHz"/> (the token bucket's size): 4, a few frames'
        /// jitter; far below the 2 s the server allows.</summary>
        public double RateBurst = 4;

        /// <summary>How often a batch is due (<see cref="FlushDue"/>), seconds: 0.1 (the protocol suggests 50–100 ms).</summary>
        public double FlushInterval = 0.1;

        /// <summary>Samples per message at most (<c>welcome.gaze.max_samples_per_batch</c>, 256).</summary>
        public int MaxPerBatch = GazeWireSample.MaxPerBatch;

        public int Capacity { get { return _ring.Length; } }

        /// <summary>Samples waiting to be sent.</summary>
        public int Pending { get { lock (_gate) return _count; } }

        public long Recorded { get; private set; }
        public long DroppedNoClock { get; private set; }
        public long DroppedRate { get; private set; }
        public long DroppedOverflow { get; private set; }
        /// <summary>Samples with a zero or non-finite direction or origin.</summary>
        public long DroppedInvalid { get; private set; }

        /// <summary>Applies a welcome's <c>gaze</c> limits (null: keep the defaults).</summary>
        public void Configure(GazeLimits limits)
        {
            if (limits == null) return;
            lock (_gate)
            {
                if (limits.MaxRateHz > 0) MaxRateHz = limits.MaxRateHz;
                MaxPerBatch = Math.Max(1, Math.Min(GazeWireSample.MaxPerBatch, limits.MaxSamplesPerBatch));
            }
        }

        /// <summary>
        /// Records one sample taken at <paramref name="localTime"/> (<see cref="ClockSync.LocalNow"/>, seconds) from
        /// <paramref name="source"/> (<see cref="GazeWireSample.Head"/> or <see cref="GazeWireSample.Eye"/>): the ray
        /// (origin in metres, direction normalised here), its confidence (clamped to 0 … 1), and the client's own hit:
        /// <paramref name="panel"/> ≥ 0 with (u, v), −1 for "no panel", or <see cref="GazeGeometry.NotCast"/> to let the
        /// server ray-cast against the <c>layout</c>. False when the sample was dropped (no clock yet, over the rate,
        /// invalid). Allocates nothing.
        /// </summary>
        public bool Record(string source, double localTime, double ox, double oy, double oz, double dx, double dy, double dz,
                           double confidence, int panel = GazeGeometry.NotCast, double u = 0, double v = 0)
        {
            bool eye = ReferenceEquals(source, GazeWireSample.Eye) || source == GazeWireSample.Eye;
            double norm = Math.Sqrt(dx * dx + dy * dy + dz * dz);
            if (!(norm > 1e-9) || double.IsInfinity(norm) || !IsFinite(ox) || !IsFinite(oy) || !IsFinite(oz) || !IsFinite(localTime))
            {
                lock (_gate) DroppedInvalid++;
                return false;
            }
            double offset;
            if (!_clock.TryGetOffset(out offset))
            {
                lock (_gate) DroppedNoClock++;
                return false;
            }
            double t = localTime + offset;
            lock (_gate)
            {
                double last = eye ? _lastEye : _lastHead;
                double burst = Math.Max(1, RateBurst);
                // the bucket refilled since the last sample kept (full at a source's first sample)
                double tokens = double.IsNegativeInfinity(last) ? burst : Math.Min(burst, (eye ? _tokensEye : _tokensHead) + (t - last) * MaxRateHz);
                if (!(t > last) || tokens < 1 - 1e-9)
                {
                    DroppedRate++;
                    return false;
                }
                if (eye) { _lastEye = t; _tokensEye = tokens - 1; }
                else { _lastHead = t; _tokensHead = tokens - 1; }
                int index;
                if (_count < _ring.Length) index = (_start + _count++) % _ring.Length;
                else
                {
                    index = _start;
                    _start = (_start + 1) % _ring.Length;
                    DroppedOverflow++;
                }
                _ring[index].T = t;
                _ring[index].Source = eye ? GazeWireSample.Eye : GazeWireSample.Head;
                _ring[index].Ox = ox; _ring[index].Oy = oy; _ring[index].Oz = oz;
                _ring[index].Dx = dx / norm; _ring[index].Dy = dy / norm; _ring[index].Dz = dz / norm;
                _ring[index].Confidence = confidence < 0 || double.IsNaN(confidence) ? 0 : confidence > 1 ? 1 : confidence;
                bool hasHit = panel != GazeGeometry.NotCast;
                _ring[index].HasHit = hasHit;
                _ring[index].Panel = hasHit ? (panel < 0 ? -1 : panel) : 0;
                _ring[index].U = hasHit && panel >= 0 ? Clamp01(u) : 0;
                _ring[index].V = hasHit && panel >= 0 ? Clamp01(v) : 0;
                Recorded++;
                return true;
            }
        }

        /// <summary>Whether a batch is due at <paramref name="localNow"/>: something is pending and
        /// <see cref="FlushInterval"/> has passed since the last <see cref="TakeBatch"/> (or a full batch is waiting).</summary>
        public bool FlushDue(double localNow)
        {
            lock (_gate) return _count > 0 && (localNow - _lastFlush >= FlushInterval || _count >= MaxPerBatch);
        }

        /// <summary>Moves up to <see cref="MaxPerBatch"/> pending samples, oldest first, into <paramref name="into"/> (at
        /// least that long) and returns how many; 0 when none is pending. Call it again while it returns a full batch.</summary>
        public int TakeBatch(GazeWireSample[] into, double localNow)
        {
            if (into == null) throw new ArgumentNullException("into");
            lock (_gate)
            {
                _lastFlush = localNow;
                int n = Math.Min(_count, Math.Min(MaxPerBatch, into.Length));
                for (int i = 0; i < n; i++) into[i] = _ring[(_start + i) % _ring.Length];
                _start = (_start + n) % _ring.Length;
                _count -= n;
                return n;
            }
        }

        /// <summary>Forgets the pending samples and each source's last time (a new connection: a new server session).</summary>
        public void Clear()
        {
            lock (_gate)
            {
                _start = 0;
                _count = 0;
                _lastHead = _lastEye = double.NegativeInfinity;
            }
        }

        static bool IsFinite(double x) { return !double.IsNaN(x) && !double.IsInfinity(x); }

        static double Clamp01(double x) { return x < 0 || double.IsNaN(x) ? 0 : x > 1 ? 1 : x; }
    }

    /// <summary>Ray-casts gaze against the grid's panels as the server does (docs/gaze.md; omokage.gaze.samples.ray_cast):
    /// each panel a rectangle in its local x–y plane, hit from either side, in front of the ray's origin; u runs 0 → 1
    /// along local +x, v along local +y. Engine-free and allocation-free.</summary>
    public static class GazeGeometry
    {
        /// <summary>"The client did not ray-cast": the sample goes without a hit and the server casts it.</summary>
        public const int NotCast = int.MinValue;

        /// <summary>The nearest of the first <paramref name="count"/> panels the ray hits, or −1 (then u = v = 0).</summary>
        public static int RayCast(IList<PanelPose> panels, int count, double ox, double oy, double oz, double dx, double dy, double dz,
                                  out double u, out double v)
        {
            u = v = 0;
            int best = -1;
            double bestS = double.PositiveInfinity;
            for (int k = 0; k < count; k++)
            {
                PanelPose p = panels[k];
                double ax, ay, az, bx, by, bz, nx, ny, nz;
                Axes(p, out ax, out ay, out az, out bx, out by, out bz, out nx, out ny, out nz);
                double denom = dx * nx + dy * ny + dz * nz;
                if (Math.Abs(denom) <= 1e-9) continue;
                double rx = p.Px - ox, ry = p.Py - oy, rz = p.Pz - oz;
                double s = (rx * nx + ry * ny + rz * nz) / denom;
                if (!(s > 0) || s >= bestS) continue;
                double qx = ox + s * dx - p.Px, qy = oy + s * dy - p.Py, qz = oz + s * dz - p.Pz;
                double lx = qx * ax + qy * ay + qz * az;
                double ly = qx * bx + qy * by + qz * bz;
                if (Math.Abs(lx) > p.Width / 2 || Math.Abs(ly) > p.Height / 2) continue;
                best = k;
                bestS = s;
                u = lx / p.Width + 0.5;
                v = ly / p.Height + 0.5;
            }
            return best;
        }

        /// <summary>The panel's local x, y and z (normal) axes in the scene frame, from its unit quaternion.</summary>
        public static void Axes(PanelPose p, out double ax, out double ay, out double az, out double bx, out double by, out double bz,
                                out double nx, out double ny, out double nz)
        {
            double x = p.Qx, y = p.Qy, z = p.Qz, w = p.Qw;
            ax = 1 - 2 * (y * y + z * z); ay = 2 * (x * y + z * w); az = 2 * (x * z - y * w);
            bx = 2 * (x * y - z * w); by = 1 - 2 * (x * x + z * z); bz = 2 * (y * z + x * w);
            nx = 2 * (x * z + y * w); ny = 2 * (y * z - x * w); nz = 1 - 2 * (x * x + y * y);
        }

        /// <summary>Whether two layouts differ by more than <paramref name="tolerance"/> (metres; quaternion components and
        /// sizes alike): the grid moved and the <c>layout</c> must be sent again.</summary>
        public static bool Moved(IList<PanelPose> a, int countA, IList<PanelPose> b, int countB, double tolerance = 0.005)
        {
            if (countA != countB) return true;
            for (int k = 0; k < countA; k++)
            {
                PanelPose p = a[k], q = b[k];
                if (Math.Abs(p.Px - q.Px) > tolerance || Math.Abs(p.Py - q.Py) > tolerance || Math.Abs(p.Pz - q.Pz) > tolerance ||
                    Math.Abs(p.Qx - q.Qx) > tolerance || Math.Abs(p.Qy - q.Qy) > tolerance || Math.Abs(p.Qz - q.Qz) > tolerance ||
                    Math.Abs(p.Qw - q.Qw) > tolerance || Math.Abs(p.Width - q.Width) > tolerance || Math.Abs(p.Height - q.Height) > tolerance)
                    return true;
            }
            return false;
        }
    }
}
