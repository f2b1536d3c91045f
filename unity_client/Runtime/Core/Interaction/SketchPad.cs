using System;

namespace Omokage.Client
{
    /// <summary>One <c>sketch.stroke</c> to send (v1.3): <see cref="Count"/> points of stroke <see cref="Stroke"/> from point
    /// <see cref="FirstPoint"/> of <see cref="SketchPad.Points"/>; <see cref="Append"/> when it continues the stroke.</summary>
    public struct SketchPiece
    {
        public int Stroke;
        public int FirstPoint;
        public int Count;
        public bool Append;
        public SketchStyle Style;
    }

    /// <summary>
    /// The engine-free half of a drawing surface (v1.3 sketch; <c>OmokageSketchPanel</c> is the MonoBehaviour half): the
    /// user's strokes in canvas coordinates (x right, y down, 0 … 1) and what of them is still to be sent.
    /// <list type="bullet">
    /// <item><see cref="Frame"/> is the per-frame path: pen down on the canvas adds a point (when it moved at least
    /// <see cref="MinStep"/>), pen up or off the canvas ends the stroke. It allocates nothing: points live in one preallocated
    /// array, strokes in preallocated tables.</item>
    /// <item>A live stroke goes out in pieces, at most <see cref="MaxRateHz"/> (30) a second over all strokes:
    /// <see cref="TakePiece"/> hands out the unsent points of the oldest stroke that has some (at most
    /// <see cref="MaxPointsPerMessage"/>), the first piece of a stroke plain, the later ones with <c>append</c>. A stroke
    /// longer than <see cref="MaxPointsPerStroke"/> goes on as a new stroke from its last point.</item>
    /// <item><see cref="Undo"/> and <see cref="Clear"/> change the local drawing and say whether the server must be told
    /// (a stroke none of which was sent is simply dropped). <see cref="MarkAllUnsent"/> replays the drawing to a new
    /// connection (a reconnection is a new server session without a drawing).</item>
    /// </list>
    /// An optional <see cref="Ink"/> raster is kept in step (drawn as points arrive, redrawn after an undo). Main thread only.
    /// </summary>
    public sealed class SketchPad
    {
        readonly float[] _xy;
        readonly int[] _start;
        readonly int[] _length;
        readonly int[] _sent;
        readonly SketchStyle[] _style;
        int _strokes;
        int _points;
        bool _drawing;
        int _sendFrom;
        double _nextPiece = double.NegativeInfinity;
        int _maxStrokes, _maxPoints, _maxPointsPerStroke, _maxPointsPerMessage;
        SketchLimits _limits;

        /// <param name="maxStrokes">Strokes the drawing holds (the protocol's 256).</param>
        /// <param name="maxPoints">Points over all strokes (the server keeps at most 65,536 per drawing).</param>
        public SketchPad(int maxStrokes = 256, int maxPoints = 65536)
        {
            if (maxStrokes < 1) throw new ArgumentOutOfRangeException("maxStrokes");
            if (maxPoints < 2) throw new ArgumentOutOfRangeException("maxPoints");
            _xy = new float[2 * maxPoints];
            _start = new int[maxStrokes];
            _length = new int[maxStrokes];
            _sent = new int[maxStrokes];
            _style = new SketchStyle[maxStrokes];
            _maxStrokes = maxStrokes;
            _maxPoints = maxPoints;
            _maxPointsPerStroke = 4096;
            _maxPointsPerMessage = SketchStyle.MaxPointsPerMessage;
            Style = SketchStyle.DefaultPen;
        }

        /// <summary>How the next stroke is drawn (a stroke keeps the style it began with).</summary>
        public SketchStyle Style;

        /// <summary>Pieces sent per second at most, over all strokes (30: a live stroke every ~33 ms). Pieces are taken on a
        /// clock of this rate: never two in one frame, and never more than this many a second over time.</summary>
        public double MaxRateHz = 30;

        /// <summary>A point closer than this to the stroke's last point (canvas units) is not recorded.</summary>
        public float MinStep = 0.002f;

        /// <summary>The local ink, kept in step with the strokes (optional).</summary>
        public SketchRaster Ink;

        /// <summary>Interleaved x, y of every point: stroke k has <see cref="StrokeLength"/> points from <see cref="StrokeStart"/>.</summary>
        public float[] Points { get { return _xy; } }

        public int StrokeCount { get { return _strokes; } }

        public int PointCount { get { return _points; } }

        /// <summary>Whether the last stroke is being drawn (the pen is down on the canvas).</summary>
        public bool Drawing { get { return _drawing; } }

