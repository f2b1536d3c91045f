using System;
using System.Collections.Generic;
using Omokage.Client.MessagePack;

namespace Omokage.Client
{
    /// <summary>
    /// Builds client → server messages in canonical form: <c>type</c> first, <c>rid</c> second (left out
    /// when null), then the fields in the order docs/protocol.md lists them; optional fields that are
    /// null are left out. <see cref="OmokageClient"/> fills in the rid; these are public so tools and
    /// tests can build exact frames.
    /// </summary>
    public static class Requests
    {
        static MsgMap Head(string type, int? rid)
        {
            if (rid.HasValue && rid.Value < 0) throw new ArgumentOutOfRangeException("rid", "rid must be 0 … 2^31-1");
            var m = new MsgMap();
            m.Set("type", type);
            if (rid.HasValue) m.Set("rid", (long)rid.Value);
            return m;
        }

        /// <summary><c>hello</c>; <paramref name="protocolMinor"/> null greets like a v1.0 client (no <c>protocol_minor</c>);
        /// <paramref name="participant"/> (v1.2) is a study participant's code (≤ 64 characters), for a server run with
        /// <c>--study</c>; <paramref name="device"/> (v1.5) is the headset model (≤ 64 characters, e.g.
        /// <see cref="HeadsetModels.QuestPro"/>), whose default gaze correction the server applies until a calibration;
        /// <paramref name="resume"/> (v1.7) is the token of an earlier connection's <c>welcome.resume</c> (≤ 64 characters): go on
        /// with that connection's selection.</summary>
        public static MsgMap Hello(int? rid, string client, string token = null, int protocol = Protocol.Version, int? protocolMinor = null,
                                   string participant = null, string device = null, string resume = null)
        {
            if (client == null) throw new ArgumentNullException("client");
            if (participant != null && (participant.Length == 0 || participant.Length > 64))
                throw new ArgumentOutOfRangeException("participant", "a participant code is 1 … 64 characters");
            if (device != null && (device.Length == 0 || device.Length > 64))
                throw new ArgumentOutOfRangeException("device", "a device (headset model) name is 1 … 64 characters");
            if (resume != null && (resume.Length == 0 || resume.Length > 64))
                throw new ArgumentOutOfRangeException("resume", "a resume token is 1 … 64 characters");
            var m = Head(MessageTypes.Hello, rid).Set("protocol", (long)protocol).Set("client", client).SetIfNotNull("token", token);
            if (protocolMinor.HasValue) m.Set("protocol_minor", (long)protocolMinor.Value);
            return m.SetIfNotNull("participant", participant).SetIfNotNull("device", device).SetIfNotNull("resume", resume);
        }

        /// <summary><c>start</c>; <paramref name="init"/> is <c>random</c> or <c>image</c> (then <paramref name="image"/> is required);
        /// <paramref name="policy"/> (v1.1) is one of <c>welcome.policies</c>, null for the server's default.</summary>
        public static MsgMap Start(int? rid, string algorithm, string init, byte[] image = null, int? seed = null, string policy = null)
        {
            if (algorithm == null) throw new ArgumentNullException("algorithm");
            if (init == null) throw new ArgumentNullException("init");
            var m = Head(MessageTypes.Start, rid).Set("algorithm", algorithm).Set("init", init).SetIfNotNull("image", image);
            if (seed.HasValue) m.Set("seed", (long)seed.Value);
            return m.SetIfNotNull("policy", policy);
        }

        /// <summary>v1.3 <c>start</c> with <c>init: sketch</c>: the selection begins with the 9 faces of this connection's
        /// latest <c>sketch.result</c> (the drawing stays evidence in the policy's belief).</summary>
        public static MsgMap StartSketch(int? rid, string algorithm, int? seed = null, string policy = null)
        {
            return Start(rid, algorithm, InitModes.Sketch, null, seed, policy);
        }

        public static MsgMap StartRandom(int? rid, string algorithm, int? seed = null, string policy = null)
        {
            return Start(rid, algorithm, InitModes.Random, null, seed, policy);
        }

        public static MsgMap StartImage(int? rid, string algorithm, byte[] image, int? seed = null, string policy = null)
        {
            if (image == null) throw new ArgumentNullException("image");
            return Start(rid, algorithm, InitModes.Image, image, seed, policy);
        }

