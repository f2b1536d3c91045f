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

        public static MsgMap Hello(int? rid, string client, string token = null, int protocol = Protocol.Version)
        {
            if (client == null) throw new ArgumentNullException("client");
            return Head(MessageTypes.Hello, rid).Set("protocol", (long)protocol).Set("client", client).SetIfNotNull("token", token);
        }

        /// <summary><c>start</c>; <paramref name="init"/> is <c>random</c> or <c>image</c> (then <paramref name="image"/> is required).</summary>
        public static MsgMap Start(int? rid, string algorithm, string init, byte[] image = null, int? seed = null)
        {
            if (algorithm == null) throw new ArgumentNullException("algorithm");
            if (init == null) throw new ArgumentNullException("init");
            var m = Head(MessageTypes.Start, rid).Set("algorithm", algorithm).Set("init", init).SetIfNotNull("image", image);
            if (seed.HasValue) m.Set("seed", (long)seed.Value);
            return m;
        }

        public static MsgMap StartRandom(int? rid, string algorithm, int? seed = null)
        {
            return Start(rid, algorithm, InitModes.Random, null, seed);
        }

        public static MsgMap StartImage(int? rid, string algorithm, byte[] image, int? seed = null)
        {
            if (image == null) throw new ArgumentNullException("image");
            return Start(rid, algorithm, InitModes.Image, image, seed);
        }

        public static MsgMap Choose(int? rid, int id) { return Head(MessageTypes.Choose, rid).Set("id", (long)id); }

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
