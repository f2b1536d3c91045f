using System;
using System.Collections.Generic;
using System.Text;
using NUnit.Framework;
using Omokage.Client.MessagePack;

namespace Omokage.Client.Tests
{
    [TestFixture]
    public class MessagePackTests
    {
        static byte[] Enc(object v) { return MsgPackWriter.Encode(v); }

        static string EncHex(object v) { return MsgPackAssert.Hex(Enc(v)); }

        [Test]
        public void Integers_UseTheShortestEncoding()
        {
            var cases = new List<KeyValuePair<long, string>>
            {
                new KeyValuePair<long, string>(0, "00"),
                new KeyValuePair<long, string>(127, "7f"),
                new KeyValuePair<long, string>(128, "cc80"),
                new KeyValuePair<long, string>(255, "ccff"),
                new KeyValuePair<long, string>(256, "cd0100"),
                new KeyValuePair<long, string>(65535, "cdffff"),
                new KeyValuePair<long, string>(65536, "ce00010000"),
                new KeyValuePair<long, string>(2147483647, "ce7fffffff"),
                new KeyValuePair<long, string>(4294967295, "ceffffffff"),
                new KeyValuePair<long, string>(4294967296, "cf0000000100000000"),
                new KeyValuePair<long, string>(long.MaxValue, "cf7fffffffffffffff"),
                new KeyValuePair<long, string>(-1, "ff"),
                new KeyValuePair<long, string>(-32, "e0"),
                new KeyValuePair<long, string>(-33, "d0df"),
                new KeyValuePair<long, string>(-128, "d080"),
                new KeyValuePair<long, string>(-129, "d1ff7f"),
                new KeyValuePair<long, string>(-32768, "d18000"),
                new KeyValuePair<long, string>(-32769, "d2ffff7fff"),
                new KeyValuePair<long, string>(int.MinValue, "d280000000"),
                new KeyValuePair<long, string>((long)int.MinValue - 1, "d3ffffffff7fffffff"),
                new KeyValuePair<long, string>(long.MinValue, "d38000000000000000"),
            };
            foreach (var c in cases)
            {
                Assert.AreEqual(c.Value, EncHex(c.Key), "encoding of " + c.Key);
                Assert.AreEqual(c.Key, MsgPackReader.Decode(MsgPackAssert.FromHex(c.Value)), "decoding of " + c.Value);
            }
        }

        [Test]
        public void Integers_OfEveryClrTypeEncodeByValue()
        {
            Assert.AreEqual("05", EncHex((byte)5));
            Assert.AreEqual("05", EncHex((short)5));
            Assert.AreEqual("05", EncHex(5));
            Assert.AreEqual("05", EncHex(5u));
            Assert.AreEqual("05", EncHex(5UL));
            Assert.AreEqual("fb", EncHex((sbyte)-5));
            Assert.AreEqual("cc80", EncHex((ushort)128));
        }

        [Test]
        public void Uint64_AboveLongMax_DecodesAsUlong()
        {
            object v = MsgPackReader.Decode(MsgPackAssert.FromHex("cfffffffffffffffff"));
            Assert.IsInstanceOf(typeof(ulong), v);
            Assert.AreEqual(ulong.MaxValue, (ulong)v);
            Assert.AreEqual("cfffffffffffffffff", EncHex(ulong.MaxValue));
            Assert.AreEqual("cf8000000000000000", EncHex(9223372036854775808UL));
        }

        [Test]
        public void Uint64_WithinLongRange_DecodesAsLong()
        {
            // a non-canonical but valid wide encoding of 1
            Assert.AreEqual(1L, MsgPackReader.Decode(MsgPackAssert.FromHex("cf0000000000000001")));
            Assert.AreEqual(1L, MsgPackReader.Decode(MsgPackAssert.FromHex("d300000000000000 01")));
            Assert.AreEqual(-1L, MsgPackReader.Decode(MsgPackAssert.FromHex("d0ff")));
        }