        public static MsgMap Choose(int? rid, int id) { return Head(MessageTypes.Choose, rid).Set("id", (long)id); }

        /// <summary><c>skip</c> (v1.1): none of these faces; the reply is the next grid of unseen faces.</summary>
        public static MsgMap Skip(int? rid) { return Head(MessageTypes.Skip, rid); }

        /// <summary><c>back</c> (v1.7): undo the last <c>choose</c> or <c>skip</c>; the reply is the grid before it, the same
        /// faces in the same order at its step.</summary>
        public static MsgMap Back(int? rid) { return Head(MessageTypes.Back, rid); }

        /// <summary><c>rate</c> (v1.1): <paramref name="rating"/> 1 (not at all) … 5 (exactly what I want) for a face shown in this selection.</summary>
        public static MsgMap Rate(int? rid, int id, int rating)
        {
            if (rating < 1 || rating > 5) throw new ArgumentOutOfRangeException("rating", rating, "a rating is 1 … 5");
            return Head(MessageTypes.Rate, rid).Set("id", (long)id).Set("rating", (long)rating);
        }

        public static MsgMap Decide(int? rid, int id) { return Head(MessageTypes.Decide, rid).Set("id", (long)id); }

        public static MsgMap TextureGet(int? rid, IEnumerable<string> hashes)
        {
            if (hashes == null) throw new ArgumentNullException("hashes");
            var list = new List<object>();
            foreach (string h in hashes) list.Add(h);
            return Head(MessageTypes.TextureGet, rid).Set("hashes", list);
        }

        /// <summary><c>ping</c> with a float clock (seconds): what the client sends.</summary>
        public static MsgMap Ping(int? rid, double t) { return Head(MessageTypes.Ping, rid).Set("t", t); }

        /// <summary><c>ping</c> with an integer clock (the protocol's <c>number</c> accepts both).</summary>
        public static MsgMap Ping(int? rid, long t) { return Head(MessageTypes.Ping, rid).Set("t", t); }

        /// <summary>v1.2 <c>study.next</c>: the participant's next step; <paramref name="image"/> is the start image when
        /// the trial's condition starts from one.</summary>
        public static MsgMap StudyNext(int? rid, byte[] image = null)
        {
            return Head(MessageTypes.StudyNext, rid).SetIfNotNull("image", image);
        }

        /// <summary>v1.2 <c>answers</c> to the questionnaire <paramref name="questionnaire"/>: 1 … 64 answers, each an
        /// integer (Likert 1 … 5) or a string (a choice's label, free text ≤ 2,000 characters).</summary>
        public static MsgMap Answers(int? rid, string questionnaire, IList<QuestionnaireAnswer> answers)
        {
            if (questionnaire == null) throw new ArgumentNullException("questionnaire");
            if (answers == null) throw new ArgumentNullException("answers");
            if (answers.Count < 1 || answers.Count > QuestionnaireAnswer.MaxPerMessage)
                throw new ArgumentOutOfRangeException("answers", answers.Count, "1 … 64 answers");
            var list = new List<object>(answers.Count);
            foreach (QuestionnaireAnswer a in answers) list.Add(a.ToWire());
            return Head(MessageTypes.Answers, rid).Set("questionnaire", questionnaire).Set("answers", list);
        }

        /// <summary>v1.3 <c>sketch.begin</c>: a new, empty drawing on this connection (an earlier one is dropped).</summary>
        public static MsgMap SketchBegin(int? rid) { return Head(MessageTypes.SketchBegin, rid); }

        /// <summary>v1.3 <c>sketch.undo</c>: takes back the last whole stroke.</summary>
        public static MsgMap SketchUndo(int? rid) { return Head(MessageTypes.SketchUndo, rid); }

        /// <summary>v1.3 <c>sketch.clear</c>: empties the drawing, which stays open.</summary>
        public static MsgMap SketchClear(int? rid) { return Head(MessageTypes.SketchClear, rid); }

