using System;
using System.Collections.Generic;
using System.IO;
using System.Net;
using System.Net.Sockets;
using System.Security.Cryptography;
using System.Text;
using System.Threading;
using System.Threading.Tasks;
using Omokage.Client.MessagePack;

namespace Omokage.Client.Tests
{
    /// <summary>
    /// A scriptable WebSocket server on loopback for failure cases a real server does not produce on demand: silence
    /// (a request timeout, a half-open link), oversized frames. Just enough RFC 6455: the handshake, masked client frames,
    /// unmasked server frames, close and ping. By default it welcomes every hello (a new session id per connection) and
    /// answers pings; <see cref="Handler"/> replaces that per message.
    /// </summary>
    internal sealed class FakeServer : IDisposable
    {
        readonly TcpListener _listener;
        readonly List<Connection> _connections = new List<Connection>();
        readonly List<MsgMap> _received = new List<MsgMap>();
        int _sessions;
        volatile bool _disposed;

        public FakeServer()
        {
            _listener = new TcpListener(IPAddress.Loopback, 0);
            _listener.Start();
            Port = ((IPEndPoint)_listener.LocalEndpoint).Port;
            Task.Run(() => AcceptLoop());
        }

        public int Port { get; private set; }

        public string Url { get { return "ws://127.0.0.1:" + Port + "/ws"; } }

        /// <summary>Called for each message; return false to fall back to the default (welcome hello, answer ping).</summary>
        public Func<Connection, MsgMap, bool> Handler;

        /// <summary>Once set, nothing is answered any more (the TCP connection stays open): a half-open link.</summary>
        public volatile bool Silent;

        public int Connections { get { lock (_connections) return _connections.Count; } }

        /// <summary>Every message received, in order.</summary>
        public List<MsgMap> Received { get { lock (_received) return new List<MsgMap>(_received); } }

        public int CountReceived(string type)
        {
            int n = 0;
            foreach (var m in Received)
                if (m.GetString("type") == type) n++;
            return n;
        }

        async Task AcceptLoop()
        {
            while (!_disposed)
            {
                TcpClient tcp;
                try { tcp = await _listener.AcceptTcpClientAsync(); }
                catch (Exception) { return; }
                var c = new Connection(tcp, "fake-" + Interlocked.Increment(ref _sessions));
                lock (_connections) _connections.Add(c);
                new Thread(() => Serve(c)) { IsBackground = true }.Start();  // a test server: a thread per connection
            }
        }

        void Serve(Connection c)
        {
            try
            {
                c.Handshake();
                while (!_disposed)
                {
                    int opcode;
                    byte[] payload = c.ReadFrame(out opcode);
                    if (payload == null || opcode == 8) break;
                    if (Silent) continue;
                    if (opcode == 9) { c.SendFrame(10, payload); continue; }
                    if (opcode != 2) continue;
                    MsgMap message = MsgPackReader.DecodeMap(payload);
                    lock (_received) _received.Add(message);
                    var handler = Handler;
                    if (handler != null && handler(c, message)) continue;
                    Default(c, message);
                }
            }
            catch (Exception) { }
            finally { c.Close(); }
        }

        static void Default(Connection c, MsgMap message)
        {
            long? rid = message.GetInt64("rid");
            switch (message.GetString("type"))
            {
                case MessageTypes.Hello: c.Send(Welcome(rid, c.SessionId)); break;
                case MessageTypes.Ping:
                    c.Send(new MsgMap { { "type", "pong" }, { "rid", rid }, { "t", message["t"] }, { "server_time", ClockSync.LocalNow() } });
                    break;
            }
        }

        public static MsgMap Welcome(long? rid, string sessionId)
        {
            return new MsgMap
            {
                { "type", "welcome" }, { "rid", rid }, { "protocol", 1L }, { "protocol_minor", 1L }, { "server", "omokage/fake" },
                { "session_id", sessionId }, { "algorithms", new List<object> { "pca" } },
                { "catalog", new MsgMap { { "count", 18L }, { "image_size", 8L } } },
                { "policies", new List<object> { "study" } }, { "default_policy", "study" },
            };
        }

        public void Dispose()
        {
            _disposed = true;
            try { _listener.Stop(); } catch (Exception) { }
            lock (_connections)
                foreach (var c in _connections) c.Close();
        }