        [Test]
        public void Doubles_AreAlwaysFloat64_FloatsFloat32()
        {
            Assert.AreEqual("cb3ff8000000000000", EncHex(1.5));
            Assert.AreEqual("cb0000000000000000", EncHex(0.0));
            Assert.AreEqual("cb4069000000000000", EncHex(200.0));
            Assert.AreEqual("ca3fc00000", EncHex(1.5f));
            object d = MsgPackReader.Decode(MsgPackAssert.FromHex("cb3ff8000000000000"));
            Assert.IsInstanceOf(typeof(double), d);
            Assert.AreEqual(1.5, (double)d);
            object f = MsgPackReader.Decode(MsgPackAssert.FromHex("ca3fc00000"));
            Assert.IsInstanceOf(typeof(float), f);
            Assert.AreEqual(1.5f, (float)f);
            Assert.AreEqual("ca3fc00000", EncHex(f), "a float32 re-encodes as float32");
        }

        [Test]
        public void NilAndBooleans()
        {
            Assert.AreEqual("c0", EncHex(null));
            Assert.AreEqual("c2", EncHex(false));
            Assert.AreEqual("c3", EncHex(true));
            Assert.IsNull(MsgPackReader.Decode(new byte[] { 0xc0 }));
            Assert.AreEqual(true, MsgPackReader.Decode(new byte[] { 0xc3 }));
            Assert.AreEqual(false, MsgPackReader.Decode(new byte[] { 0xc2 }));
        }

        [Test]
        public void Strings_UseTheShortestHeader()
        {
            Assert.AreEqual("a0", EncHex(""));
            Assert.AreEqual("bf", EncHex(new string('x', 31)).Substring(0, 2));
            Assert.AreEqual("d920", EncHex(new string('x', 32)).Substring(0, 4));
            Assert.AreEqual("d9ff", EncHex(new string('x', 255)).Substring(0, 4));
            Assert.AreEqual("da0100", EncHex(new string('x', 256)).Substring(0, 6));
            Assert.AreEqual("daffff", EncHex(new string('x', 65535)).Substring(0, 6));
            Assert.AreEqual("db00010000", EncHex(new string('x', 65536)).Substring(0, 10));
            foreach (int n in new[] { 0, 31, 32, 255, 256, 65535, 65536 })
            {
                string s = new string('y', n);
                Assert.AreEqual(s, MsgPackReader.Decode(Enc(s)), "length " + n);
            }
        }

        [Test]
        public void Strings_AreUtf8_AndLengthCountsBytes()
        {
            string s = "桜 — pink";
            byte[] bytes = Enc(s);
            int utf8 = Encoding.UTF8.GetByteCount(s);
            Assert.AreEqual(0xa0 | utf8, bytes[0]);
            Assert.AreEqual(s, MsgPackReader.Decode(bytes));
        }

        [Test]
        public void InvalidUtf8_IsRejected()
        {
            Assert.Throws<MsgPackException>(() => MsgPackReader.Decode(new byte[] { 0xa2, 0xc3, 0x28 }));
        }

        [Test]
        public void Binary_UsesTheShortestHeader_AndIsNotAString()
        {
            Assert.AreEqual("c400", EncHex(new byte[0]));
            Assert.AreEqual("c4ff", EncHex(new byte[255]).Substring(0, 4));
            Assert.AreEqual("c50100", EncHex(new byte[256]).Substring(0, 6));
            Assert.AreEqual("c6" + "00010000", EncHex(new byte[65536]).Substring(0, 10));
            object v = MsgPackReader.Decode(Enc(new byte[] { 1, 2, 3 }));
            Assert.IsInstanceOf(typeof(byte[]), v);
            CollectionAssert.AreEqual(new byte[] { 1, 2, 3 }, (byte[])v);
        }

