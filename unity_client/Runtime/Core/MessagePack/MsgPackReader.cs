using System;
using System.Collections.Generic;
using System.Text;

namespace Omokage.Client.MessagePack
{
    /// <summary>
    /// Reads the MessagePack subset the protocol uses into the object model described on
    /// <see cref="MsgMap"/>: nil, bool, every integer width (as <c>long</c>; a uint64 above
    /// <c>long.MaxValue</c> as <c>ulong</c>), float32 (as <c>float</c>) and float64 (as <c>double</c>),
    /// str, bin, array and map (string keys only). Extension types, the reserved byte 0xc1, truncated
    /// input and invalid UTF-8 are rejected with <see cref="MsgPackException"/>.
    /// </summary>
    public sealed class MsgPackReader
    {
        static readonly UTF8Encoding Utf8 = new UTF8Encoding(false, true);

        readonly byte[] _data;
        readonly int _end;
        int _pos;

        /// <summary>How deep maps and arrays may nest (a guard against hostile input).</summary>
        public int MaxDepth = 64;

        public MsgPackReader(byte[] data) : this(data, 0, data == null ? 0 : data.Length) { }

        public MsgPackReader(byte[] data, int offset, int count)
        {
            if (data == null) throw new ArgumentNullException("data");
            if (offset < 0 || count < 0 || offset + count > data.Length) throw new ArgumentOutOfRangeException("count");
            _data = data;
            _pos = offset;
            _end = offset + count;
        }

        public int Position { get { return _pos; } }

        public bool AtEnd { get { return _pos >= _end; } }

        /// <summary>Decodes exactly one value; trailing bytes are an error.</summary>
        public static object Decode(byte[] data)
        {
            var r = new MsgPackReader(data);
            object value = r.ReadValue();
            if (!r.AtEnd) throw new MsgPackException("trailing bytes after the MessagePack value (" + (r._end - r._pos) + " bytes)");
            return value;
        }

        /// <summary>Decodes exactly one value that must be a map (one protocol message).</summary>
        public static MsgMap DecodeMap(byte[] data)
        {
            var map = Decode(data) as MsgMap;
            if (map == null) throw new MsgPackException("the frame is not a MessagePack map");
            return map;
        }

        public object ReadValue() { return ReadValue(0); }

        object ReadValue(int depth)
        {
            if (depth > MaxDepth) throw new MsgPackException("MessagePack nests deeper than " + MaxDepth + " levels");
            byte b = ReadByte();
            if (b <= 0x7f) return (long)b;                          // positive fixint
            if (b >= 0xe0) return (long)(sbyte)b;                   // negative fixint
            if (b >= 0xa0 && b <= 0xbf) return ReadString(b & 0x1f); // fixstr
            if (b >= 0x90 && b <= 0x9f) return ReadArray(b & 0x0f, depth);
            if (b >= 0x80 && b <= 0x8f) return ReadMap(b & 0x0f, depth);
            switch (b)
            {
                case 0xc0: return null;
                case 0xc2: return false;
                case 0xc3: return true;
                case 0xc4: return ReadBytes((int)ReadBigEndian(1));
                case 0xc5: return ReadBytes((int)ReadBigEndian(2));
                case 0xc6: return ReadBytes(CheckedLength(ReadBigEndian(4)));
                case 0xca:
                {
                    var bytes = ReadRaw(4);
                    if (BitConverter.IsLittleEndian) Array.Reverse(bytes);
                    return BitConverter.ToSingle(bytes, 0);
                }
                case 0xcb: return BitConverter.Int64BitsToDouble((long)ReadBigEndian(8));
                case 0xcc: return (long)ReadBigEndian(1);
                case 0xcd: return (long)ReadBigEndian(2);
                case 0xce: return (long)ReadBigEndian(4);
                case 0xcf:
                {
                    ulong u = ReadBigEndian(8);
                    if (u <= long.MaxValue) return (long)u;
                    return u;
                }
                case 0xd0: return (long)(sbyte)ReadBigEndian(1);
                case 0xd1: return (long)(short)ReadBigEndian(2);
                case 0xd2: return (long)(int)ReadBigEndian(4);
                case 0xd3: return (long)ReadBigEndian(8);
                case 0xd9: return ReadString((int)ReadBigEndian(1));
                case 0xda: return ReadString((int)ReadBigEndian(2));
                case 0xdb: return ReadString(CheckedLength(ReadBigEndian(4)));
                case 0xdc: return ReadArray((int)ReadBigEndian(2), depth);
                case 0xdd: return ReadArray(CheckedLength(ReadBigEndian(4)), depth);
                case 0xde: return ReadMap((int)ReadBigEndian(2), depth);
                case 0xdf: return ReadMap(CheckedLength(ReadBigEndian(4)), depth);
                case 0xc7: case 0xc8: case 0xc9:
                case 0xd4: case 0xd5: case 0xd6: case 0xd7: case 0xd8:
                    throw new MsgPackException("MessagePack extension types are not part of the protocol (byte 0x" + b.ToString("x2") + ")");
                default:
                    throw new MsgPackException("invalid MessagePack byte 0x" + b.ToString("x2") + " at offset " + (_pos - 1));
            }
        }

        List<object> ReadArray(int count, int depth)
        {
            // every element takes at least one byte: refuse counts the input cannot hold before allocating
            if (count > _end - _pos) throw Truncated();
            var list = new List<object>(count);
            for (int i = 0; i < count; i++) list.Add(ReadValue(depth + 1));
            return list;
        }

        MsgMap ReadMap(int count, int depth)
        {
            if (count > (_end - _pos) / 2) throw Truncated();
            var map = new MsgMap();
            for (int i = 0; i < count; i++)
            {
                int at = _pos;
                var key = ReadValue(depth + 1) as string;
                if (key == null) throw new MsgPackException("map keys must be strings (key at offset " + at + ")");
                map.Set(key, ReadValue(depth + 1));
            }
            return map;
        }

        string ReadString(int length)
        {
            if (length > _end - _pos) throw Truncated();
            try
            {
                string s = Utf8.GetString(_data, _pos, length);
                _pos += length;
                return s;
            }
            catch (ArgumentException)
            {
                throw new MsgPackException("a MessagePack str is not valid UTF-8 (offset " + _pos + ")");
            }
        }

        byte[] ReadBytes(int length) { return ReadRaw(length); }

        byte[] ReadRaw(int length)
        {
            if (length > _end - _pos) throw Truncated();
            var bytes = new byte[length];
            Buffer.BlockCopy(_data, _pos, bytes, 0, length);
            _pos += length;
            return bytes;
        }

        byte ReadByte()
        {
            if (_pos >= _end) throw Truncated();
            return _data[_pos++];
        }

        ulong ReadBigEndian(int bytes)
        {
            if (bytes > _end - _pos) throw Truncated();
            ulong v = 0;
            for (int i = 0; i < bytes; i++) v = (v << 8) | _data[_pos++];
            return v;
        }

        int CheckedLength(ulong length)
        {
            if (length > (ulong)(_end - _pos)) throw Truncated();
            return (int)length;
        }

        MsgPackException Truncated()
        {
            return new MsgPackException("MessagePack data ends early (offset " + _pos + " of " + _end + ")");
        }
    }
}