        /// <summary>Bumped by every change of the drawing (a point, a stroke, an undo, a clear).</summary>
        public int Revision { get; private set; }

        /// <summary>The drawing is full (strokes or points): new strokes are ignored until an undo or a clear.</summary>
        public bool Full { get { return _strokes >= _maxStrokes || _points >= _maxPoints; } }

        public int MaxStrokes { get { return _maxStrokes; } }

        /// <summary>Points over all strokes: what the pad preallocated, or the server's <c>max_points</c> if fewer.</summary>
        public int MaxPoints { get { return _maxPoints; } }

        public int MaxPointsPerStroke { get { return _maxPointsPerStroke; } }

        public int MaxPointsPerMessage { get { return _maxPointsPerMessage; } }

        public int StrokeStart(int k) { return _start[k]; }

        public int StrokeLength(int k) { return _length[k]; }

        public SketchStyle StrokeStyle(int k) { return _style[k]; }

        /// <summary>Points of stroke k the server has been sent.</summary>
        public int StrokeSent(int k) { return _sent[k]; }

        /// <summary>Whether some points are still to be sent.</summary>
        public bool HasUnsent
        {
            get
            {
                for (int k = _sendFrom; k < _strokes; k++)
                    if (_sent[k] < _length[k]) return true;
                return false;
            }
        }

        /// <summary>Takes the server's limits (<c>welcome.sketch</c>), within what this pad preallocated: strokes, points per
        /// drawing, stroke and message, and (<see cref="SketchLimits.Fit"/>) the widths and tools of the strokes begun from now.</summary>
        public void Configure(SketchLimits limits)
        {
            if (limits == null) return;
            _limits = limits;
            _maxStrokes = Math.Max(1, Math.Min(_start.Length, limits.MaxStrokes));
            _maxPoints = Math.Max(2, Math.Min(_xy.Length / 2, limits.MaxPoints));
            _maxPointsPerStroke = Math.Max(2, limits.MaxPointsPerStroke);
            _maxPointsPerMessage = Math.Max(1, Math.Min(SketchStyle.MaxPointsPerMessage, limits.MaxPointsPerMessage));
        }

        /// <summary>
        /// One frame of the pen: <paramref name="penDown"/> (the trigger held with the ray on the canvas) at canvas point
        /// (<paramref name="x"/>, <paramref name="y"/>), clamped to the canvas. Pen up ends the stroke. Returns whether a
        /// piece is due (<see cref="TakePiece"/>). Allocates nothing.
        /// </summary>
        public bool Frame(bool penDown, float x, float y, double now)
        {
            if (penDown) Pen(x, y);
            else if (_drawing) EndStroke();
            return PieceDue(now);
        }

        /// <summary>Pen down at a point: starts a stroke, or continues the one being drawn.</summary>
        public void Pen(float x, float y)
        {
            if (float.IsNaN(x) || float.IsNaN(y)) return;
            x = x < 0f ? 0f : x > 1f ? 1f : x;
            y = y < 0f ? 0f : y > 1f ? 1f : y;
            if (!_drawing)
            {
                BeginStroke(x, y);
                return;
            }
            int k = _strokes - 1;
            int last = _start[k] + _length[k] - 1;
            float dx = x - _xy[2 * last], dy = y - _xy[2 * last + 1];
            if (dx * dx + dy * dy < MinStep * MinStep) return;
            if (_points >= _maxPoints)
            {
                EndStroke();  // out of room: the drawing is full
                return;
            }
            if (_length[k] >= _maxPointsPerStroke)
            {
                // a stroke holds at most max_points_per_stroke points: go on as a new stroke from the last point; that
                // takes two points (the last one again, then this one), so with one left the drawing is full
                if (_points + 2 > _maxPoints)
                {
                    EndStroke();
                    return;
                }
                float lx = _xy[2 * last], ly = _xy[2 * last + 1];
                SketchStyle style = _style[k];
                EndStroke();
                if (!BeginStroke(lx, ly, style)) return;
                k = _strokes - 1;
                last = _start[k];
            }
            _xy[2 * _points] = x;
            _xy[2 * _points + 1] = y;
            _points++;
            _length[k]++;
            Revision++;
            if (Ink != null) Ink.Segment(_xy[2 * last], _xy[2 * last + 1], x, y, _style[k]);
        }

        /// <summary>Pen up: the stroke is complete (its last piece is still to be sent).</summary>
        public void EndStroke() { _drawing = false; }

        bool BeginStroke(float x, float y) { return BeginStroke(x, y, Style); }

