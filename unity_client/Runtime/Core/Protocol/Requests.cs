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
        /// <c>--study</c>.</summary>
        public static MsgMap Hello(int? rid, string client, string token = null, int protocol = Protocol.Version, int? protocolMinor = null,
                                   string participant = null)
        {
            if (client == null) throw new ArgumentNullException("client");
            if (participant != null && (participant.Length == 0 || participant.Length > 64))
                throw new ArgumentOutOfRangeException("participant", "a participant code is 1 … 64 characters");
            var m = Head(MessageTypes.Hello, rid).Set("protocol", (long)protocol).Set("client", client).SetIfNotNull("token", token);
            if (protocolMinor.HasValue) m.Set("protocol_minor", (long)protocolMinor.Value);
            return m.SetIfNotNull("participant", participant);
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
