using System;
using System.Collections.Generic;
using Omokage.Client.MessagePack;

namespace Omokage.Client
{
    /// <summary>
    /// A message from the server. <see cref="Parse"/> turns a decoded map into the typed class for its
    /// <c>type</c> (<see cref="WelcomeMessage"/>, <see cref="CandidatesMessage"/>, <see cref="RatedMessage"/>,
    /// <see cref="DecidedMessage"/>, <see cref="TextureMessage"/>, <see cref="PongMessage"/>, <see cref="ErrorMessage"/>; v1.2:
    /// <see cref="ModelsMessage"/>, <see cref="QuestionnaireMessage"/>, <see cref="AnsweredMessage"/>,
    /// <see cref="StudyDoneMessage"/>; v1.3: <see cref="SketchResultMessage"/>; v1.4: <see cref="CalibrationMessage"/>,
    /// <see cref="CalibratedMessage"/>; v1.5: <see cref="CalibrationCancelledMessage"/>, <see cref="IdealResultMessage"/>), or an
    /// <see cref="UnknownMessage"/> for a type this version does not know (a later minor addition).
    /// Unknown fields are ignored; a missing required field or a wrong type throws
    /// <see cref="OmokageProtocolException"/> naming the field.
    /// </summary>
    public abstract class ServerMessage
    {
        /// <summary>The message's <c>type</c>.</summary>
        public string Type { get; protected set; }

        /// <summary>The request id this message answers; null for messages the server sends on its own.</summary>
        public int? Rid { get; protected set; }

        /// <summary>The decoded map, unknown fields included.</summary>
        public MsgMap Raw { get; protected set; }

        protected void Init(MsgMap raw)
        {
            Raw = raw;
            Type = raw.GetString("type");
            long? rid = raw.GetInt64("rid");
            Rid = rid.HasValue && rid.Value >= 0 && rid.Value <= Protocol.MaxRid ? (int?)(int)rid.Value : null;
        }

        public override string ToString() { return MsgPackDisplay.Format(Raw); }

        public static ServerMessage Parse(MsgMap map)
        {
            if (map == null) throw new ArgumentNullException("map");
            object type = map["type"];
            if (!(type is string)) throw new OmokageProtocolException("server message: field `type` is missing or not a string");
            switch ((string)type)
            {
                case MessageTypes.Welcome: return new WelcomeMessage(map);
                case MessageTypes.Candidates: return new CandidatesMessage(map);
                case MessageTypes.Rated: return new RatedMessage(map);
                case MessageTypes.Decided: return new DecidedMessage(map);
                case MessageTypes.Texture: return new TextureMessage(map);
                case MessageTypes.Pong: return new PongMessage(map);
                case MessageTypes.Error: return new ErrorMessage(map);
                case MessageTypes.Models: return new ModelsMessage(map);
                case MessageTypes.Questionnaire: return new QuestionnaireMessage(map);
                case MessageTypes.Answered: return new AnsweredMessage(map);
                case MessageTypes.StudyDone: return new StudyDoneMessage(map);
                case MessageTypes.SketchResult: return new SketchResultMessage(map);
                case MessageTypes.Calibration: return new CalibrationMessage(map);
                case MessageTypes.Calibrated: return new CalibratedMessage(map);
                case MessageTypes.CalibrationCancelled: return new CalibrationCancelledMessage(map);
                case MessageTypes.IdealResult: return new IdealResultMessage(map);
                case MessageTypes.SketchPreview: return new SketchPreviewMessage(map);
                default: return new UnknownMessage(map);
            }
        }
    }

    /// <summary>Reads required and optional fields of one message with errors that name the field.</summary>
    internal struct Fields
    {
        readonly MsgMap _map;
        readonly string _where;

        public Fields(MsgMap map, string where)
        {
            _map = map;
            _where = where;
        }

        OmokageProtocolException Bad(string key, string what)
        {
            return new OmokageProtocolException(_where + ": field `" + key + "` " + what);
        }

        public string Str(string key)
        {
            object v = _map[key];
            if (v == null) throw Bad(key, "is required");
            var s = v as string;
            if (s == null) throw Bad(key, "must be a string, got " + v.GetType().Name);
            return s;
        }

        public string OptStr(string key)
        {
            object v = _map[key];
            if (v == null) return null;
            var s = v as string;
            if (s == null) throw Bad(key, "must be a string, got " + v.GetType().Name);
            return s;
        }

        public long Long(string key)
        {
            object v = _map[key];
            if (v == null) throw Bad(key, "is required");
            long? l = MsgPackConvert.AsInt64(v);
            if (!l.HasValue) throw Bad(key, "must be an integer, got " + v.GetType().Name);
            return l.Value;
        }

        public int Int(string key)
        {
            long l = Long(key);
            if (l < int.MinValue || l > int.MaxValue) throw Bad(key, "is out of range: " + l);
            return (int)l;
        }

        public long OptLong(string key, long fallback)
        {
            return _map[key] == null ? fallback : Long(key);
        }

        public double Number(string key)
        {
            object v = _map[key];
            if (v == null) throw Bad(key, "is required");
            double? d = MsgPackConvert.AsDouble(v);
            if (!d.HasValue) throw Bad(key, "must be a number, got " + v.GetType().Name);
            return d.Value;
        }

        public double? OptNumber(string key)
        {
            return _map[key] == null ? (double?)null : Number(key);
        }

        public byte[] Bin(string key)
        {
            object v = _map[key];
            if (v == null) throw Bad(key, "is required");
            var b = v as byte[];
            if (b == null) throw Bad(key, "must be MessagePack bin, got " + v.GetType().Name);
            return b;
        }