        /// <summary>v1.3 <c>sketch.stroke</c>: <paramref name="points"/> is the flat array x0, y0, x1, y1, … in canvas
        /// coordinates (the face image's square, x right, y down, 0 … 1), 1 … 512 points; <paramref name="append"/>: these
        /// points continue the previous stroke (a live stroke sent in pieces). The server checks the values (NaN, far-off
        /// coordinates, a width out of range are <c>bad_field</c>); this checks the shape only.</summary>
        public static MsgMap SketchStroke(int? rid, IList<double> points, SketchStyle style, bool append = false)
        {
            if (points == null) throw new ArgumentNullException("points");
            if (points.Count < 2 || points.Count % 2 != 0 || points.Count > 2 * SketchStyle.MaxPointsPerMessage)
                throw new ArgumentOutOfRangeException("points", points.Count, "x, y pairs: an even count of 2 … 1024 numbers");
            var list = new List<object>(points.Count);
            for (int i = 0; i < points.Count; i++) list.Add(points[i]);
            return StrokeFields(Head(MessageTypes.SketchStroke, rid).Set("points", list), style, append);
        }

        /// <summary>v1.3 <c>sketch.stroke</c> from a buffer of interleaved x, y floats (as <see cref="SketchPad"/> keeps them):
        /// <paramref name="pointCount"/> points from point <paramref name="firstPoint"/>. Each float is sent as the shortest
        /// decimal that reads back as it (0.3f as 0.3, not 0.30000001192…; <see cref="SketchStyle.Wire"/>).</summary>
        public static MsgMap SketchStroke(int? rid, float[] xy, int firstPoint, int pointCount, SketchStyle style, bool append = false)
        {
            if (xy == null) throw new ArgumentNullException("xy");
            if (pointCount < 1 || pointCount > SketchStyle.MaxPointsPerMessage)
                throw new ArgumentOutOfRangeException("pointCount", pointCount, "1 … 512 points in one message");
            if (firstPoint < 0 || 2 * (firstPoint + pointCount) > xy.Length) throw new ArgumentOutOfRangeException("firstPoint");
            var list = new List<object>(2 * pointCount);
            for (int i = 2 * firstPoint, end = 2 * (firstPoint + pointCount); i < end; i++) list.Add(SketchStyle.Wire(xy[i]));
            return StrokeFields(Head(MessageTypes.SketchStroke, rid).Set("points", list), style, append);
        }

        static MsgMap StrokeFields(MsgMap m, SketchStyle style, bool append)
        {
            m.Set("colour", new List<object> { (long)style.R, (long)style.G, (long)style.B }).Set("width", style.Width);
            if (style.Tool != null && style.Tool != SketchTools.Line) m.Set("tool", style.Tool);
            if (append) m.Set("append", true);
            return m;
        }

        /// <summary>v1.2 <c>gaze.batch</c>: the first <paramref name="count"/> samples (1 … 256), oldest first
        /// (docs/gaze.md). Each becomes the array [t, source, ox, oy, oz, dx, dy, dz, confidence] or, with a hit,
        /// [..., panel, u, v].</summary>
        public static MsgMap GazeBatch(int? rid, IList<GazeWireSample> samples, int count)
        {
            if (samples == null) throw new ArgumentNullException("samples");
            if (count < 1 || count > GazeWireSample.MaxPerBatch || count > samples.Count)
                throw new ArgumentOutOfRangeException("count", count, "a batch holds 1 … 256 samples");
            var list = new List<object>(count);
            for (int i = 0; i < count; i++) list.Add(samples[i].ToWire());
            return Head(MessageTypes.GazeBatch, rid).Set("samples", list);
        }

        /// <summary>v1.4 <c>calibrate.begin</c>: starts a calibration of this session's gaze; <paramref name="pattern"/> is one of
        /// <c>welcome.gaze.calibration</c> (null: the server's default, <c>nine-point</c>), <paramref name="source"/> the samples
        /// to fit, <see cref="GazeWireSample.Eye"/> or <see cref="GazeWireSample.Head"/> (null: eye).</summary>
        public static MsgMap CalibrateBegin(int? rid, string pattern = null, string source = null)
        {
            if (source != null && source != GazeWireSample.Eye && source != GazeWireSample.Head)
                throw new ArgumentOutOfRangeException("source", source, "a calibration's source is \"eye\" or \"head\"");
            return Head(MessageTypes.CalibrateBegin, rid).SetIfNotNull("pattern", pattern).SetIfNotNull("source", source);
        }