        bool BeginStroke(float x, float y, SketchStyle style)
        {
            if (Full) return false;
            if (_limits != null) style = _limits.Fit(style);  // a width or tool the server would refuse
            int k = _strokes++;
            _start[k] = _points;
            _length[k] = 1;
            _sent[k] = 0;
            _style[k] = style;
            _xy[2 * _points] = x;
            _xy[2 * _points + 1] = y;
            _points++;
            _drawing = true;
            Revision++;
            if (Ink != null) Ink.Segment(x, y, x, y, style);
            return true;
        }

        /// <summary>Whether a piece may be taken now: points are unsent and the last piece is at least 1/<see cref="MaxRateHz"/> old.</summary>
        public bool PieceDue(double now) { return now >= _nextPiece && HasUnsent; }

        /// <summary>
        /// The next piece to send, if one is due (<see cref="PieceDue"/>): the unsent points of the oldest stroke that has
        /// some, at most <see cref="MaxPointsPerMessage"/>. The points are marked sent; the next piece is due after
        /// 1/<see cref="MaxRateHz"/>. Allocates nothing.
        /// </summary>
        public bool TakePiece(double now, out SketchPiece piece)
        {
            if (now < _nextPiece)
            {
                piece = default(SketchPiece);
                return false;
            }
            if (!TakePieceNow(out piece)) return false;
            // a 30 Hz clock: on time, the next piece is due one interval after this one was due (frame times do not
            // divide the interval: 3 frames at 90 Hz are 33.3 ms, a hair under or over it); late or after a pause, one
            // interval from now. Never two pieces in one frame, and at most MaxRateHz a second over time.
            double interval = MaxRateHz > 0 ? 1.0 / MaxRateHz : 0;
            _nextPiece = now - _nextPiece < interval ? _nextPiece + interval : now + interval;
            return true;
        }

        /// <summary>The next piece regardless of the rate (to send everything before a selection starts from the drawing).</summary>
        public bool TakePieceNow(out SketchPiece piece)
        {
            piece = default(SketchPiece);
            while (_sendFrom < _strokes && _sent[_sendFrom] >= _length[_sendFrom] && !(_drawing && _sendFrom == _strokes - 1))
                _sendFrom++;
            for (int k = _sendFrom; k < _strokes; k++)
            {
                int unsent = _length[k] - _sent[k];
                if (unsent <= 0) continue;
                piece.Stroke = k;
                piece.FirstPoint = _start[k] + _sent[k];
                piece.Count = Math.Min(unsent, _maxPointsPerMessage);
                piece.Append = _sent[k] > 0;
                piece.Style = _style[k];
                _sent[k] += piece.Count;
                return true;
            }
            return false;
        }

        /// <summary>
        /// Takes back the last whole stroke (ending it if it is being drawn). Returns true when the server has some of it
        /// and must be told (<c>sketch.undo</c>); false when there was none or none of it was sent (then it is just dropped).
        /// </summary>
        public bool Undo()
        {
            if (_strokes == 0) return false;
            _drawing = false;
            int k = --_strokes;
            bool sent = _sent[k] > 0;
            _points = _start[k];
            _sent[k] = 0;
            if (_sendFrom > _strokes) _sendFrom = _strokes;
            Revision++;
            if (Ink != null) Ink.Render(this);
            return sent;
        }

        /// <summary>Empties the drawing. Returns true when the server has some of it and must be told (<c>sketch.clear</c>).</summary>
        public bool Clear()
        {
            bool sent = false;
            for (int k = 0; k < _strokes; k++)
                if (_sent[k] > 0) sent = true;
            _strokes = 0;
            _points = 0;
            _sendFrom = 0;
            _drawing = false;
            Revision++;
            if (Ink != null) Ink.Render(this);
            return sent;
        }

        /// <summary>Marks every point unsent: the whole drawing goes to the server again, stroke by stroke (after a
        /// <c>sketch.begin</c> on a new connection). A stroke being drawn goes on from where it is.</summary>
        public void MarkAllUnsent()
        {
            for (int k = 0; k < _strokes; k++) _sent[k] = 0;
            _sendFrom = 0;
            _nextPiece = double.NegativeInfinity;
        }
    }

    /// <summary>
    /// The local ink of a <see cref="SketchPad"/>: an RGBA32 raster, rows bottom-up as <c>Texture2D.LoadRawTextureData</c>
    /// reads them (canvas y = 0, the top, is the last row), with round-capped segments in each stroke's colour and width.
    /// Drawing allocates nothing; <see cref="Dirty"/> says when the texture needs an upload. Main thread only.
    /// </summary>
    public sealed class SketchRaster
    {
        readonly byte[] _rgba;
        readonly int _size;