        public MsgMap Map(string key)
        {
            object v = _map[key];
            if (v == null) throw Bad(key, "is required");
            var m = v as MsgMap;
            if (m == null) throw Bad(key, "must be a map, got " + v.GetType().Name);
            return m;
        }

        public MsgMap OptMap(string key)
        {
            return _map[key] == null ? null : Map(key);
        }

        public bool Bool(string key)
        {
            object v = _map[key];
            if (v == null) throw Bad(key, "is required");
            if (!(v is bool)) throw Bad(key, "must be a boolean, got " + v.GetType().Name);
            return (bool)v;
        }

        public bool OptBool(string key, bool fallback)
        {
            return _map[key] == null ? fallback : Bool(key);
        }

        /// <summary>An array of maps, each read by <paramref name="parse"/> (with its place for errors).</summary>
        public List<T> MapList<T>(string key, Func<MsgMap, string, T> parse)
        {
            var result = new List<T>();
            var list = List(key);
            for (int i = 0; i < list.Count; i++)
            {
                var m = list[i] as MsgMap;
                string where = _where + "." + key + "[" + i + "]";
                if (m == null) throw new OmokageProtocolException(where + " must be a map");
                result.Add(parse(m, where));
            }
            return result;
        }

        /// <summary>An optional array of maps: empty when absent.</summary>
        public List<T> OptMapList<T>(string key, Func<MsgMap, string, T> parse)
        {
            return _map[key] == null ? new List<T>() : MapList(key, parse);
        }

        public IList<object> List(string key)
        {
            object v = _map[key];
            if (v == null) throw Bad(key, "is required");
            var l = v as IList<object>;
            if (l == null) throw Bad(key, "must be an array, got " + v.GetType().Name);
            return l;
        }

        /// <summary>An optional array of strings: empty when absent.</summary>
        public List<string> OptStrList(string key)
        {
            return _map[key] == null ? new List<string>() : StrList(key);
        }

        public List<string> StrList(string key)
        {
            var result = new List<string>();
            foreach (object o in List(key))
            {
                var s = o as string;
                if (s == null) throw Bad(key, "must hold only strings");
                result.Add(s);
            }
            return result;
        }
    }

    /// <summary><c>welcome.limits</c>. A limit the server leaves out keeps the protocol's default.</summary>
    public sealed class ServerLimits
    {
        public long MaxFrameBytes = 4 * 1024 * 1024;
        public long MaxImageBytes = 3 * 1024 * 1024;
        public long MaxImagePixels = 16000000;
        public double MaxMessagesPerSecond = 200;
        public int MaxHashesPerRequest = 64;
        public int GridSize = 9;

        public static ServerLimits Parse(MsgMap map)
        {
            var limits = new ServerLimits();
            if (map == null) return limits;
            var f = new Fields(map, "welcome.limits");
            limits.MaxFrameBytes = f.OptLong("max_frame_bytes", limits.MaxFrameBytes);
            limits.MaxImageBytes = f.OptLong("max_image_bytes", limits.MaxImageBytes);
            limits.MaxImagePixels = f.OptLong("max_image_pixels", limits.MaxImagePixels);
            limits.MaxMessagesPerSecond = f.OptNumber("max_messages_per_second") ?? limits.MaxMessagesPerSecond;
            limits.MaxHashesPerRequest = (int)Math.Max(1, Math.Min(int.MaxValue, f.OptLong("max_hashes_per_request", limits.MaxHashesPerRequest)));
            limits.GridSize = (int)Math.Max(1, Math.Min(int.MaxValue, f.OptLong("grid_size", limits.GridSize)));
            return limits;
        }
    }

    /// <summary><c>welcome.catalog</c>.</summary>
    public sealed class CatalogInfo
    {
        public int Count;
        public int ImageSize;
    }

    /// <summary><c>welcome</c>: the server accepted <c>hello</c>.</summary>
    public sealed class WelcomeMessage : ServerMessage
    {
        public WelcomeMessage(MsgMap map)
        {
            Init(map);
            var f = new Fields(map, "welcome");
            ProtocolVersion = f.Int("protocol");
            Server = f.Str("server");
            SessionId = f.Str("session_id");
            Limits = ServerLimits.Parse(f.OptMap("limits"));
            Algorithms = f.StrList("algorithms");
            var catalog = f.Map("catalog");
            var c = new Fields(catalog, "welcome.catalog");
            Catalog = new CatalogInfo { Count = c.Int("count"), ImageSize = c.Int("image_size") };
            // v1.1; absent from a v1.0 server
            ProtocolMinor = (int)Math.Max(0, Math.Min(int.MaxValue, f.OptLong("protocol_minor", 0)));
            Policies = f.OptStrList("policies");
            DefaultPolicy = f.OptStr("default_policy");
            // v1.2
            Training = f.OptMapList("training", TrainingModel.Parse);
            var study = f.OptMap("study");
            Study = study == null ? null : StudyInfo.Parse(study, "welcome.study");
            var gaze = f.OptMap("gaze");
            Gaze = gaze == null ? null : GazeLimits.Parse(gaze, "welcome.gaze");
            // v1.3
            var sketch = f.OptMap("sketch");
            Sketch = sketch == null ? null : SketchLimits.Parse(sketch, "welcome.sketch");
            // v1.5
            var ideal = f.OptMap("ideal");
            Ideal = ideal == null ? null : IdealLimits.Parse(ideal, "welcome.ideal");
            // v1.7
            Resumed = map["resumed"] == null ? (bool?)null : f.Bool("resumed");
            var resume = f.OptMap("resume");
            Resume = resume == null ? null : ResumeInfo.Parse(resume, "welcome.resume");
        }

