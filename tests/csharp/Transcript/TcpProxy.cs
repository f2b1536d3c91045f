using System;
using System.Collections.Generic;
using System.Net;
using System.Net.Sockets;
using System.Threading;

/// <summary>
/// A loopback TCP relay between the client and `omokage serve`, so the transcript can show what a pause does to a
/// connection: <see cref="Freeze"/> makes every open connection half-open (bytes go nowhere, nothing is closed), as when
/// the headset's Wi-Fi slept while the browser was in front. New connections relay normally. (The package's live tests
/// have their own, with cut and mute: unity_client/Tests/Editor/LiveResumeTests.cs; a package cannot reference this tool.)
/// </summary>
sealed class TcpProxy : IDisposable
{
    readonly TcpListener _listener = new TcpListener(IPAddress.Loopback, 0);
    readonly string _host;
    readonly int _port;
    readonly List<Pair> _pairs = new List<Pair>();
    volatile bool _disposed;

    sealed class Pair
    {
        public TcpClient Client;
        public TcpClient Server;
        public volatile bool Frozen;
    }

    public TcpProxy(string host, int port)
    {
        _host = host;
        _port = port;
        _listener.Start();
        new Thread(Accept) { IsBackground = true }.Start();
    }

    public int Port { get { return ((IPEndPoint)_listener.LocalEndpoint).Port; } }

    /// <summary>Every open connection stops carrying bytes, without closing.</summary>
    public void Freeze()
    {
        lock (_pairs)
            foreach (var p in _pairs) p.Frozen = true;
    }

    void Accept()
    {
        while (!_disposed)
        {
            TcpClient client;
            try { client = _listener.AcceptTcpClient(); }
            catch (Exception) { return; }
            var pair = new Pair { Client = client, Server = new TcpClient(_host, _port) };
            lock (_pairs) _pairs.Add(pair);
            new Thread(() => Pump(pair, pair.Client, pair.Server)) { IsBackground = true }.Start();
            new Thread(() => Pump(pair, pair.Server, pair.Client)) { IsBackground = true }.Start();
        }
    }

    static void Pump(Pair pair, TcpClient from, TcpClient to)
    {
        var buffer = new byte[64 * 1024];
        try
        {
            var input = from.GetStream();
            var output = to.GetStream();
            while (true)
            {
                int n = input.Read(buffer, 0, buffer.Length);
                if (n <= 0) break;
                if (!pair.Frozen) output.Write(buffer, 0, n);
            }
        }
        catch (Exception) { }
        if (pair.Frozen) return;  // a half-open link closes nothing
        try { to.Close(); } catch (Exception) { }
        try { from.Close(); } catch (Exception) { }
    }

    public void Dispose()
    {
        _disposed = true;
        _listener.Stop();
        lock (_pairs)
            foreach (var p in _pairs)
            {
                try { p.Client.Close(); } catch (Exception) { }
                try { p.Server.Close(); } catch (Exception) { }
            }
    }
}