        internal sealed class Connection
        {
            readonly TcpClient _tcp;
            readonly Stream _stream;
            readonly object _sendGate = new object();

            public Connection(TcpClient tcp, string sessionId)
            {
                _tcp = tcp;
                _stream = tcp.GetStream();
                SessionId = sessionId;
            }

            public string SessionId { get; private set; }

            public void Handshake()
            {
                var header = new StringBuilder();
                while (!header.ToString().EndsWith("\r\n\r\n", StringComparison.Ordinal))
                {
                    int b = _stream.ReadByte();
                    if (b < 0) throw new EndOfStreamException();
                    header.Append((char)b);
                }
                string key = null;
                foreach (string line in header.ToString().Split(new[] { "\r\n" }, StringSplitOptions.None))
                    if (line.StartsWith("Sec-WebSocket-Key:", StringComparison.OrdinalIgnoreCase)) key = line.Substring(18).Trim();
                string accept;
                using (var sha1 = SHA1.Create())
                    accept = Convert.ToBase64String(sha1.ComputeHash(Encoding.ASCII.GetBytes(key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11")));
                byte[] response = Encoding.ASCII.GetBytes("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
                                                          "Sec-WebSocket-Accept: " + accept + "\r\n\r\n");
                _stream.Write(response, 0, response.Length);
            }

            public byte[] ReadFrame(out int opcode)
            {
                var message = new MemoryStream();
                opcode = -1;
                while (true)
                {
                    byte[] head = ReadExactly(2);
                    if (head == null) return null;
                    bool fin = (head[0] & 0x80) != 0;
                    int op = head[0] & 0x0f;
                    if (op != 0) opcode = op;
                    long length = head[1] & 0x7f;
                    if (length == 126) { byte[] l = ReadExactly(2); length = (l[0] << 8) | l[1]; }
                    else if (length == 127) { byte[] l = ReadExactly(8); length = 0; for (int i = 0; i < 8; i++) length = (length << 8) | l[i]; }
                    byte[] mask = (head[1] & 0x80) != 0 ? ReadExactly(4) : null;
                    byte[] payload = ReadExactly((int)length);
                    if (payload == null) return null;
                    if (mask != null) for (int i = 0; i < payload.Length; i++) payload[i] ^= mask[i % 4];
                    message.Write(payload, 0, payload.Length);
                    if (fin) return message.ToArray();
                }
            }

            byte[] ReadExactly(int n)
            {
                var buffer = new byte[n];
                int got = 0;
                while (got < n)
                {
                    int r = _stream.Read(buffer, got, n - got);
                    if (r <= 0) return null;
                    got += r;
                }
                return buffer;
            }

            public void Send(MsgMap message) { SendFrame(2, MsgPackWriter.Encode(message)); }

            /// <summary>A close frame with a status and a reason (UTF-8), as a server starts its closing handshake.</summary>
            public void SendClose(int status, string reason)
            {
                byte[] text = Encoding.UTF8.GetBytes(reason ?? "");
                var payload = new byte[2 + text.Length];
                payload[0] = (byte)(status >> 8);
                payload[1] = (byte)status;
                Array.Copy(text, 0, payload, 2, text.Length);
                SendFrame(8, payload);
            }

            public void SendFrame(int opcode, byte[] payload)
            {
                var frame = new MemoryStream();
                frame.WriteByte((byte)(0x80 | opcode));
                if (payload.Length < 126) frame.WriteByte((byte)payload.Length);
                else if (payload.Length <= 0xffff)
                {
                    frame.WriteByte(126);
                    frame.WriteByte((byte)(payload.Length >> 8));
                    frame.WriteByte((byte)payload.Length);
                }
                else
                {
                    frame.WriteByte(127);
                    for (int i = 7; i >= 0; i--) frame.WriteByte((byte)((long)payload.Length >> (8 * i)));
                }
                frame.Write(payload, 0, payload.Length);
                byte[] bytes = frame.ToArray();
                lock (_sendGate) _stream.Write(bytes, 0, bytes.Length);
            }

            public void Close()
            {
                try { _tcp.Close(); } catch (Exception) { }
            }
        }
    }
}