        /// <summary>v1.7: this connection's resume token and how long the server keeps its selection after the connection is
        /// lost; null from a study server, an older server, a server that keeps no selections (<c>--resume-minutes 0</c>) or for
        /// a client that announced a minor below 7. <see cref="OmokageClient"/> keeps it and presents it on its next
        /// connection.</summary>
        public ResumeInfo Resume { get; private set; }

        /// <summary>v1.7: only after a hello with <c>resume</c>: true when the selection goes on on this connection (the grid it
        /// was showing follows at once, as a <c>candidates</c> without rid: <see cref="OmokageClient.ResumedGrid"/>), false when
        /// there was nothing to go on with (start again). Null when the hello presented no token.</summary>
        public bool? Resumed { get; private set; }

        /// <summary>The welcome as received, with its secrets (<c>resume.token</c>) left out.</summary>
        public override string ToString() { return MsgPackDisplay.Format(Secrets.Redact(Raw)); }

        /// <summary>v1.5: the server generates ideal faces (it serves a PCA model) and their size; null from a server that
        /// cannot, an older server, or for a client that announced a minor below 5. Without it <c>ideal</c> is
        /// <c>wrong_state</c>.</summary>
        public IdealLimits Ideal { get; private set; }

        /// <summary>v1.3: the server sketches (it has a sketch model) and what a drawing may hold; null from a server without
        /// one, an older server, or for a client that announced a minor below 3. Without it every <c>sketch.*</c> is
        /// <c>wrong_state</c>.</summary>
        public SketchLimits Sketch { get; private set; }

        /// <summary>v1.2: models being fitted in the background, not yet in <see cref="Algorithms"/> (empty when none).</summary>
        public IReadOnlyList<TrainingModel> Training { get; private set; }

        /// <summary>v1.2: where a study participant stands (null unless the hello named a participant).</summary>
        public StudyInfo Study { get; private set; }

        /// <summary>v1.2: what a <c>gaze.batch</c> may carry (null from a server that does not take gaze, or for a client that
        /// announced a minor below 2); v1.4: the calibration patterns offered (<see cref="GazeLimits.Calibration"/>).</summary>
        public GazeLimits Gaze { get; private set; }

        public int ProtocolVersion { get; private set; }

        /// <summary>The server's minor version: 0 for a v1.0 server (no policies, <c>skip</c> or <c>rate</c>).</summary>
        public int ProtocolMinor { get; private set; }

        /// <summary>v1.1: the policies <c>start.policy</c> may name (empty from a v1.0 server).</summary>
        public IReadOnlyList<string> Policies { get; private set; }

        /// <summary>v1.1: the policy of a <c>start</c> without one (null from a v1.0 server).</summary>
        public string DefaultPolicy { get; private set; }

        /// <summary>Whether the server speaks at least v1.<paramref name="minor"/>.</summary>
        public bool Supports(int minor) { return ProtocolMinor >= minor; }
        public string Server { get; private set; }
        public string SessionId { get; private set; }
        public ServerLimits Limits { get; private set; }
        public IReadOnlyList<string> Algorithms { get; private set; }
        public CatalogInfo Catalog { get; private set; }
    }

    /// <summary>One face of a grid.</summary>
    public sealed class CandidateItem
    {
        public int Id;
        /// <summary>Distance in feature space to the chosen face or the uploaded image; null for a random pick.</summary>
        public double? Distance;
        /// <summary>The texture's content hash: fetch it with <c>texture.get</c> (or from the cache).</summary>
        public string Texture;
        public string Title;
        public string Url;
        /// <summary>v1.1: the policy's belief (0 … 1) that this is the face the user wants; null when the policy keeps
        /// no belief (or from a v1.0 server). Good for a subtle confidence hint.</summary>
        public double? Probability;

        internal static CandidateItem Parse(MsgMap map, string where)
        {
            var f = new Fields(map, where);
            return new CandidateItem
            {
                Id = f.Int("id"), Distance = f.OptNumber("distance"), Texture = f.Str("texture"),
                Title = f.Str("title"), Url = f.Str("url"), Probability = f.OptNumber("probability"),
            };
        }

        public override string ToString() { return "#" + Id + " " + Title; }
    }

    /// <summary><c>candidates</c>: the next grid of faces.</summary>
    public sealed class CandidatesMessage : ServerMessage
    {
        public CandidatesMessage(MsgMap map)
        {
            Init(map);
            var f = new Fields(map, "candidates");
            Step = f.Int("step");
            Algorithm = f.Str("algorithm");
            var items = new List<CandidateItem>();
            var list = f.List("items");
            for (int i = 0; i < list.Count; i++)
            {
                var m = list[i] as MsgMap;
                if (m == null) throw new OmokageProtocolException("candidates: items[" + i + "] must be a map");
                items.Add(CandidateItem.Parse(m, "candidates.items[" + i + "]"));
            }
            Items = items;
            var recon = f.OptMap("reconstruction");
            Reconstruction = recon == null ? null : TextureData.Parse(recon, "candidates.reconstruction");
            Policy = f.OptStr("policy");
            var trial = f.OptMap("trial");
            Trial = trial == null ? null : TrialInfo.Parse(trial, "candidates.trial");
        }

        /// <summary>v1.2: the study trial this grid belongs to (only in a reply to <c>study.next</c>); null otherwise.</summary>
        public TrialInfo Trial { get; private set; }

        public int Step { get; private set; }
        public string Algorithm { get; private set; }

        /// <summary>v1.1: the selection's policy (null from a v1.0 server).</summary>
        public string Policy { get; private set; }
        public IReadOnlyList<CandidateItem> Items { get; private set; }

        /// <summary>Only after an image start: the model's reconstruction of the uploaded image.</summary>
        public TextureData Reconstruction { get; private set; }
    }

