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

        /// <summary><c>hello</c>; <paramref name="protocolMinor"/> null greets like a v1.0 client (no <c>protocol_minor</c>).</summary>
        public static MsgMap Hello(int? rid, string client, string token = null, int protocol = Protocol.Version, int? protocolMinor = null)
        {
            if (client == null) throw new ArgumentNullException("client");
            var m = Head(MessageTypes.Hello, rid).Set("protocol", (long)protocol).Set("client", client).SetIfNotNull("token", token);
            if (protocolMinor.HasValue) m.Set("protocol_minor", (long)protocolMinor.Value);
            return m;
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
    }
}