        [Test]
        public void Arrays_AndMaps_UseTheShortestHeaders()
        {
            var list15 = new List<object>();
            for (int i = 0; i < 15; i++) list15.Add((long)i);
            Assert.AreEqual("9f", EncHex(list15).Substring(0, 2));
            list15.Add(15L);
            Assert.AreEqual("dc0010", EncHex(list15).Substring(0, 6));
            var map = new MsgMap();
            for (int i = 0; i < 15; i++) map.Set("k" + i, (long)i);
            Assert.AreEqual("8f", EncHex(map).Substring(0, 2));
            map.Set("k15", 15L);
            Assert.AreEqual("de0010", EncHex(map).Substring(0, 6));
            MsgPackAssert.DeepEqual(map, MsgPackReader.Decode(Enc(map)), "map");
            MsgPackAssert.DeepEqual(list15, MsgPackReader.Decode(Enc(list15)), "list");
        }

        [Test]
        public void Maps_KeepInsertionOrder()
        {
            var m = new MsgMap { { "type", "ping" }, { "rid", 7L }, { "t", 1.5 } };
            Assert.AreEqual("83a474797065a470696e67a3726964" + "07" + "a174cb3ff8000000000000", EncHex(m));
            var back = (MsgMap)MsgPackReader.Decode(Enc(m));
            CollectionAssert.AreEqual(new[] { "type", "rid", "t" }, new List<string>(back.Keys));
            m.Set("rid", 8L);  // replacing keeps the key's place
            CollectionAssert.AreEqual(new[] { "type", "rid", "t" }, new List<string>(m.Keys));
        }

        [Test]
        public void ExtensionTypes_AreRejected()
        {
            foreach (string hex in new[] { "d40100", "d5010000", "c70101" + "00", "d6 01 00000000", "c8000101" })
                Assert.Throws<MsgPackException>(() => MsgPackReader.Decode(MsgPackAssert.FromHex(hex)), hex);
        }

        [Test]
        public void ReservedByte_TruncatedInput_AndTrailingBytes_AreRejected()
        {
            Assert.Throws<MsgPackException>(() => MsgPackReader.Decode(new byte[] { 0xc1 }));
            Assert.Throws<MsgPackException>(() => MsgPackReader.Decode(new byte[0]));
            Assert.Throws<MsgPackException>(() => MsgPackReader.Decode(MsgPackAssert.FromHex("cd01")));
            Assert.Throws<MsgPackException>(() => MsgPackReader.Decode(MsgPackAssert.FromHex("a5616263")));
            Assert.Throws<MsgPackException>(() => MsgPackReader.Decode(MsgPackAssert.FromHex("c6ffffffff00")));
            Assert.Throws<MsgPackException>(() => MsgPackReader.Decode(MsgPackAssert.FromHex("ddffffffff")), "a huge array count must not allocate");
            Assert.Throws<MsgPackException>(() => MsgPackReader.Decode(MsgPackAssert.FromHex("0000")));
        }

        [Test]
        public void MapKeys_MustBeStrings()
        {
            Assert.Throws<MsgPackException>(() => MsgPackReader.Decode(MsgPackAssert.FromHex("810102")));
            Assert.Throws<MsgPackException>(() => MsgPackReader.DecodeMap(MsgPackAssert.FromHex("90")), "a frame must be a map");
        }

        [Test]
        public void DeepNesting_IsRejected()
        {
            var bytes = new byte[200];
            for (int i = 0; i < bytes.Length; i++) bytes[i] = 0x91;  // [[[[…
            Assert.Throws<MsgPackException>(() => MsgPackReader.Decode(bytes));
        }

        [Test]
        public void Display_IsReadable()
        {
            var m = new MsgMap { { "type", "texture" }, { "data", new byte[] { 0x89, 0x50, 0x4e, 0x47 } }, { "d", 2.0 }, { "n", null } };
            Assert.AreEqual("{\"type\": \"texture\", \"data\": <bin 4 B: 89 50 4e 47>, \"d\": 2.0, \"n\": null}", MsgPackDisplay.Format(m));
        }
    }
}