    /// <summary><c>rated</c> (v1.1): the server took a rating.</summary>
    public sealed class RatedMessage : ServerMessage
    {
        public RatedMessage(MsgMap map)
        {
            Init(map);
            var f = new Fields(map, "rated");
            Id = f.Int("id");
            Rating = f.Int("rating");
        }

        public int Id { get; private set; }

        /// <summary>1 … 5.</summary>
        public int Rating { get; private set; }
    }

    /// <summary><c>decided.item</c>.</summary>
    public sealed class DecidedItem
    {
        public int Id;
        public string Texture;
        public string Title;
        /// <summary>The product page to open.</summary>
        public string Url;
    }

    /// <summary><c>decided</c>: the selection ended.</summary>
    public sealed class DecidedMessage : ServerMessage
    {
        public DecidedMessage(MsgMap map)
        {
            Init(map);
            var f = new Fields(map, "decided");
            var item = new Fields(f.Map("item"), "decided.item");
            Item = new DecidedItem { Id = item.Int("id"), Texture = item.Str("texture"), Title = item.Str("title"), Url = item.Str("url") };
            Steps = f.Int("steps");
        }

        public DecidedItem Item { get; private set; }

        /// <summary>How many grids the user saw.</summary>
        public int Steps { get; private set; }
    }

    /// <summary>An encoded image addressed by the SHA-256 of its bytes (a <c>texture</c> message or a texture map).</summary>
    public sealed class TextureData
    {
        /// <summary>64 lowercase hex characters: SHA-256 of <see cref="Data"/>.</summary>
        public string Hash;
        /// <summary><c>jpeg</c> or <c>png</c>.</summary>
        public string Format;
        public int Width;
        public int Height;
        /// <summary>The encoded image (give it to <c>Texture2D.LoadImage</c>).</summary>
        public byte[] Data;

        public static TextureData Parse(MsgMap map, string where)
        {
            var f = new Fields(map, where);
            return new TextureData
            {
                Hash = f.Str("hash"), Format = f.Str("format"), Width = f.Int("width"), Height = f.Int("height"),
                Data = f.Bin("data"),
            };
        }

        /// <summary>Whether SHA-256 of the data is the hash.</summary>
        public bool HashMatches() { return string.Equals(Hashing.Sha256Hex(Data), Hash, StringComparison.Ordinal); }
    }

    /// <summary><c>texture</c>: one texture, answering <c>texture.get</c>.</summary>
    public sealed class TextureMessage : ServerMessage
    {
        public TextureMessage(MsgMap map)
        {
            Init(map);
            Texture = TextureData.Parse(map, "texture");
        }

        public TextureData Texture { get; private set; }
    }

    /// <summary><c>pong</c>: the answer to <c>ping</c>.</summary>
    public sealed class PongMessage : ServerMessage
    {
        public PongMessage(MsgMap map)
        {
            Init(map);
            var f = new Fields(map, "pong");
            T = f.Number("t");
            ServerTime = f.Number("server_time");
        }

        /// <summary>The ping's <c>t</c>, echoed.</summary>
        public double T { get; private set; }

        /// <summary>The server's clock, Unix seconds.</summary>
        public double ServerTime { get; private set; }
    }

    /// <summary><c>error</c>: a request failed (with its <c>rid</c>) or a frame could not be read (no <c>rid</c>).</summary>
    public sealed class ErrorMessage : ServerMessage
    {
        public ErrorMessage(MsgMap map)
        {
            Init(map);
            var f = new Fields(map, "error");
            Code = f.Str("code");
            Message = f.OptStr("message") ?? "";
            long? dropped = map["dropped"] == null ? (long?)null : f.Long("dropped");
            Dropped = dropped.HasValue ? (int?)(int)Math.Max(0, Math.Min(int.MaxValue, dropped.Value)) : null;
        }

        /// <summary>v1.2: after a <c>gaze.batch</c>, how many of its samples this error dropped (the others were kept).</summary>
        public int? Dropped { get; private set; }

        public string Code { get; private set; }
        public string Message { get; private set; }

        public OmokageServerException ToException() { return new OmokageServerException(Code, Message, Rid); }
    }

    /// <summary>v1.2 <c>welcome.training</c> / <c>models.training</c>: a model being fitted in the background.</summary>
    public sealed class TrainingModel
    {
        public string Algorithm;
        /// <summary>0 … 1.</summary>
        public double Progress;
        /// <summary>Seconds left, an estimate (null until one can be made).</summary>
        public double? EtaSeconds;

        internal static TrainingModel Parse(MsgMap map, string where)
        {
            var f = new Fields(map, where);
            return new TrainingModel { Algorithm = f.Str("algorithm"), Progress = f.Number("progress"), EtaSeconds = f.OptNumber("eta_s") };
        }

        /// <summary>For people: "ae · training 40%".</summary>
        public override string ToString() { return Algorithm + " · training " + Math.Round(Progress * 100) + "%"; }
    }

    /// <summary>v1.2 <c>welcome.gaze</c>: what a <c>gaze.batch</c> may carry; v1.4: the calibration patterns offered.</summary>
    public sealed class GazeLimits
    {
        /// <summary>Samples per second per source the server keeps (after a 2 s burst).</summary>
        public double MaxRateHz = 120;
        public int MaxSamplesPerBatch = GazeWireSample.MaxPerBatch;
        /// <summary>v1.4 <c>welcome.gaze.calibration</c>: the patterns <c>calibrate.begin</c> may name (e.g.
        /// <see cref="CalibrationPatterns.NinePoint"/>). Empty: the server cannot calibrate (no patterns, an older server, or
        /// a client that announced a minor below 4).</summary>
        public IReadOnlyList<string> Calibration = new List<string>();

