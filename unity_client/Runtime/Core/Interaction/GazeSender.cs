using System;
using System.Collections.Generic;

namespace Omokage.Client
{
    /// <summary>
    /// The engine-free half of the gaze sender (<c>OmokageGazeReporter</c> is the MonoBehaviour half): the grid's panel poses,
    /// when a <c>layout</c> is due, the client's own hit for each ray ({panel, u, v} against the panels, as the server would
    /// cast it), and when a <c>gaze.batch</c> is due. <see cref="Frame"/> is the per-frame path and allocates nothing; only
    /// <see cref="TakeLayout"/> (when the grid moved or the session changed) and the batch itself (every
    /// <see cref="GazeStream.FlushInterval"/>) allocate. Main thread only.
    /// </summary>
    public sealed class GazeSender
    {
        readonly PanelPose[] _panels;
        readonly PanelPose[] _sent;
        int _count;
        int _sentCount;
        string _sentSession;

        public GazeSender(int maxPanels = 9)
        {
            if (maxPanels < 1) throw new ArgumentOutOfRangeException("maxPanels");
            _panels = new PanelPose[maxPanels];
            _sent = new PanelPose[maxPanels];
        }

        /// <summary>Panels shown now (panel k shows <c>candidates.items[k]</c>).</summary>
        public int PanelCount { get { return _count; } }

        /// <summary>How far a panel may move (metres; quaternion components alike) before the layout is sent again.</summary>
        public double LayoutTolerance = 0.005;

        /// <summary>Whether the client ray-casts its samples itself (sends {panel, u, v}); false sends bare rays and lets the
        /// server cast them against the layout.</summary>
        public bool ClientHits = true;

        /// <summary>The last panel the head ray hit (−1: none).</summary>
        public int LastHeadPanel { get; private set; }

        /// <summary>The last panel the eye ray hit (−1: none, or no eye sample).</summary>
        public int LastEyePanel { get; private set; }

        public PanelPose Panel(int k) { return _panels[k]; }

        /// <summary>Sets the panels for this frame: <paramref name="count"/> panels, then <see cref="SetPanel"/> each.</summary>
        public void SetPanelCount(int count)
        {
            _count = Math.Max(0, Math.Min(_panels.Length, count));
        }

        public void SetPanel(int k, PanelPose pose)
        {
            if (k < 0 || k >= _panels.Length) throw new ArgumentOutOfRangeException("k");
            _panels[k] = pose;
        }

        /// <summary>Whether a <c>layout</c> must be sent before more gaze: panels are shown and they moved (beyond
        /// <see cref="LayoutTolerance"/>), their number changed, or the server session is another one than the last
        /// layout's.</summary>
        public bool LayoutDue(string sessionId)
        {
            if (_count == 0) return false;
            if (!string.Equals(sessionId, _sentSession, StringComparison.Ordinal)) return true;
            return GazeGeometry.Moved(_panels, _count, _sent, _sentCount, LayoutTolerance);
        }

        /// <summary>The panels to send as <c>layout</c> (a copy), remembered as sent for <paramref name="sessionId"/>.</summary>
        public List<PanelPose> TakeLayout(string sessionId)
        {
            var list = new List<PanelPose>(_count);
            for (int k = 0; k < _count; k++)
            {
                list.Add(_panels[k]);
                _sent[k] = _panels[k];
            }
            _sentCount = _count;
            _sentSession = sessionId;
            return list;
        }

        /// <summary>Forgets the layout sent (a new connection sends it again).</summary>
        public void ForgetLayout()
        {
            _sentSession = null;
            _sentCount = 0;
        }

        /// <summary>
        /// One frame's head ray (and, when <paramref name="hasEye"/>, the eye ray with its confidence) recorded into
        /// <paramref name="stream"/> at <paramref name="localNow"/> (<see cref="ClockSync.LocalNow"/>), each with the client's
        /// hit when <see cref="ClientHits"/>. Returns whether a batch is due (<see cref="GazeStream.FlushDue"/>). Allocates
        /// nothing.
        /// </summary>
        public bool Frame(GazeStream stream, double localNow,
                          double hx, double hy, double hz, double hdx, double hdy, double hdz,
                          bool hasEye = false, double ex = 0, double ey = 0, double ez = 0, double edx = 0, double edy = 0, double edz = 0,
                          double eyeConfidence = 1)
        {
            if (stream == null) throw new ArgumentNullException("stream");
            LastHeadPanel = Record(stream, GazeWireSample.Head, localNow, hx, hy, hz, hdx, hdy, hdz, 1.0);
            LastEyePanel = hasEye ? Record(stream, GazeWireSample.Eye, localNow, ex, ey, ez, edx, edy, edz, eyeConfidence) : -1;
            return stream.FlushDue(localNow);
        }

        int Record(GazeStream stream, string source, double t, double ox, double oy, double oz, double dx, double dy, double dz, double confidence)
        {
            double norm = Math.Sqrt(dx * dx + dy * dy + dz * dz);
            if (norm > 1e-9) { dx /= norm; dy /= norm; dz /= norm; }
            double u = 0, v = 0;
            int panel = _count > 0 ? GazeGeometry.RayCast(_panels, _count, ox, oy, oz, dx, dy, dz, out u, out v) : -1;
            stream.Record(source, t, ox, oy, oz, dx, dy, dz, confidence, ClientHits ? panel : GazeGeometry.NotCast, u, v);
            return panel;
        }
    }
}