        public SketchRaster(int size)
        {
            if (size < 2 || size > 4096) throw new ArgumentOutOfRangeException("size", size, "2 … 4096 pixels");
            _size = size;
            _rgba = new byte[size * size * 4];
            Background = new byte[] { 255, 255, 255, 255 };
            Fill();
        }

        /// <summary>Side in pixels.</summary>
        public int Size { get { return _size; } }

        /// <summary>RGBA32, row 0 at the bottom.</summary>
        public byte[] Pixels { get { return _rgba; } }

        /// <summary>RGBA of the empty canvas (default opaque white). Takes effect at the next <see cref="Render"/>.</summary>
        public byte[] Background;

        /// <summary>Changed since <see cref="Dirty"/> was last cleared (upload it, then set false).</summary>
        public bool Dirty;

        /// <summary>Redraws everything: background, then every stroke of <paramref name="pad"/>.</summary>
        public void Render(SketchPad pad)
        {
            Fill();
            if (pad == null) return;
            float[] xy = pad.Points;
            for (int k = 0; k < pad.StrokeCount; k++)
            {
                int start = pad.StrokeStart(k), n = pad.StrokeLength(k);
                SketchStyle style = pad.StrokeStyle(k);
                Segment(xy[2 * start], xy[2 * start + 1], xy[2 * start], xy[2 * start + 1], style);
                for (int i = 1; i < n; i++)
                {
                    int a = start + i - 1, b = start + i;
                    Segment(xy[2 * a], xy[2 * a + 1], xy[2 * b], xy[2 * b + 1], style);
                }
            }
        }

        void Fill()
        {
            byte r = Background[0], g = Background[1], b = Background[2], a = Background[3];
            for (int i = 0; i < _rgba.Length; i += 4)
            {
                _rgba[i] = r;
                _rgba[i + 1] = g;
                _rgba[i + 2] = b;
                _rgba[i + 3] = a;
            }
            Dirty = true;
        }

        /// <summary>A segment from (x0, y0) to (x1, y1) in canvas coordinates (a dot when they are equal), round-capped,
        /// <c>style.Width</c> of the canvas side wide (at least one pixel).</summary>
        public void Segment(float x0, float y0, float x1, float y1, SketchStyle style)
        {
            float s = _size;
            // pixel centres are at (i + 0.5); canvas y runs down, rows run up
            float ax = x0 * s, ay = (1f - y0) * s, bx = x1 * s, by = (1f - y1) * s;
            float radius = Math.Max(0.5f, (float)style.Width * s * 0.5f);
            int minX = Math.Max(0, (int)Math.Floor(Math.Min(ax, bx) - radius));
            int maxX = Math.Min(_size - 1, (int)Math.Ceiling(Math.Max(ax, bx) + radius));
            int minY = Math.Max(0, (int)Math.Floor(Math.Min(ay, by) - radius));
            int maxY = Math.Min(_size - 1, (int)Math.Ceiling(Math.Max(ay, by) + radius));
            float dx = bx - ax, dy = by - ay;
            float len2 = dx * dx + dy * dy;
            float r2 = radius * radius;
            for (int py = minY; py <= maxY; py++)
            {
                float cy = py + 0.5f;
                for (int px = minX; px <= maxX; px++)
                {
                    float cx = px + 0.5f;
                    float t = len2 > 0f ? ((cx - ax) * dx + (cy - ay) * dy) / len2 : 0f;
                    t = t < 0f ? 0f : t > 1f ? 1f : t;
                    float ex = ax + t * dx - cx, ey = ay + t * dy - cy;
                    if (ex * ex + ey * ey > r2) continue;
                    int i = 4 * (py * _size + px);
                    _rgba[i] = style.R;
                    _rgba[i + 1] = style.G;
                    _rgba[i + 2] = style.B;
                    _rgba[i + 3] = 255;
                }
            }
            Dirty = true;
        }

        /// <summary>The RGBA of the pixel under canvas point (x, y) (for tests).</summary>
        public int PixelAt(float x, float y, out byte r, out byte g, out byte b)
        {
            int px = Math.Max(0, Math.Min(_size - 1, (int)(x * _size)));
            int py = Math.Max(0, Math.Min(_size - 1, (int)((1f - y) * _size)));
            int i = 4 * (py * _size + px);
            r = _rgba[i];
            g = _rgba[i + 1];
            b = _rgba[i + 2];
            return _rgba[i + 3];
        }
    }
}