        /// <summary>v1.5 <c>welcome.gaze.profile</c>: what corrects this session's gaze from its start, one of
        /// <see cref="GazeProfiles"/> (<c>none</c>, <c>device</c>: the default of <c>hello.device</c>'s model, <c>participant</c>:
        /// the participant's saved calibration; v1.7 <c>calibration</c>: a resumed selection's calibration from its earlier
        /// connection); null from an older server or for a client that announced a minor below 5. Any other name is kept as
        /// sent. Offer a calibration unless <see cref="GazeProfiles.IsCalibrated"/>.</summary>
        public string Profile;

        /// <summary>Whether the server can calibrate: it offers at least one pattern.</summary>
        public bool CanCalibrate { get { return Calibration.Count > 0; } }

        internal static GazeLimits Parse(MsgMap map, string where)
        {
            var f = new Fields(map, where);
            var g = new GazeLimits();
            g.MaxRateHz = f.OptNumber("max_rate_hz") ?? g.MaxRateHz;
            g.MaxSamplesPerBatch = (int)Math.Max(1, Math.Min(GazeWireSample.MaxPerBatch, f.OptLong("max_samples_per_batch", g.MaxSamplesPerBatch)));
            g.Calibration = f.OptStrList("calibration");  // v1.4
            g.Profile = f.OptStr("profile");  // v1.5
            return g;
        }
    }

    /// <summary>v1.3 <c>welcome.sketch</c>: the server's sketch model and what a drawing may hold. A limit the server
    /// leaves out keeps the protocol's value.</summary>
    public sealed class SketchLimits
    {
        /// <summary>The side of the raster the server projects drawings at (pixels).</summary>
        public int Resolution;
        /// <summary>The side of <c>sketch.result.preview</c> (pixels).</summary>
        public int PreviewSize;
        /// <summary>The tools <c>sketch.stroke.tool</c> may name (<c>line</c>, <c>paint</c>).</summary>
        public IReadOnlyList<string> Tools = new List<string> { SketchTools.Line, SketchTools.Paint };
        public double MinWidth = SketchStyle.MinWidth;
        public double MaxWidth = SketchStyle.MaxWidth;
        /// <summary>Strokes one drawing holds (256).</summary>
        public int MaxStrokes = 256;
        /// <summary>Points one <c>sketch.stroke</c> may carry (512).</summary>
        public int MaxPointsPerMessage = SketchStyle.MaxPointsPerMessage;
        /// <summary>Points one stroke may hold, its appended pieces included (4096).</summary>
        public int MaxPointsPerStroke = 4096;
        /// <summary>Points one drawing may hold over all its strokes (<c>max_points</c>, 65,536).</summary>
        public int MaxPoints = 65536;
        /// <summary>v1.6: true when the results carry a quick preview and a sharper one follows as a
        /// <see cref="SketchPreviewMessage"/> (a server whose generator is too slow for the live loop).</summary>
        public bool Sharpens;

        internal static SketchLimits Parse(MsgMap map, string where)
        {
            var f = new Fields(map, where);
            var s = new SketchLimits();
            s.Resolution = (int)Clamp(f.OptLong("resolution", 0), 0);
            s.PreviewSize = (int)Clamp(f.OptLong("preview_size", 0), 0);
            if (map["tools"] != null) s.Tools = f.StrList("tools");
            s.MinWidth = f.OptNumber("min_width") ?? s.MinWidth;
            s.MaxWidth = f.OptNumber("max_width") ?? s.MaxWidth;
            s.MaxStrokes = (int)Clamp(f.OptLong("max_strokes", s.MaxStrokes), 1);
            s.MaxPointsPerMessage = (int)Clamp(f.OptLong("max_points_per_message", s.MaxPointsPerMessage), 1);
            s.MaxPointsPerStroke = (int)Clamp(f.OptLong("max_points_per_stroke", s.MaxPointsPerStroke), 1);
            s.MaxPoints = (int)Clamp(f.OptLong("max_points", s.MaxPoints), 1);
            s.Sharpens = f.OptBool("sharpens", false);  // v1.6
            return s;
        }

        static long Clamp(long v, long min) { return Math.Max(min, Math.Min(int.MaxValue, v)); }

        /// <summary>Whether the server offers <paramref name="tool"/> (null: a line).</summary>
        public bool Offers(string tool)
        {
            string t = tool ?? SketchTools.Line;
            for (int i = 0; i < Tools.Count; i++)  // no enumerator: called as each stroke begins
                if (Tools[i] == t) return true;
            return false;
        }

        /// <summary><paramref name="style"/> as this server takes it: the width clamped to <see cref="MinWidth"/> …
        /// <see cref="MaxWidth"/> (within the protocol's 0.001 … 0.25), and a tool it does not offer replaced by one it does
        /// (a line if it can, else the first offered).</summary>
        public SketchStyle Fit(SketchStyle style)
        {
            double min = Math.Max(SketchStyle.MinWidth, double.IsNaN(MinWidth) ? SketchStyle.MinWidth : MinWidth);
            double max = Math.Min(SketchStyle.MaxWidth, double.IsNaN(MaxWidth) ? SketchStyle.MaxWidth : MaxWidth);
            if (max < min) max = min;
            double w = style.Width;
            style.Width = double.IsNaN(w) || w < min ? min : w > max ? max : w;
            if (!Offers(style.Tool) && Tools.Count > 0) style.Tool = Offers(SketchTools.Line) ? SketchTools.Line : Tools[0];
            return style;
        }
    }

    /// <summary>v1.3 <c>sketch.result</c>: what the drawing shows now, the faces it fits best and a face generated from it.
    /// It answers the <b>newest</b> sketch message it includes (<see cref="ServerMessage.Rid"/>): results are coalesced, so
    /// the messages before it that it covers get no reply of their own.</summary>
    public sealed class SketchResultMessage : ServerMessage
    {
        public SketchResultMessage(MsgMap map)
        {
            Init(map);
            var f = new Fields(map, "sketch.result");
            Revision = f.Int("revision");
            Strokes = f.Int("strokes");
            Items = f.MapList("items", CandidateItem.Parse);
            Preview = TextureData.Parse(f.Map("preview"), "sketch.result.preview");
        }

