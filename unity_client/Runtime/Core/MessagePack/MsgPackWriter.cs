using System;
using System.Collections;
using System.Collections.Generic;
using System.Text;

namespace Omokage.Client.MessagePack
{
    /// <summary>
    /// Writes the MessagePack subset the protocol uses, in canonical form: integers in their shortest
    /// encoding (positive values as positive fixint/uint8…uint64, negative ones as negative
    /// fixint/int8…int64), <c>double</c> always as float64 (a <c>float</c> as float32), strings and
    /// bins with their shortest header, maps in insertion order. No extension types.
    /// </summary>
    public sealed class MsgPackWriter
    {
        static readonly UTF8Encoding Utf8 = new UTF8Encoding(false, true);
        const int MaxDepth = 64;

        byte[] _buf;
        int _len;

        public MsgPackWriter(int capacity = 256)
        {
            _buf = new byte[Math.Max(16, capacity)];
        }

        public int Length { get { return _len; } }

        public byte[] ToArray()
        {
            var result = new byte[_len];
            Buffer.BlockCopy(_buf, 0, result, 0, _len);
            return result;
        }

        public void Clear() { _len = 0; }

        /// <summary>Encodes one value of the object model (see <see cref="MsgMap"/>) to a new byte array.</summary>
        public static byte[] Encode(object value)
        {
            var w = new MsgPackWriter();
            w.Write(value);
            return w.ToArray();
        }

        // --- values --------------------------------------------------------------------------------

        /// <summary>Writes any value of the object model, recursing into maps and lists.</summary>
        public void Write(object value) { Write(value, 0); }

        void Write(object value, int depth)
        {
            if (depth > MaxDepth) throw new MsgPackException("value nests deeper than " + MaxDepth + " levels");
            if (value == null) { WriteNil(); return; }
            if (value is string) { WriteString((string)value); return; }
            if (value is bool) { WriteBool((bool)value); return; }
            if (value is double) { WriteFloat64((double)value); return; }
            if (value is float) { WriteFloat32((float)value); return; }
            if (value is ulong) { WriteUInt64((ulong)value); return; }
            long? integer = MsgPackConvert.AsInt64(value);
            if (integer.HasValue) { WriteInt64(integer.Value); return; }
            if (value is byte[]) { WriteBinary((byte[])value); return; }
            if (value is ArraySegment<byte>)
            {
                var seg = (ArraySegment<byte>)value;
                WriteBinary(seg.Array, seg.Offset, seg.Count);
                return;
            }
            var map = value as MsgMap;
            if (map != null)
            {
                WriteMapHeader(map.Count);
                foreach (var kv in map)
                {
                    WriteString(kv.Key);
                    Write(kv.Value, depth + 1);
                }
                return;
            }
            var dict = value as IDictionary;
            if (dict != null)
            {
                WriteMapHeader(dict.Count);
                foreach (DictionaryEntry e in dict)
                {
                    var key = e.Key as string;
                    if (key == null) throw new MsgPackException("map keys must be strings, got " + (e.Key == null ? "null" : e.Key.GetType().Name));
                    WriteString(key);
                    Write(e.Value, depth + 1);
                }
                return;
            }
            var list = value as ICollection;
            if (list != null)
            {
                WriteArrayHeader(list.Count);
                foreach (object item in list) Write(item, depth + 1);
                return;
            }
            var seq = value as IEnumerable;
            if (seq != null)
            {
                var items = new List<object>();
                foreach (object item in seq) items.Add(item);
                Write(items, depth);
                return;
            }
            throw new MsgPackException("cannot encode a " + value.GetType().FullName + " as MessagePack");
        }

        public void WriteNil() { WriteByte(0xc0); }

        public void WriteBool(bool value) { WriteByte(value ? (byte)0xc3 : (byte)0xc2); }

        /// <summary>Shortest encoding of a signed integer.</summary>
        public void WriteInt64(long value)
        {
            if (value >= 0) { WriteUInt64((ulong)value); return; }
            if (value >= -32) { WriteByte((byte)(sbyte)value); return; }  // negative fixint 0xe0..0xff
            if (value >= sbyte.MinValue) { WriteByte(0xd0); WriteByte((byte)(sbyte)value); return; }
            if (value >= short.MinValue) { WriteByte(0xd1); WriteBigEndian((ulong)(ushort)(short)value, 2); return; }
            if (value >= int.MinValue) { WriteByte(0xd2); WriteBigEndian((ulong)(uint)(int)value, 4); return; }
            WriteByte(0xd3);
            WriteBigEndian((ulong)value, 8);
        }

