using System;
using System.Collections.Generic;
using System.Globalization;
using System.Text;
using Omokage.Client.MessagePack;

namespace Omokage.Client.Tests
{
    /// <summary>
    /// A minimal JSON reader for tests/vectors/index.json (no dependency): objects become <see cref="MsgMap"/>
    /// (key order kept), arrays <c>List&lt;object&gt;</c>, integers <c>long</c>, other numbers <c>double</c>.
    /// <see cref="ToMessage"/> then applies the index's markers: <c>{"$bin": base64}</c> → byte[],
    /// <c>{"$float": x}</c> → double.
    /// </summary>
    internal sealed class MiniJson
    {
        readonly string _s;
        int _i;

        MiniJson(string s) { _s = s; }

        public static object Parse(string text)
        {
            var p = new MiniJson(text);
            p.Ws();
            object v = p.Value();
            p.Ws();
            if (p._i != p._s.Length) throw p.Error("trailing characters");
            return v;
        }

        /// <summary>The index's JSON form of a message → the MessagePack object model.</summary>
        public static object ToMessage(object json)
        {
            var map = json as MsgMap;
            if (map != null)
            {
                if (map.Count == 1 && map.ContainsKey("$bin")) return Convert.FromBase64String((string)map["$bin"]);
                if (map.Count == 1 && map.ContainsKey("$float")) return MsgPackConvert.AsDouble(map["$float"]).Value;
                var result = new MsgMap();
                foreach (var kv in map) result.Set(kv.Key, ToMessage(kv.Value));
                return result;
            }
            var list = json as List<object>;
            if (list != null)
            {
                var result = new List<object>();
                foreach (var item in list) result.Add(ToMessage(item));
                return result;
            }
            return json;
        }

        FormatException Error(string what) { return new FormatException("JSON: " + what + " at offset " + _i); }

        void Ws()
        {
            while (_i < _s.Length && (_s[_i] == ' ' || _s[_i] == '\t' || _s[_i] == '\n' || _s[_i] == '\r')) _i++;
        }

        char Peek()
        {
            if (_i >= _s.Length) throw Error("unexpected end");
            return _s[_i];
        }

        void Expect(char c)
        {
            if (Peek() != c) throw Error("expected '" + c + "'");
            _i++;
        }

        object Value()
        {
            char c = Peek();
            if (c == '{') return Obj();
            if (c == '[') return Arr();
            if (c == '"') return Str();
            if (c == 't') { Word("true"); return true; }
            if (c == 'f') { Word("false"); return false; }
            if (c == 'n') { Word("null"); return null; }
            return Num();
        }

        void Word(string w)
        {
            if (string.CompareOrdinal(_s, _i, w, 0, w.Length) != 0) throw Error("expected " + w);
            _i += w.Length;
        }

        MsgMap Obj()
        {
            Expect('{');
            var map = new MsgMap();
            Ws();
            if (Peek() == '}') { _i++; return map; }
            while (true)
            {
                Ws();
                string key = Str();
                Ws();
                Expect(':');
                Ws();
                map.Set(key, Value());
                Ws();
                if (Peek() == ',') { _i++; continue; }
                Expect('}');
                return map;
            }
        }

        List<object> Arr()
        {
            Expect('[');
            var list = new List<object>();
            Ws();
            if (Peek() == ']') { _i++; return list; }
            while (true)
            {
                Ws();
                list.Add(Value());
                Ws();
                if (Peek() == ',') { _i++; continue; }
                Expect(']');
                return list;
            }
        }

        string Str()
        {
            Expect('"');
            var sb = new StringBuilder();
            while (true)
            {
                char c = Peek();
                _i++;
                if (c == '"') return sb.ToString();
                if (c != '\\') { sb.Append(c); continue; }
                char e = Peek();
                _i++;
                switch (e)
                {
                    case '"': sb.Append('"'); break;
                    case '\\': sb.Append('\\'); break;
                    case '/': sb.Append('/'); break;
                    case 'b': sb.Append('\b'); break;
                    case 'f': sb.Append('\f'); break;
                    case 'n': sb.Append('\n'); break;
                    case 'r': sb.Append('\r'); break;
                    case 't': sb.Append('\t'); break;
                    case 'u':
                        if (_i + 4 > _s.Length) throw Error("short \\u escape");
                        sb.Append((char)int.Parse(_s.Substring(_i, 4), NumberStyles.HexNumber, CultureInfo.InvariantCulture));
                        _i += 4;  // surrogate pairs arrive as two escapes and combine in the string
                        break;
                    default: throw Error("bad escape \\" + e);
                }
            }
        }

        object Num()
        {
            int start = _i;
            bool isFloat = false;
            while (_i < _s.Length)
            {
                char c = _s[_i];
                if (c == '.' || c == 'e' || c == 'E') isFloat = true;
                else if (!(c == '-' || c == '+' || (c >= '0' && c <= '9'))) break;
                _i++;
            }
            string token = _s.Substring(start, _i - start);
            if (token.Length == 0) throw Error("unexpected character");
            if (!isFloat)
            {
                long l;
                if (long.TryParse(token, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out l)) return l;
                ulong u;
                if (ulong.TryParse(token, NumberStyles.None, CultureInfo.InvariantCulture, out u)) return u;
            }
            return double.Parse(token, NumberStyles.Float, CultureInfo.InvariantCulture);
        }
    }
}