        /// <summary>The drawing's revision: +1 for every stroke, piece, undo and clear since <c>sketch.begin</c> (0).</summary>
        public int Revision { get; private set; }

        /// <summary>Strokes in the drawing.</summary>
        public int Strokes { get; private set; }

        /// <summary>Up to 9 faces, best first, each with <see cref="CandidateItem.Probability"/> (under the drawing alone);
        /// empty for an empty drawing.</summary>
        public IReadOnlyList<CandidateItem> Items { get; private set; }

        /// <summary>A face generated from the drawing: an inline JPEG of <c>welcome.sketch.preview_size</c> pixels (give
        /// <see cref="TextureData.Data"/> to <c>Texture2D.LoadImage</c>).</summary>
        public TextureData Preview { get; private set; }
    }

    /// <summary>v1.6 <c>sketch.preview</c>: a sharper preview of the drawing of <see cref="Revision"/>, sent after that
    /// revision's <see cref="SketchResultMessage"/> (no rid). Show it in place of the result's preview while that result is
    /// still the newest shown; the client raises <see cref="OmokageClient.SketchPreviewReceived"/> only then.</summary>
    public sealed class SketchPreviewMessage : ServerMessage
    {
        public SketchPreviewMessage(MsgMap map)
        {
            Init(map);
            var f = new Fields(map, "sketch.preview");
            Revision = f.Int("revision");
            Preview = TextureData.Parse(f.Map("preview"), "sketch.preview.preview");
        }

        /// <summary>The drawing's revision, as in the <see cref="SketchResultMessage"/> it sharpens.</summary>
        public int Revision { get; private set; }

        /// <summary>The sharper face: an inline JPEG of <c>welcome.sketch.preview_size</c> pixels.</summary>
        public TextureData Preview { get; private set; }
    }

    /// <summary>One target of a v1.4 <c>calibration</c>: its direction from the viewer in the scene frame (−z forward, +y up),
    /// degrees: yaw = atan2(x, −z) (positive to the right), pitch = asin(y) (positive up).</summary>
    public struct CalibrationTarget
    {
        public double Yaw;
        public double Pitch;

        public CalibrationTarget(double yaw, double pitch)
        {
            Yaw = yaw;
            Pitch = pitch;
        }

        /// <summary>The unit direction in the scene frame: (cos p sin y, sin p, −cos p cos y).</summary>
        public void Direction(out double x, out double y, out double z) { CalibrationRun.Direction(Yaw, Pitch, out x, out y, out z); }

        public override string ToString() { return "(" + Yaw + "°, " + Pitch + "°)"; }
    }

    /// <summary>v1.4 <c>calibration</c>, the reply to <c>calibrate.begin</c>: the targets to show one at a time, in this order,
    /// at <see cref="DistanceM"/> from the viewer; each waits <see cref="SettleS"/> (the eyes move and settle) and then stays
    /// <see cref="DwellS"/> while gaze is collected. <see cref="CalibrationRun"/> runs the procedure.</summary>
    public sealed class CalibrationMessage : ServerMessage
    {
        public CalibrationMessage(MsgMap map)
        {
            Init(map);
            var f = new Fields(map, "calibration");
            Pattern = f.Str("pattern");
            var targets = new List<CalibrationTarget>();
            var list = f.List("targets");
            for (int i = 0; i < list.Count; i++)
            {
                var pair = list[i] as IList<object>;
                double? yaw = pair != null && pair.Count == 2 ? MsgPackConvert.AsDouble(pair[0]) : null;
                double? pitch = pair != null && pair.Count == 2 ? MsgPackConvert.AsDouble(pair[1]) : null;
                if (!yaw.HasValue || !pitch.HasValue || !Finite(yaw.Value) || !Finite(pitch.Value) || Math.Abs(pitch.Value) > 90)
                    throw new OmokageProtocolException("calibration: targets[" + i + "] must be [yaw, pitch], finite degrees (|pitch| ≤ 90)");
                targets.Add(new CalibrationTarget(yaw.Value, pitch.Value));
            }
            if (targets.Count == 0) throw new OmokageProtocolException("calibration: field `targets` is empty");
            Targets = targets;
            DistanceM = Positive(f, "distance_m");
            SettleS = NonNegative(f, "settle_s");
            DwellS = Positive(f, "dwell_s");
        }

        static bool Finite(double x) { return !double.IsNaN(x) && !double.IsInfinity(x); }

        static double Positive(Fields f, string key)
        {
            double v = f.Number(key);
            if (!(v > 0) || double.IsInfinity(v)) throw new OmokageProtocolException("calibration: field `" + key + "` must be a positive number, got " + v);
            return v;
        }

        static double NonNegative(Fields f, string key)
        {
            double v = f.Number(key);
            if (!(v >= 0) || double.IsInfinity(v)) throw new OmokageProtocolException("calibration: field `" + key + "` must be 0 or more, got " + v);
            return v;
        }

        /// <summary>The pattern's name (one of <see cref="GazeLimits.Calibration"/>).</summary>
        public string Pattern { get; private set; }

        /// <summary>The targets, in the order to show them.</summary>
        public IReadOnlyList<CalibrationTarget> Targets { get; private set; }

        /// <summary>How far from the viewer to draw the targets (metres).</summary>
        public double DistanceM { get; private set; }

        /// <summary>After a target appears, how long before its interval starts (seconds).</summary>
        public double SettleS { get; private set; }