        /// <summary>v1.4 <c>calibrate.end</c>: when each target was shown (1 … 64 entries), on the server's clock: each
        /// [target index, t_start, t_end], from the end of its settle time to when it disappeared.</summary>
        public static MsgMap CalibrateEnd(int? rid, IList<CalibrationShown> shown)
        {
            if (shown == null) throw new ArgumentNullException("shown");
            if (shown.Count < 1 || shown.Count > CalibrationShown.MaxPerMessage)
                throw new ArgumentOutOfRangeException("shown", shown.Count, "1 … 64 targets shown");
            var list = new List<object>(shown.Count);
            for (int i = 0; i < shown.Count; i++) list.Add(shown[i].ToWire());
            return Head(MessageTypes.CalibrateEnd, rid).Set("shown", list);
        }

        /// <summary>v1.5 <c>calibrate.cancel</c>: abandons the running calibration (its samples are dropped, the correction in
        /// force stays); answered with <c>calibration.cancelled</c>, or <c>wrong_state</c> when none runs.</summary>
        public static MsgMap CalibrateCancel(int? rid) { return Head(MessageTypes.CalibrateCancel, rid); }

        /// <summary>v1.5 <c>ideal</c>: the face the session's belief likes best near <paramref name="near"/> (a face shown in
        /// this selection; null: the last face chosen, or the most probable face on screen), generated, and the unseen faces
        /// nearest to it.</summary>
        public static MsgMap Ideal(int? rid, int? near = null)
        {
            if (near.HasValue && near.Value < 0) throw new ArgumentOutOfRangeException("near", near.Value, "a face id is 0 … 2^31-1");
            var m = Head(MessageTypes.Ideal, rid);
            if (near.HasValue) m.Set("near", (long)near.Value);
            return m;
        }

        /// <summary>v1.2 <c>layout</c>: panel k shows <c>candidates.items[k]</c>.</summary>
        public static MsgMap Layout(int? rid, IList<PanelPose> panels)
        {
            if (panels == null) throw new ArgumentNullException("panels");
            if (panels.Count < 1 || panels.Count > 9) throw new ArgumentOutOfRangeException("panels", "1 … 9 panels");
            var list = new List<object>(panels.Count);
            foreach (PanelPose p in panels) list.Add(p.ToWire());
            return Head(MessageTypes.Layout, rid).Set("panels", list);
        }
    }

    /// <summary>How a v1.3 sketch stroke is drawn: tool, colour and width. The defaults of a fresh value are a thin dark
    /// line (<see cref="DefaultPen"/> says so explicitly).</summary>
    public struct SketchStyle
    {
        /// <summary>Points in one <c>sketch.stroke</c> (protocol limit; <c>welcome.sketch.max_points_per_message</c>).</summary>
        public const int MaxPointsPerMessage = 512;
        public const double MinWidth = 0.001;
        public const double MaxWidth = 0.25;

        /// <summary><see cref="SketchTools.Line"/> (or null: a line; left out on the wire, the default) or
        /// <see cref="SketchTools.Paint"/>.</summary>
        public string Tool;
        public byte R, G, B;
        /// <summary>Stroke width, a fraction of the canvas side (0.001 … 0.25).</summary>
        public double Width;

        public SketchStyle(string tool, byte r, byte g, byte b, double width)
        {
            Tool = tool;
            R = r;
            G = g;
            B = b;
            Width = width;
        }

        /// <summary>A dark pen line, 1.2 % of the canvas wide (what the protocol's examples draw).</summary>
        public static SketchStyle DefaultPen { get { return new SketchStyle(SketchTools.Line, 20, 20, 20, 0.012); } }

        /// <summary>Whether the tool is paint (anything else is a line).</summary>
        public bool IsPaint { get { return Tool == SketchTools.Paint; } }

        /// <summary>A float as a wire number: the shortest decimal that reads back as the float (0.3f → 0.3), so messages
        /// read as they were meant. NaN and infinities pass through unchanged (the server refuses them).</summary>
        public static double Wire(float value)
        {
            if (float.IsNaN(value) || float.IsInfinity(value) || Math.Abs(value) > 1e28f) return value;
            return (double)(decimal)value;  // a float converts to decimal with 7 significant digits, exactly its meaning
        }

        public override string ToString()
        {
            return (IsPaint ? "paint" : "line") + " rgb(" + R + ", " + G + ", " + B + ") width " + Width;
        }
    }