        /// <summary>Shortest encoding of a non-negative integer.</summary>
        public void WriteUInt64(ulong value)
        {
            if (value <= 0x7f) { WriteByte((byte)value); return; }  // positive fixint
            if (value <= byte.MaxValue) { WriteByte(0xcc); WriteByte((byte)value); return; }
            if (value <= ushort.MaxValue) { WriteByte(0xcd); WriteBigEndian(value, 2); return; }
            if (value <= uint.MaxValue) { WriteByte(0xce); WriteBigEndian(value, 4); return; }
            WriteByte(0xcf);
            WriteBigEndian(value, 8);
        }

        public void WriteFloat64(double value)
        {
            WriteByte(0xcb);
            WriteBigEndian((ulong)BitConverter.DoubleToInt64Bits(value), 8);
        }

        public void WriteFloat32(float value)
        {
            WriteByte(0xca);
            var bytes = BitConverter.GetBytes(value);
            if (BitConverter.IsLittleEndian) Array.Reverse(bytes);
            WriteRaw(bytes, 0, 4);
        }

        public void WriteString(string value)
        {
            if (value == null) { WriteNil(); return; }
            byte[] bytes = Utf8.GetBytes(value);
            int n = bytes.Length;
            if (n < 32) WriteByte((byte)(0xa0 | n));
            else if (n <= byte.MaxValue) { WriteByte(0xd9); WriteByte((byte)n); }
            else if (n <= ushort.MaxValue) { WriteByte(0xda); WriteBigEndian((ulong)n, 2); }
            else { WriteByte(0xdb); WriteBigEndian((ulong)n, 4); }
            WriteRaw(bytes, 0, n);
        }

        public void WriteBinary(byte[] value)
        {
            if (value == null) { WriteNil(); return; }
            WriteBinary(value, 0, value.Length);
        }

        public void WriteBinary(byte[] value, int offset, int count)
        {
            if (count <= byte.MaxValue) { WriteByte(0xc4); WriteByte((byte)count); }
            else if (count <= ushort.MaxValue) { WriteByte(0xc5); WriteBigEndian((ulong)count, 2); }
            else { WriteByte(0xc6); WriteBigEndian((ulong)count, 4); }
            WriteRaw(value, offset, count);
        }

        public void WriteArrayHeader(int count)
        {
            if (count < 0) throw new ArgumentOutOfRangeException("count");
            if (count < 16) WriteByte((byte)(0x90 | count));
            else if (count <= ushort.MaxValue) { WriteByte(0xdc); WriteBigEndian((ulong)count, 2); }
            else { WriteByte(0xdd); WriteBigEndian((ulong)count, 4); }
        }

        public void WriteMapHeader(int count)
        {
            if (count < 0) throw new ArgumentOutOfRangeException("count");
            if (count < 16) WriteByte((byte)(0x80 | count));
            else if (count <= ushort.MaxValue) { WriteByte(0xde); WriteBigEndian((ulong)count, 2); }
            else { WriteByte(0xdf); WriteBigEndian((ulong)count, 4); }
        }

        // --- bytes ---------------------------------------------------------------------------------

        void Ensure(int extra)
        {
            if (_len + extra <= _buf.Length) return;
            int size = _buf.Length * 2;
            while (size < _len + extra) size *= 2;
            Array.Resize(ref _buf, size);
        }

        void WriteByte(byte b)
        {
            Ensure(1);
            _buf[_len++] = b;
        }

        void WriteBigEndian(ulong value, int bytes)
        {
            Ensure(bytes);
            for (int i = bytes - 1; i >= 0; i--)
            {
                _buf[_len + i] = (byte)value;
                value >>= 8;
            }
            _len += bytes;
        }

        void WriteRaw(byte[] src, int offset, int count)
        {
            Ensure(count);
            Buffer.BlockCopy(src, offset, _buf, _len, count);
            _len += count;
        }
    }

    /// <summary>Invalid MessagePack, or a value outside the protocol's subset.</summary>
    public class MsgPackException : FormatException
    {
        public MsgPackException(string message) : base(message) { }
    }
}