        /// <summary>Then how long it stays on screen while gaze is collected (seconds).</summary>
        public double DwellS { get; private set; }
    }

    /// <summary>v1.4 <c>calibrated</c>, the reply to <c>calibrate.end</c>: the correction the server fitted, now applied to
    /// every later gaze sample of this session (and, for a study participant, of their later sessions).</summary>
    public sealed class CalibratedMessage : ServerMessage
    {
        public CalibratedMessage(MsgMap map)
        {
            Init(map);
            var f = new Fields(map, "calibrated");
            Source = f.Str("source");
            Targets = f.Int("targets");
            AccuracyDeg = f.Number("accuracy_deg");
            PrecisionDeg = f.Number("precision_deg");
            Saved = f.Bool("saved");
        }

        /// <summary>The samples fitted: <see cref="GazeWireSample.Eye"/> or <see cref="GazeWireSample.Head"/>.</summary>
        public string Source { get; private set; }

        /// <summary>Targets with enough samples to be used.</summary>
        public int Targets { get; private set; }

        /// <summary>Mean angle between each target and the corrected gaze's median on it (degrees; the standard eye-tracking
        /// accuracy).</summary>
        public double AccuracyDeg { get; private set; }

        /// <summary>RMS of the angles between successive corrected samples on a target (degrees; RMS-S2S).</summary>
        public double PrecisionDeg { get; private set; }

        /// <summary>True for a study participant: kept in the study's store and applied whenever they connect; false: this
        /// session only.</summary>
        public bool Saved { get; private set; }
    }

    /// <summary>v1.5 <c>calibration.cancelled</c>, the reply to <c>calibrate.cancel</c>: the calibration is over, nothing was
    /// fitted and the correction in force stays.</summary>
    public sealed class CalibrationCancelledMessage : ServerMessage
    {
        public CalibrationCancelledMessage(MsgMap map)
        {
            Init(map);
            Samples = new Fields(map, "calibration.cancelled").Int("samples");
        }

        /// <summary>The calibration's gaze samples that were dropped.</summary>
        public int Samples { get; private set; }
    }

    /// <summary>v1.5 <c>welcome.ideal</c>: the server generates ideal faces.</summary>
    public sealed class IdealLimits
    {
        /// <summary>The side of an <c>ideal.result</c> preview in pixels.</summary>
        public int ImageSize;

        internal static IdealLimits Parse(MsgMap map, string where)
        {
            return new IdealLimits { ImageSize = (int)Math.Max(0, Math.Min(int.MaxValue, new Fields(map, where).Long("image_size"))) };
        }
    }

    /// <summary>v1.5 <c>ideal.result</c>, the reply to <c>ideal</c>: a face generated from the session's belief near a favourite
    /// (a picture of what the model thinks the user wants, not a catalog face), and the catalog faces most like it that this
    /// selection has not shown yet.</summary>
    public sealed class IdealResultMessage : ServerMessage
    {
        public IdealResultMessage(MsgMap map)
        {
            Init(map);
            var f = new Fields(map, "ideal.result");
            Near = f.Int("near");
            Items = f.MapList("items", CandidateItem.Parse);
            Preview = TextureData.Parse(f.Map("preview"), "ideal.result.preview");
        }

        /// <summary>The favourite it stayed near (<c>ideal.near</c>, or the face the server took: the last one chosen, or the
        /// most probable on screen).</summary>
        public int Near { get; private set; }

        /// <summary>Up to <c>limits.grid_size</c> faces not shown yet in this selection, nearest the generated face first, each
        /// with <see cref="CandidateItem.Distance"/> (PCA units: 1 is the median distance between two catalog faces); no
        /// <see cref="CandidateItem.Probability"/>. Fetch their textures like a grid's.</summary>
        public IReadOnlyList<CandidateItem> Items { get; private set; }

        /// <summary>The generated face: an inline JPEG of <c>welcome.ideal.image_size</c> pixels (give
        /// <see cref="TextureData.Data"/> to <c>Texture2D.LoadImage</c>).</summary>
        public TextureData Preview { get; private set; }
    }

    /// <summary>v1.7 <c>welcome.resume</c>: a secret that the hello of a later connection presents (<c>hello.resume</c>) to go
    /// on with this connection's selection, for up to <see cref="TtlS"/> seconds after this connection is lost. Every welcome
    /// carries a new one; a token is spent when presented, whatever the answer.</summary>
    public sealed class ResumeInfo
    {
        /// <summary>The token (32 hex digits from an omokage server). Keep it like a password: in memory, for this run of the
        /// app, never in logs or on disk.</summary>
        public string Token;

        /// <summary>How long the server keeps the selection after the connection is lost (600 s by default).</summary>
        public double TtlS;

        internal static ResumeInfo Parse(MsgMap map, string where)
        {
            var f = new Fields(map, where);
            return new ResumeInfo { Token = f.Str("token"), TtlS = f.Number("ttl_s") };
        }

        /// <summary>Whether a hello can present <see cref="Token"/> (<c>hello.resume</c> is 1 … 64 characters). The client keeps
        /// only such a token; another one is as good as none (the connection still works, it just will not resume).</summary>
        public bool Presentable { get { return !string.IsNullOrEmpty(Token) && Token.Length <= 64; } }

        /// <summary>The token stays out of logs.</summary>
        public override string ToString() { return "resume token (" + TtlS + " s)"; }
    }

    /// <summary>v1.2 <c>welcome.study</c>: the study and where the participant stands in it.</summary>
    public sealed class StudyInfo
    {
        public string Name;
        public string Title;
        /// <summary>Trials in the participant's plan.</summary>
        public int Trials;
        public int Completed;
        /// <summary>What <c>study.next</c> will give: <c>trial</c>, <c>questionnaire</c> or <c>done</c>.</summary>
        public string Next;

