using System;
using System.Collections;
using System.Collections.Generic;
using System.Globalization;

namespace Omokage.Client.MessagePack
{
    /// <summary>
    /// A MessagePack map with string keys that keeps its keys in insertion order, so a message
    /// re-encodes in the canonical key order (<c>type</c> first, <c>rid</c> second, then the fields
    /// in the order docs/protocol.md lists them).
    /// Values are the decoded object model: <c>null</c>, <c>bool</c>, <c>long</c> (or <c>ulong</c>
    /// above <c>long.MaxValue</c>), <c>double</c> (or <c>float</c> for a float32), <c>string</c>,
    /// <c>byte[]</c>, <c>List&lt;object&gt;</c> and <see cref="MsgMap"/>.
    /// </summary>
    public sealed class MsgMap : IEnumerable<KeyValuePair<string, object>>
    {
        readonly List<string> _keys = new List<string>();
        readonly Dictionary<string, object> _values = new Dictionary<string, object>(StringComparer.Ordinal);

        public MsgMap() { }

        public int Count { get { return _keys.Count; } }

        /// <summary>The keys in insertion order.</summary>
        public IReadOnlyList<string> Keys { get { return _keys; } }

        /// <summary>Gets a value (<c>null</c> when absent) or sets one: a new key goes last, an existing key keeps its place.</summary>
        public object this[string key]
        {
            get
            {
                object v;
                return _values.TryGetValue(key, out v) ? v : null;
            }
            set { Set(key, value); }
        }

        /// <summary>Adds or replaces a key; returns this map so builders can chain.</summary>
        public MsgMap Set(string key, object value)
        {
            if (key == null) throw new ArgumentNullException("key");
            if (!_values.ContainsKey(key)) _keys.Add(key);
            _values[key] = value;
            return this;
        }

        /// <summary>Adds the key only when the value is not null (for optional fields).</summary>
        public MsgMap SetIfNotNull(string key, object value)
        {
            if (value != null) Set(key, value);
            return this;
        }

        /// <summary>Collection-initializer support: <c>new MsgMap { { "type", "ping" }, { "t", 1.5 } }</c>.</summary>
        public void Add(string key, object value) { Set(key, value); }

        public bool ContainsKey(string key) { return _values.ContainsKey(key); }

        public bool TryGetValue(string key, out object value) { return _values.TryGetValue(key, out value); }

        public bool Remove(string key)
        {
            if (!_values.Remove(key)) return false;
            _keys.Remove(key);
            return true;
        }

        public IEnumerator<KeyValuePair<string, object>> GetEnumerator()
        {
            for (int i = 0; i < _keys.Count; i++)
                yield return new KeyValuePair<string, object>(_keys[i], _values[_keys[i]]);
        }

        IEnumerator IEnumerable.GetEnumerator() { return GetEnumerator(); }

        /// <summary>A readable one-line rendering (JSON-like; bin shown by size), for logs.</summary>
        public override string ToString() { return MsgPackDisplay.Format(this); }

        // --- typed access: null when absent or of another type ----------------------------------

        public string GetString(string key) { return this[key] as string; }

        public byte[] GetBytes(string key) { return this[key] as byte[]; }

        public MsgMap GetMap(string key) { return this[key] as MsgMap; }

        public IList<object> GetList(string key) { return this[key] as IList<object>; }

        /// <summary>The value as a 64-bit integer when it is a MessagePack integer that fits.</summary>
        public long? GetInt64(string key) { return MsgPackConvert.AsInt64(this[key]); }

        /// <summary>The value as a double when it is a float or an integer ("number" in the protocol).</summary>
        public double? GetNumber(string key) { return MsgPackConvert.AsDouble(this[key]); }

        public bool? GetBool(string key)
        {
            object v = this[key];
            if (v is bool) return (bool)v;
            return null;
        }
    }

    /// <summary>Conversions over the decoded object model.</summary>
    public static class MsgPackConvert
    {
        /// <summary>An integer value (any CLR integer type) as long, or null (a float is not an integer).</summary>
        public static long? AsInt64(object v)
        {
            if (v == null) return null;
            if (v is long) return (long)v;
            if (v is int) return (int)v;
            if (v is short) return (short)v;
            if (v is sbyte) return (sbyte)v;
            if (v is byte) return (byte)v;
            if (v is ushort) return (ushort)v;
            if (v is uint) return (uint)v;
            if (v is ulong)
            {
                ulong u = (ulong)v;
                if (u <= long.MaxValue) return (long)u;
            }
            return null;
        }

        /// <summary>A float or integer value as double, or null.</summary>
        public static double? AsDouble(object v)
        {
            if (v == null) return null;
            if (v is double) return (double)v;
            if (v is float) return (float)v;
            if (v is ulong) return (ulong)v;
            long? l = AsInt64(v);
            if (l.HasValue) return l.Value;
            return null;
        }

        public static bool IsInteger(object v)
        {
            return v is long || v is int || v is short || v is sbyte || v is byte || v is ushort || v is uint || v is ulong;
        }

        internal static string FormatDouble(double d)
        {
            if (double.IsNaN(d)) return "NaN";
            if (double.IsPositiveInfinity(d)) return "Infinity";
            if (double.IsNegativeInfinity(d)) return "-Infinity";
            string s = d.ToString("R", CultureInfo.InvariantCulture);
            if (s.IndexOf('.') < 0 && s.IndexOf('E') < 0) s += ".0";
            return s;
        }
    }
}
