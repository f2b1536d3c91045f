using System;
using System.Collections.Generic;
using Omokage.Client.MessagePack;

namespace Omokage.Client
{
    /// <summary>
    /// A message from the server. <see cref="Parse"/> turns a decoded map into the typed class for its
    /// <c>type</c> (<see cref="WelcomeMessage"/>, <see cref="CandidatesMessage"/>, <see cref="RatedMessage"/>,
    /// <see cref="DecidedMessage"/>, <see cref="TextureMessage"/>, <see cref="PongMessage"/>, <see cref="ErrorMessage"/>), or an
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
        }

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
        }

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
        }

        public string Code { get; private set; }
        public string Message { get; private set; }

        public OmokageServerException ToException() { return new OmokageServerException(Code, Message, Rid); }
    }

    /// <summary>A message type this client does not know (ignored unless you handle it).</summary>
    public sealed class UnknownMessage : ServerMessage
    {
        public UnknownMessage(MsgMap map) { Init(map); }
    }
}