        internal static StudyInfo Parse(MsgMap map, string where)
        {
            var f = new Fields(map, where);
            return new StudyInfo
            {
                Name = f.Str("name"), Title = f.OptStr("title") ?? "", Trials = f.Int("trials"), Completed = f.Int("completed"),
                Next = f.Str("next"),
            };
        }
    }

    /// <summary>v1.2 <c>candidates.trial</c>: which trial of a study a grid belongs to. Show <see cref="Label"/> (never the
    /// model), <see cref="Index"/> of <see cref="Count"/>, a "practice" hint, and for a <c>target</c> task the
    /// <see cref="Target"/> face to find.</summary>
    public sealed class TrialInfo
    {
        public const string FreeTask = "free";
        public const string TargetTask = "target";

        /// <summary>1-based.</summary>
        public int Index;
        public int Count;
        public bool Practice;
        /// <summary>The condition's name for participants (e.g. "System B").</summary>
        public string Label;
        /// <summary><c>free</c> or <c>target</c>.</summary>
        public string Task;
        /// <summary>The face to find (target tasks only; fetch its texture like any other), else null.</summary>
        public DecidedItem Target;

        internal static TrialInfo Parse(MsgMap map, string where)
        {
            var f = new Fields(map, where);
            var target = f.OptMap("target");
            DecidedItem t = null;
            if (target != null)
            {
                var g = new Fields(target, where + ".target");
                t = new DecidedItem { Id = g.Int("id"), Texture = g.Str("texture"), Title = g.Str("title"), Url = g.Str("url") };
            }
            return new TrialInfo
            {
                Index = f.Int("index"), Count = f.Int("count"), Practice = f.OptBool("practice", false), Label = f.OptStr("label") ?? "",
                Task = f.OptStr("task") ?? FreeTask, Target = t,
            };
        }
    }

    /// <summary>v1.2 <c>models</c>, sent unasked (no rid) to v1.2 clients: every feature space <c>start</c> accepts now
    /// (models are added, never removed) and what still trains.</summary>
    public sealed class ModelsMessage : ServerMessage
    {
        public ModelsMessage(MsgMap map)
        {
            Init(map);
            var f = new Fields(map, "models");
            Algorithms = f.StrList("algorithms");
            Training = f.OptMapList("training", TrainingModel.Parse);
        }

        public IReadOnlyList<string> Algorithms { get; private set; }

        /// <summary>Empty when nothing trains any more.</summary>
        public IReadOnlyList<TrainingModel> Training { get; private set; }
    }

    /// <summary>Kinds of a questionnaire item (v1.2).</summary>
    public static class QuestionKinds
    {
        public const string Likert = "likert";
        public const string Best = "best";
        public const string Worst = "worst";
        public const string Text = "text";
    }

    /// <summary>One question of a <c>questionnaire</c>.</summary>
    public sealed class QuestionnaireItem
    {
        public string Id;
        /// <summary>One of <see cref="QuestionKinds"/> (another kind: a newer server; leave it unanswered unless required).</summary>
        public string Kind;
        public string Text;
        public bool Required;
        /// <summary>Likert: the scale, 1 … 5.</summary>
        public int Min = 1, Max = 5;
        /// <summary>Likert: the anchors of <see cref="Min"/> and <see cref="Max"/> (empty when none).</summary>
        public IReadOnlyList<string> Labels = new List<string>();
        /// <summary>Best/worst: the conditions' labels, in the order the participant met them.</summary>
        public IReadOnlyList<string> Choices = new List<string>();

        internal static QuestionnaireItem Parse(MsgMap map, string where)
        {
            var f = new Fields(map, where);
            return new QuestionnaireItem
            {
                Id = f.Str("id"), Kind = f.Str("kind"), Text = f.Str("text"), Required = f.OptBool("required", false),
                Min = (int)f.OptLong("min", 1), Max = (int)f.OptLong("max", 5), Labels = f.OptStrList("labels"),
                Choices = f.OptStrList("choices"),
            };
        }
    }

    /// <summary>v1.2 <c>questionnaire</c>: the reply to <c>study.next</c> when one is due; answer it with <c>answers</c>.</summary>
    public sealed class QuestionnaireMessage : ServerMessage
    {
        public QuestionnaireMessage(MsgMap map)
        {
            Init(map);
            var f = new Fields(map, "questionnaire");
            Id = f.Str("id");
            Title = f.OptStr("title") ?? "";
            Items = f.MapList("items", QuestionnaireItem.Parse);
        }

        /// <summary>What <c>answers.questionnaire</c> names: <c>block-N</c> or <c>final</c>.</summary>
        public string Id { get; private set; }
        public string Title { get; private set; }
        public IReadOnlyList<QuestionnaireItem> Items { get; private set; }
    }

    /// <summary>v1.2 <c>answered</c>: the answers are stored.</summary>
    public sealed class AnsweredMessage : ServerMessage
    {
        public AnsweredMessage(MsgMap map)
        {
            Init(map);
            Questionnaire = new Fields(map, "answered").Str("questionnaire");
        }

        public string Questionnaire { get; private set; }
    }

    /// <summary>v1.2 <c>study.done</c>: nothing is left for the participant.</summary>
    public sealed class StudyDoneMessage : ServerMessage
    {
        public StudyDoneMessage(MsgMap map)
        {
            Init(map);
            Trials = new Fields(map, "study.done").Int("trials");
        }

        /// <summary>How many trials the participant's plan held.</summary>
        public int Trials { get; private set; }
    }

    /// <summary>A message type this client does not know (ignored unless you handle it).</summary>
    public sealed class UnknownMessage : ServerMessage
    {
        public UnknownMessage(MsgMap map) { Init(map); }
    }
}