    /// <summary>One answer of an <c>answers</c> message (protocol v1.2): the item's id and an integer (Likert) or a
    /// string (best/worst: one of the item's choices; text: free text).</summary>
    public struct QuestionnaireAnswer
    {
        public const int MaxPerMessage = 64;
        public const int MaxTextChars = 2000;

        public string Item;
        /// <summary>The value when it is an integer (<see cref="Text"/> null).</summary>
        public long Number;
        /// <summary>The value when it is a string; null: the value is <see cref="Number"/>.</summary>
        public string Text;

        public static QuestionnaireAnswer Of(string item, long number) { return new QuestionnaireAnswer { Item = item, Number = number }; }

        public static QuestionnaireAnswer Of(string item, string text)
        {
            if (text == null) throw new ArgumentNullException("text");
            return new QuestionnaireAnswer { Item = item, Text = text };
        }

        /// <summary>The value as sent: a long or a string.</summary>
        public object Value { get { return Text != null ? (object)Text : Number; } }

        public MsgMap ToWire()
        {
            if (string.IsNullOrEmpty(Item) || Item.Length > 64) throw new ArgumentException("an answer's item is 1 … 64 characters");
            if (Text != null && Text.Length > MaxTextChars) throw new ArgumentException("answer " + Item + ": longer than 2,000 characters");
            return new MsgMap().Set("item", Item).Set("value", Value);
        }

        public override string ToString() { return Item + "=" + (Text != null ? "\"" + Text + "\"" : Number.ToString()); }
    }

    /// <summary>One gaze sample (protocol v1.2). <see cref="T"/> is on the server's clock (the local clock plus
    /// the ping/pong offset), seconds; origin and direction in the scene frame of the <c>layout</c>.</summary>
    public struct GazeWireSample
    {
        public const int MaxPerBatch = 256;
        public const string Head = "head";
        public const string Eye = "eye";

        public double T;
        public string Source;
        public double Ox, Oy, Oz, Dx, Dy, Dz;
        public double Confidence;
        /// <summary>True when the client ray-cast the sample itself: <see cref="Panel"/> (−1: no panel), u, v.</summary>
        public bool HasHit;
        public int Panel;
        public double U, V;

        public List<object> ToWire()
        {
            var a = new List<object>(HasHit ? 12 : 9) { T, Source, Ox, Oy, Oz, Dx, Dy, Dz, Confidence };
            if (HasHit) { a.Add((long)Panel); a.Add(U); a.Add(V); }
            return a;
        }
    }

    /// <summary>One target of a calibration as it was shown (protocol v1.4 <c>calibrate.end.shown</c>): its index into
    /// <c>calibration.targets</c> and the interval the eyes were on it, on the server's clock (seconds): from the end of its
    /// settle time (<see cref="Start"/>) to when it disappeared (<see cref="End"/>).</summary>
    public struct CalibrationShown
    {
        public const int MaxPerMessage = 64;

        public int Target;
        public double Start;
        public double End;

        public CalibrationShown(int target, double start, double end)
        {
            Target = target;
            Start = start;
            End = end;
        }

        /// <summary>[index, t_start, t_end]; an index below 0, a time that is not finite or an empty interval throws.</summary>
        public List<object> ToWire()
        {
            if (Target < 0) throw new ArgumentOutOfRangeException("Target", Target, "a target index is 0 or more");
            if (double.IsNaN(Start) || double.IsInfinity(Start) || double.IsNaN(End) || double.IsInfinity(End) || !(Start < End))
                throw new ArgumentException("target " + Target + ": the interval must be finite with start < end, got " + Start + " … " + End);
            return new List<object> { (long)Target, Start, End };
        }

        public override string ToString() { return "[" + Target + ", " + Start.ToString("R") + ", " + End.ToString("R") + "]"; }
    }

    /// <summary>One panel of the grid (protocol v1.2 <c>layout</c>): centre, rotation quaternion (x, y, z, w),
    /// width and height in metres; the panel lies in its local x–y plane.</summary>
    public struct PanelPose
    {
        public double Px, Py, Pz;
        public double Qx, Qy, Qz, Qw;
        public double Width, Height;

        public MsgMap ToWire()
        {
            return new MsgMap().Set("position", new List<object> { Px, Py, Pz })
                               .Set("rotation", new List<object> { Qx, Qy, Qz, Qw })
                               .Set("size", new List<object> { Width, Height });
        }
    }
}
