using System;
using System.Collections;
using System.Globalization;
using System.Text;

namespace Omokage.Client.MessagePack
{
    /// <summary>
    /// Renders a decoded value as one readable JSON-like line for logs and transcripts. Binary data
    /// is shown by its size and first bytes (<c>&lt;bin 1234 B: 89 50 4e 47 …&gt;</c>), floats keep a
    /// decimal point so they read differently from integers.
    /// </summary>
    public static class MsgPackDisplay
    {
        public static string Format(object value, int maxString = 200)
        {
            var sb = new StringBuilder();
            Append(sb, value, maxString, 0);
            return sb.ToString();
        }

        static void Append(StringBuilder sb, object value, int maxString, int depth)
        {
            if (depth > 32) { sb.Append("…"); return; }
            if (value == null) { sb.Append("null"); return; }
            if (value is bool) { sb.Append((bool)value ? "true" : "false"); return; }
            if (value is double) { sb.Append(MsgPackConvert.FormatDouble((double)value)); return; }
            if (value is float) { sb.Append(MsgPackConvert.FormatDouble((float)value)).Append("f"); return; }
            if (value is ulong) { sb.Append(((ulong)value).ToString(CultureInfo.InvariantCulture)); return; }
            long? l = MsgPackConvert.AsInt64(value);
            if (l.HasValue) { sb.Append(l.Value.ToString(CultureInfo.InvariantCulture)); return; }
            var s = value as string;
            if (s != null)
            {
                if (s.Length > maxString) s = s.Substring(0, maxString) + "…";
                AppendQuoted(sb, s);
                return;
            }
            var bytes = value as byte[];
            if (bytes != null)
            {
                sb.Append("<bin ").Append(bytes.Length).Append(" B");
                if (bytes.Length > 0) sb.Append(":");
                for (int i = 0; i < bytes.Length && i < 8; i++) sb.Append(' ').Append(bytes[i].ToString("x2"));
                if (bytes.Length > 8) sb.Append(" …");
                sb.Append('>');
                return;
            }
            var map = value as MsgMap;
            if (map != null)
            {
                sb.Append('{');
                bool first = true;
                foreach (var kv in map)
                {
                    if (!first) sb.Append(", ");
                    first = false;
                    AppendQuoted(sb, kv.Key);
                    sb.Append(": ");
                    Append(sb, kv.Value, maxString, depth + 1);
                }
                sb.Append('}');
                return;
            }
            var list = value as IEnumerable;
            if (list != null)
            {
                sb.Append('[');
                bool first = true;
                foreach (object item in list)
                {
                    if (!first) sb.Append(", ");
                    first = false;
                    Append(sb, item, maxString, depth + 1);
                }
                sb.Append(']');
                return;
            }
            sb.Append(value.ToString());
        }

        static void AppendQuoted(StringBuilder sb, string s)
        {
            sb.Append('"');
            foreach (char c in s)
            {
                switch (c)
                {
                    case '"': sb.Append("\\\""); break;
                    case '\\': sb.Append("\\\\"); break;
                    case '\n': sb.Append("\\n"); break;
                    case '\r': sb.Append("\\r"); break;
                    case '\t': sb.Append("\\t"); break;
                    default:
                        if (c < 0x20) sb.Append("\\u").Append(((int)c).ToString("x4"));
                        else sb.Append(c);
                        break;
                }
            }
            sb.Append('"');
        }
    }
}
