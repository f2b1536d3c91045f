using System;
using System.Collections.Generic;
using System.Text;
using NUnit.Framework;
using Omokage.Client.MessagePack;

namespace Omokage.Client.Tests
{
    internal static class MsgPackAssert
    {
        public static string Hex(byte[] bytes)
        {
            var sb = new StringBuilder();
            foreach (byte b in bytes) sb.Append(b.ToString("x2"));
            return sb.ToString();
        }

        public static byte[] FromHex(string hex)
        {
            hex = hex.Replace(" ", "");
            var bytes = new byte[hex.Length / 2];
            for (int i = 0; i < bytes.Length; i++) bytes[i] = Convert.ToByte(hex.Substring(2 * i, 2), 16);
            return bytes;
        }

        public static void BytesEqual(byte[] expected, byte[] actual, string what)
        {
            if (expected.Length == actual.Length)
            {
                bool same = true;
                for (int i = 0; i < expected.Length && same; i++) same = expected[i] == actual[i];
                if (same) return;
            }
            int at = 0;
            while (at < expected.Length && at < actual.Length && expected[at] == actual[at]) at++;
            Assert.Fail(what + ": bytes differ at offset " + at + " (expected " + expected.Length + " B, got " + actual.Length +
                        " B)\n expected " + Hex(expected) + "\n actual   " + Hex(actual));
        }

        /// <summary>Type-strict deep equality of the object model (long ≠ double; maps compare keys in order).</summary>
        public static void DeepEqual(object expected, object actual, string path)
        {
            string diff = Diff(expected, actual, path);
            if (diff != null) Assert.Fail(diff);
        }

        public static string Diff(object expected, object actual, string path)
        {
            if (expected == null || actual == null)
                return expected == null && actual == null ? null : path + ": expected " + Show(expected) + ", got " + Show(actual);
            if (expected.GetType() != actual.GetType())
                return path + ": expected a " + expected.GetType().Name + " " + Show(expected) + ", got a " + actual.GetType().Name + " " + Show(actual);
            var eb = expected as byte[];
            if (eb != null)
            {
                var ab = (byte[])actual;
                if (eb.Length != ab.Length) return path + ": bin of " + eb.Length + " B expected, got " + ab.Length + " B";
                for (int i = 0; i < eb.Length; i++)
                    if (eb[i] != ab[i]) return path + ": bin differs at byte " + i;
                return null;
            }
            var em = expected as MsgMap;
            if (em != null)
            {
                var am = (MsgMap)actual;
                string ek = string.Join(",", new List<string>(em.Keys).ToArray());
                string ak = string.Join(",", new List<string>(am.Keys).ToArray());
                if (ek != ak) return path + ": keys (in order) expected [" + ek + "], got [" + ak + "]";
                foreach (var kv in em)
                {
                    string d = Diff(kv.Value, am[kv.Key], path + "." + kv.Key);
                    if (d != null) return d;
                }
                return null;
            }
            var el = expected as List<object>;
            if (el != null)
            {
                var al = (List<object>)actual;
                if (el.Count != al.Count) return path + ": " + el.Count + " elements expected, got " + al.Count;
                for (int i = 0; i < el.Count; i++)
                {
                    string d = Diff(el[i], al[i], path + "[" + i + "]");
                    if (d != null) return d;
                }
                return null;
            }
            if (expected is double)
                return BitConverter.DoubleToInt64Bits((double)expected) == BitConverter.DoubleToInt64Bits((double)actual) ? null
                    : path + ": expected " + Show(expected) + ", got " + Show(actual);
            return expected.Equals(actual) ? null : path + ": expected " + Show(expected) + ", got " + Show(actual);
        }

        static string Show(object v) { return MsgPackDisplay.Format(v); }
    }
}
