// A whole selection session driven by the C# client (Omokage.Client.Core) against `omokage serve`,
// printing every message sent and received; then a short live sketch session (protocol v1.3), written to
// sketch-transcript.md beside the first transcript. Usage:
//   mono SessionTranscript.exe ws://127.0.0.1:8765/ws [transcript.md]
// The server needs a sketch model for the second part (.ci/csharp.sh fits pca, nmf and sketch).
using System;
using System.Collections.Generic;
using System.Globalization;
using System.IO;
using System.Linq;
using System.Net.WebSockets;
using System.Text;
using System.Threading;
using System.Threading.Tasks;
using Omokage.Client;
using Omokage.Client.MessagePack;

public static class SessionTranscript
{
    static readonly object Gate = new object();
    static readonly List<string> Lines = new List<string>();
    static double _t0;

    static void Note(string text)
    {
        lock (Gate)
        {
            Lines.Add("");
            Lines.Add("# " + text);
        }
        Console.WriteLine("# " + text);
    }

    static void OnTrace(MessageTrace t)
    {
        string ms = ((t.LocalTime - _t0) * 1000).ToString("0.0", CultureInfo.InvariantCulture).PadLeft(8);
        string line = ms + " ms  " + t;
        lock (Gate) Lines.Add(line);
        Console.WriteLine(line);
    }

    public static int Main(string[] args)
    {
        if (args.Length < 1)
        {
            Console.Error.WriteLine("usage: SessionTranscript.exe ws://HOST:PORT/ws [OUT.md]");
            return 2;
        }
        try
        {
            Run(args[0], args.Length > 1 ? args[1] : null).GetAwaiter().GetResult();
            return 0;
        }
        catch (Exception e)
        {
            Console.Error.WriteLine("transcript failed: " + e);
            return 1;
        }
    }

    /// <summary>A tile of the grid as the pointer sees it: what it shows, and the user's commit.</summary>
    sealed class Tile : IOmokageSelectable
    {
        public CandidateItem Item;
        public bool Armed;
        public int Commits;
        public bool IsSelectable { get { return Item != null; } }
        public object DwellKey { get { return Item; } }
        public void OnPointerHover(bool hovered, float dwellProgress, bool armed) { Armed = armed; }
        public void OnPointerSelect() { Commits++; }
    }

    static int _sent;

    /// <summary>Looks at a tile for some seconds at 72 Hz; returns how many messages the client sent meanwhile.</summary>
    static int Stare(PointerSelection gaze, Tile tile, double seconds)
    {
        int before = Volatile.Read(ref _sent);
        const double frame = 1.0 / 72;
        for (double t = 0; t < seconds; t += frame) gaze.PointAt(tile, frame);
        return Volatile.Read(ref _sent) - before;
    }

    static async Task Run(string url, string outPath)
    {
        var server = new Uri(url);
        using (var proxy = new TcpProxy(server.Host, server.Port))
        {
            var options = new OmokageClientOptions("ws://127.0.0.1:" + proxy.Port + server.AbsolutePath)
            {
                PingInterval = TimeSpan.Zero,
                Device = HeadsetModels.QuestPro,  // v1.5: the server applies the repository's calibration/devices/quest-pro.json
                ReconnectInitialDelay = TimeSpan.FromMilliseconds(100),
                ReconnectMaxDelay = TimeSpan.FromMilliseconds(500),
            };
            var client = new OmokageClient(options);
            client.Trace += OnTrace;
            client.Trace += t => { if (t.Outgoing) Interlocked.Increment(ref _sent); };
            client.MessageReceived += m => Console.WriteLine("(unsolicited) " + m);
            var welcomes = new SemaphoreSlim(0);
            client.Connected += w => welcomes.Release();
            _t0 = ClockSync.LocalNow();
            await RunSession(url, client, proxy, welcomes, outPath);
        }
        await RunSketchSession(url, outPath == null ? null : Path.Combine(Path.GetDirectoryName(Path.GetFullPath(outPath)), "sketch-transcript.md"));
    }

    static async Task RunSession(string url, OmokageClient client, TcpProxy proxy, SemaphoreSlim welcomes, string outPath)
    {
        Note("connect and say hello (protocol 1." + Protocol.Minor + ", from a Quest Pro: hello.device) through a loopback relay that can play a sleeping Wi-Fi; the server answers with its limits, algorithms, catalog, the policies it offers, what a gaze.batch may carry, the gaze calibration patterns and what corrects this session's gaze (gaze.profile: the device's default), that it generates ideal faces (welcome.ideal) and, since this server has a sketch model, welcome.sketch (the sketch session is in sketch-transcript.md)");
        WelcomeMessage welcome = await client.ConnectAsync();
        await welcomes.WaitAsync();
        string firstSession = welcome.SessionId;

        Note("ping: round trip and NTP-style clock offset");
        PingResult ping = await client.PingAsync();

        var selection = new SelectionSession(client);
        Note("start a random selection in PCA space with the server's default policy (seed 7 makes it repeatable)");
        CandidatesMessage grid = await selection.StartRandomAsync("pca", 7, welcome.DefaultPolicy);

        Note("fetch the 9 textures by content hash");
        TextureFetchResult tex1 = await client.FetchTexturesAsync(grid.Items.Select(i => i.Texture));

        // --- gaze stream (v1.2): layout, then head + eye samples in 100 ms batches, flushed before the pick ------
        var rejected = new List<ErrorMessage>();
        client.GazeRejected += e => { lock (rejected) rejected.Add(e); };
        var sender = new GazeSender();
        sender.SetPanelCount(grid.Items.Count);
        for (int k = 0; k < grid.Items.Count; k++)
            sender.SetPanel(k, new PanelPose { Px = (k % 3 - 1) * 0.36, Py = 1.5 + (1 - k / 3) * 0.36, Pz = -1.5, Qw = 1, Width = 0.3, Height = 0.3 });
        Note("the grid is on screen: send its layout (9 panels, 0.3 m, 1.5 m ahead) so that the server can ray-cast rays; no reply unless it is wrong");
        await client.SendLayoutAsync(sender.TakeLayout(client.SessionId));
        Note("0.6 s of gaze at 90 Hz, head and eye, over faces 3 → 5 (replayed at once: the samples carry the times they were taken, " +
             "on the server's clock = local + the ping's offset, with the client's own hit {panel, u, v}); a gaze.batch every 100 ms, no replies");
        double gazeStart = ClockSync.LocalNow() - 0.7;
        for (int i = 0; i < 54; i++)
        {
            double x = -0.36 + 0.72 * i / 53.0, len = Math.Sqrt(x * x + 0.01 + 2.25);
            sender.Frame(client.Gaze, gazeStart + i / 90.0, 0, 1.6, 0, x / len, -0.1 / len, -1.5 / len, true, 0.01, 1.6, 0, x / len, -0.1 / len, -1.5 / len, 0.95);
            if (i % 9 == 8 && i < 45) client.FlushGaze();
        }
        int gazePendingAtPick = client.Gaze.Pending;

        // --- gaze: dwell arms, only a press commits ----------------------------------------------------------
        var gaze = new PointerSelection { DwellSeconds = 1.5, RequireArmed = true };
        var tile = new Tile { Item = grid.Items[4] };
        int sentStaring = Stare(gaze, tile, 10);
        Note("head gaze rests on the middle face for 10 s (dwell 1.5 s): the tile is armed (highlighted: " + tile.Armed +
             "), nothing is chosen, " + sentStaring + " messages sent");
        Note("the user presses the trigger: the armed face is chosen (the only way a choice is made)");
        bool committed = gaze.Press();
        int chosen = tile.Item.Id;
        if (!committed || tile.Commits != 1) throw new InvalidOperationException("the press did not commit the armed tile");
        grid = await selection.ChooseAsync(chosen);  // the last gaze.batch goes out first: the pick closes the grid's gaze
        Note("ping: answered in order, so every gaze message before it has been read by the server");
        await client.PingAsync();
        int gazeRejected;
        lock (rejected) gazeRejected = rejected.Count;
        Note("gaze errors from the server: " + gazeRejected + " (a refused sample would have come back as error bad_field/overloaded with `dropped`)");
        if (gazeRejected > 0) throw new InvalidOperationException("the server refused gaze: " + rejected[0].Code + " " + rejected[0].Message);
        tile.Item = grid.Items[4];  // the same tile now shows a face of the new grid
        int sentAfterNewGrid = Stare(gaze, tile, 10);
        bool armedAfterNewGrid = tile.Armed;
        bool pressAfterNewGrid = gaze.Press();
        gaze.PointAt(null, 0.2);
        Stare(gaze, tile, 1.6);
        Note("the new grid appears under the resting gaze: 10 s more of staring arm nothing (armed: " + armedAfterNewGrid +
             ", a press commits: " + pressAfterNewGrid + ", " + sentAfterNewGrid + " messages sent); only after the gaze leaves and " +
             "comes back is the tile armed again (armed: " + tile.Armed + ") — and still nothing is sent without a press");

        Note("fetch textures again: the chosen face is cached, only the 8 new ones go over the wire");
        TextureFetchResult tex2 = await client.FetchTexturesAsync(grid.Items.Select(i => i.Texture));

        Note("choose an id that is not in the grid: error not_found with the request's rid");
        string errorText;
        try
        {
            await client.ChooseAsync(999999);
            errorText = "(no error?)";
        }
        catch (OmokageServerException e)
        {
            errorText = e.Code + " (rid " + e.Rid + "): " + e.ServerMessage;
        }

        Note("ask for an unknown texture hash: the server answers not_found, the client reports it as missing");
        TextureFetchResult tex3 = await client.FetchTexturesAsync(new[] { new string('0', 64) });

        Note("rate a face of this grid 5 (exactly what I want): evidence for the policy's belief; the grid stays");
        RatedMessage rated = await selection.RateAsync(grid.Items[1].Id, 5);

        Note("none of these: skip; nine faces not seen yet follow, with no chosen face first");
        grid = await selection.SkipAsync();
        int skippedStep = grid.Step;

        Note("the controller's ray points at index 2 and the user pulls the trigger: choose it");
        int chosenBeforePause = grid.Items[2].Id;
        grid = await selection.ChooseAsync(chosenBeforePause);
        await client.FetchTexturesAsync(grid.Items.Select(i => i.Texture));

        // --- v1.5: the ideal face ------------------------------------------------------------------------------
        Note("the user asks what the system thinks they want (v1.5 ideal): a face generated from the belief near the face chosen last, " +
             "inline as a JPEG, and the 9 faces nearest to it that this selection has not shown; the grid stays");
        IdealResultMessage ideal = await selection.IdealAsync();
        var shownSoFar = new HashSet<int>(grid.Items.Select(i => i.Id));
        if (ideal.Near != chosenBeforePause || ideal.Items.Count != 9 || ideal.Items.Any(i => shownSoFar.Contains(i.Id)) ||
            Hashing.SniffImageFormat(ideal.Preview.Data) != "jpeg")
            throw new InvalidOperationException("the ideal face is not what v1.5 says: " + ideal);

        // --- pause mid-selection ------------------------------------------------------------------------
        Note("the app is paused (system menu); meanwhile the Wi-Fi sleeps: the connection goes half-open (no bytes either way, nothing closed)");
        proxy.Freeze();
        Note("the app resumes: one ping checks the link (1 s); no pong, so the link is dropped and the client reconnects at once (a new server session); " +
             "v1.7: its hello presents the resume token of the last welcome (shown here as <secret>: tokens stay out of logs), the server " +
             "goes on with the selection (resumed: true, a fresh token) and sends the grid that was on screen, without rid");
        bool alive = await client.ProbeAsync(TimeSpan.FromSeconds(1));
        if (!await welcomes.WaitAsync(TimeSpan.FromSeconds(15))) throw new TimeoutException("no reconnection");
        string secondSession = client.SessionId;
        int sentBeforeResume = Volatile.Read(ref _sent);
        RestoreOutcome restoredMidway = await selection.RestoreAsync();
        int sentByResume = Volatile.Read(ref _sent) - sentBeforeResume;
        bool chosenFirstAgain = selection.Current.Items[0].Id == chosenBeforePause;
        Note("the grid belongs to session " + firstSession + ", the server now has " + secondSession + " and went on with it: restore " +
             restoredMidway + ", " + sentByResume + " messages sent; the same grid (step " + selection.Current.Step + ", the face chosen last first: " +
             chosenFirstAgain + "), the belief and the faces seen carry over");
        if (restoredMidway != RestoreOutcome.Resumed || sentByResume != 0 || !chosenFirstAgain)
            throw new InvalidOperationException("the v1.7 server did not go on with the selection: " + restoredMidway);

        // --- decide, confirm, leave the app -------------------------------------------------------------------
        Note("decide on the face chosen last (shown first)");
        var opened = new List<string>();
        var gate = new OpenUrlGate(new UrlPolicy(), u => opened.Add(u));
        DecidedMessage decided = await selection.DecideAsync(selection.Current.Items[0].Id);
        string reason;
        bool asked = gate.Request(decided.Item.Url, out reason);
        Note("the product page is not opened: the URL passed the allow-list (http/https) and waits for the user's answer (pending: " +
             (gate.Pending ?? "none") + ", opened: " + opened.Count + ")");
        string blockedReason;
        new OpenUrlGate(new UrlPolicy(), u => opened.Add(u)).Request("javascript:alert(1)", out blockedReason);
        Note("(a URL such as javascript:alert(1) from a server would be refused outright: " + blockedReason + ")");
        bool confirmed = gate.Confirm();
        Note("the user confirms in the dialog: Application.OpenURL(" + opened.LastOrDefault() + "); the app goes to the background");

        Note("in the browser the Wi-Fi sleeps again; back in the app: the probe fails, the client reconnects (another new session); " +
             "the token it presents is the last welcome's, but a decided selection is not kept: resumed: false");
        proxy.Freeze();
        await client.ProbeAsync(TimeSpan.FromSeconds(1));
        if (!await welcomes.WaitAsync(TimeSpan.FromSeconds(15))) throw new TimeoutException("no reconnection");
        int sentBeforeRestore = Volatile.Read(ref _sent);
        RestoreOutcome restoredAfterDecision = await selection.RestoreAsync();
        int sentByRestore = Volatile.Read(ref _sent) - sentBeforeRestore;
        Note("restore after the decision: " + restoredAfterDecision + "; " + sentByRestore + " messages sent, no new selection; " +
             "the decision is kept: #" + selection.LastDecision.Item.Id + " \"" + selection.LastDecision.Item.Title + "\"");

        // --- v1.7: the selection goes on on another connection --------------------------------------------------
        Note("the user starts a new selection (seed 9); the token the client holds is this connection's welcome's");
        await selection.StartRandomAsync("pca", 9, welcome.DefaultPolicy);
        var superseded = new TaskCompletionSource<Exception>(TaskCreationOptions.RunContinuationsAsynchronously);
        client.Disconnected += e => superseded.TrySetResult(e);
        Note("another connection (a second device the token reached; its messages are not the client's, so not shown) presents that " +
             "token while this connection is open: the server goes on with the selection there (resumed: true and its grid) and closes " +
             "this one with close 1000, \"" + Protocol.SupersededReason + "\"");
        string elsewhere = await ResumeElsewhere(url, client.ResumeToken);
        if (await Task.WhenAny(superseded.Task, Task.Delay(10000)) != superseded.Task) throw new TimeoutException("the client was not closed");
        Exception closed = await superseded.Task;
        int sentWhenSuperseded = Volatile.Read(ref _sent);
        await Task.Delay(2000);
        int sentWhileSuperseded = Volatile.Read(ref _sent) - sentWhenSuperseded;
        ConnectionState stateAfter = client.State;
        Note("the client is " + stateAfter + " (" + closed.Message + "): " + sentWhileSuperseded + " messages sent in the 2 s since, " +
             "no reconnection (it would start another selection over the user's head), and the spent token is dropped (ResumeToken: " +
             (client.ResumeToken ?? "none") + "). The app says \"This selection went on elsewhere\" and offers \"Start a new one here\"");
        if (!(closed is OmokageSupersededException) || stateAfter != ConnectionState.Superseded || sentWhileSuperseded != 0 || client.ResumeToken != null)
            throw new InvalidOperationException("the client did not stop as superseded: " + stateAfter + ", " + closed);
        Note("the user presses \"Start a new one here\": StartAfreshAsync connects again with no token in the hello (a new session, nothing " +
             "resumed), and a new selection starts on it");
        WelcomeMessage fresh = await client.StartAfreshAsync();
        await welcomes.WaitAsync();
        CandidatesMessage freshGrid = await selection.StartRandomAsync("pca", 9, welcome.DefaultPolicy);
        if (fresh.Resumed != null || freshGrid.Step != 1) throw new InvalidOperationException("the fresh start resumed something: " + fresh);

        Note("close");
        await client.CloseAsync();
        var summary = new StringBuilder();
        summary.AppendLine("- server: `" + welcome.Server + "`, session `" + welcome.SessionId + "`, algorithms " +
                           string.Join(", ", welcome.Algorithms) + ", catalog " + welcome.Catalog.Count + " faces of " +
                           welcome.Catalog.ImageSize + " px");
        summary.AppendLine("- ping: round trip " + (ping.RoundTrip * 1000).ToString("0.00", CultureInfo.InvariantCulture) +
                           " ms, clock offset " + (ping.ClockOffset * 1000).ToString("0.00", CultureInfo.InvariantCulture) + " ms");
        summary.AppendLine("- textures: first grid " + tex1.Fetched + " fetched / " + tex1.FromCache + " from cache; second grid " +
                           tex2.Fetched + " fetched / " + tex2.FromCache + " from cache; unknown hash → not found: " + tex3.NotFound.Count);
        summary.AppendLine("- protocol 1." + welcome.ProtocolMinor + "; policies offered: " + string.Join(", ", welcome.Policies) +
                           " (default " + welcome.DefaultPolicy + "); this selection: " + grid.Policy);
        summary.AppendLine("- gaze stream (v1.2): a layout and " + client.GazeSamplesSent + " samples (head and eye) in " + client.GazeBatchesSent +
                           " gaze.batch messages, the last " + gazePendingAtPick + " sent just before the choose; stamped on the server's clock; " +
                           gazeRejected + " refused (welcome.gaze: " + (welcome.Gaze == null ? "none" : welcome.Gaze.MaxRateHz + " Hz, " + welcome.Gaze.MaxSamplesPerBatch + " per batch") + ")");
        summary.AppendLine("- bad choose: `" + errorText + "`");
        summary.AppendLine("- rated #" + rated.Id + " " + rated.Rating + "/5; skipped to grid " + skippedStep);
        summary.AppendLine("- gaze correction (v1.5): hello.device `" + HeadsetModels.QuestPro + "` → welcome.gaze.profile `" + welcome.Gaze.Profile + "`");
        summary.AppendLine("- ideal face (v1.5): near #" + ideal.Near + " (the face chosen last), a " + ideal.Preview.Format + " of " + ideal.Preview.Width +
                           "×" + ideal.Preview.Height + " px (" + ideal.Preview.Data.Length + " B; welcome.ideal.image_size " + welcome.Ideal.ImageSize +
                           "), " + ideal.Items.Count + " unseen faces nearest first (#" + ideal.Items[0].Id + " at " +
                           ideal.Items[0].Distance.Value.ToString("0.000", CultureInfo.InvariantCulture) + " … #" + ideal.Items[ideal.Items.Count - 1].Id + " at " +
                           ideal.Items[ideal.Items.Count - 1].Distance.Value.ToString("0.000", CultureInfo.InvariantCulture) + ")");
        summary.AppendLine("- gaze: 10 s of staring armed the face and sent " + sentStaring + " messages; the trigger chose it; on the " +
                           "next grid 10 s of staring armed nothing (" + sentAfterNewGrid + " messages)");
        summary.AppendLine("- pause mid-selection: probe " + (alive ? "answered" : "unanswered") + ", reconnected with the resume token (session " +
                           firstSession + " → " + secondSession + "), restore: " + restoredMidway + " (" + sentByResume +
                           " messages sent), the chosen face first again: " + chosenFirstAgain);
        summary.AppendLine("- decided: #" + decided.Item.Id + " \"" + decided.Item.Title + "\" after " + decided.Steps +
                           " grids (the whole selection: it went on across the pause) → " + decided.Item.Url);
        summary.AppendLine("- open the product page: asked first (" + asked + "), opened only on confirm (" + confirmed + ", " + opened.Count +
                           " opened); back from the browser: restore " + restoredAfterDecision + ", " + sentByRestore + " messages, decision kept");
        summary.AppendLine("- taken over (v1.7): another connection presented the token (" + elsewhere + "); the client's connection was closed " +
                           "(1000, \"" + Protocol.SupersededReason + "\"), the client went " + stateAfter + ", sent " + sentWhileSuperseded +
                           " messages in 2 s and dropped the token; StartAfreshAsync: a hello without a token, session " + fresh.SessionId +
                           ", a new selection at step " + freshGrid.Step);
        Console.WriteLine(summary);

        if (outPath != null)
        {
            var md = new StringBuilder();
            md.AppendLine("# Session transcript: the C# client and `omokage serve`");
            md.AppendLine();
            md.AppendLine("A whole selection session driven by `Omokage.Client.Core` (the package's engine-free core, compiled");
            md.AppendLine("with Mono `mcs`) against `omokage serve` on loopback, every message as the client sent (→) or");
            md.AppendLine("received (←) it, decoded, with the time since the client started. `bin` fields show their size and");
            md.AppendLine("first bytes (`ff d8 ff` starts a JPEG, `89 50 4e 47` a PNG). Lines starting with `#` say what the");
            md.AppendLine("client does next. Catalog: `omokage catalog generate --count 150 --size 64 --seed 1`, models pca and nmf.");
            md.AppendLine("The session also drives the package's engine-free interaction logic as the Unity components do: the gaze stream");
            md.AppendLine("(`GazeSender`, `OmokageClient.Gaze`: layout, gaze.batch every 100 ms, flushed before the pick), head gaze");
            md.AppendLine("through `PointerSelection` (dwell arms, a press commits), pauses through a loopback relay that makes the");
            md.AppendLine("link half-open (`OmokageClient.ProbeAsync`, reconnect, `SelectionSession.RestoreAsync`), and the product");
            md.AppendLine("page through `OpenUrlGate` (allow-list, then the user's confirmation). Protocol v1.5: the hello names the");
            md.AppendLine("headset (`hello.device`, a Quest Pro: its default gaze correction applies), and mid-selection the client asks");
            md.AppendLine("for the ideal face (`SelectionSession.IdealAsync`). Protocol v1.7: the hello after the pause presents the");
            md.AppendLine("resume token of the last welcome and the server goes on with the selection (`welcome.resumed`, the grid as");
            md.AppendLine("`candidates` without rid); tokens are shown as `<secret>`. At the end another connection presents the token of a");
            md.AppendLine("new selection: the server closes the client's connection (`ConnectionState.Superseded`: no reconnection, the");
            md.AppendLine("token dropped) until the user asks for a new one here (`OmokageClient.StartAfreshAsync`).");
            md.AppendLine();
            md.AppendLine("Regenerate: `OMOKAGE_TRANSCRIPT_OUT=\"$PWD/unity_client/Documentation~/session-transcript.md\" bash .ci/csharp.sh`");
            md.AppendLine("(the program is `tests/csharp/Transcript/SessionTranscript.cs`). Live sketch search (protocol v1.3) has its own");
            md.AppendLine("transcript beside this one: `sketch-transcript.md`.");
            md.AppendLine();
            md.Append(summary);
            md.AppendLine();
            md.AppendLine("```text");
            lock (Gate)
                foreach (string line in Lines) md.AppendLine(line);
            md.AppendLine("```");
            File.WriteAllText(outPath, md.ToString(), new UTF8Encoding(false));
            Console.WriteLine("wrote " + outPath);
        }
    }

    /// <summary>v1.7: another connection, frame by frame, presents <paramref name="token"/> (straight to the server, past the
    /// relay) and reads the welcome and the resumed grid; returns what it got, in words. It stays open until the server has
    /// closed the client's connection (the caller waits for that), then closes.</summary>
    static async Task<string> ResumeElsewhere(string url, string token)
    {
        using (var socket = new ClientWebSocket())
        {
            await socket.ConnectAsync(new Uri(url), CancellationToken.None);
            byte[] hello = MsgPackWriter.Encode(Requests.Hello(1, "another-device", null, Protocol.Version, Protocol.Minor, null, null, token));
            await socket.SendAsync(new ArraySegment<byte>(hello), WebSocketMessageType.Binary, true, CancellationToken.None);
            var welcome = (WelcomeMessage)await ReceiveOne(socket);
            var grid = welcome.Resumed == true ? (CandidatesMessage)await ReceiveOne(socket) : null;
            if (grid == null) throw new InvalidOperationException("the other connection did not resume the selection: " + welcome);
            await Task.Delay(500);  // the server closes the first connection as it goes on here
            socket.Abort();
            return "resumed: true, the grid at step " + grid.Step;
        }
    }

    static async Task<ServerMessage> ReceiveOne(ClientWebSocket socket)
    {
        var buffer = new byte[1 << 20];
        int got = 0;
        while (true)
        {
            WebSocketReceiveResult r = await socket.ReceiveAsync(new ArraySegment<byte>(buffer, got, buffer.Length - got), CancellationToken.None);
            got += r.Count;
            if (r.EndOfMessage) break;
        }
        var frame = new byte[got];
        Array.Copy(buffer, frame, got);
        return ServerMessage.Parse(MsgPackReader.DecodeMap(frame));
    }

    // --- v1.3: a short live sketch session ------------------------------------------------------------------

    static async Task RunSketchSession(string url, string outPath)
    {
        lock (Gate) Lines.Clear();
        await SketchSession(url, outPath);   // the server .ci/csharp.sh starts has a sketch model (pca, nmf, sketch)
    }

    /// <summary>Draws one stroke live: frames at 90 Hz in real time, the pen down for <paramref name="seconds"/> along
    /// (fx(u), fy(u)), u = 0 … 1, pieces as SketchPad hands them out (≤ 30 a second). Returns the last rid sent.</summary>
    static async Task<int> DrawLive(OmokageClient client, SketchPad pad, double seconds, Func<float, float> fx, Func<float, float> fy)
    {
        int last = 0;
        double start = ClockSync.LocalNow();
        SketchPiece piece;
        for (int frame = 1; ; frame++)
        {
            double wait = start + frame / 90.0 - ClockSync.LocalNow();
            if (wait > 0) await Task.Delay(TimeSpan.FromSeconds(wait));
            double now = ClockSync.LocalNow();
            bool down = now - start <= seconds;
            float u = (float)Math.Min(1.0, (now - start) / seconds);
            if (pad.Frame(down, fx(u), fy(u), now))
                while (pad.TakePiece(now, out piece))
                    last = client.SendSketchStroke(pad.Points, piece.FirstPoint, piece.Count, piece.Style, piece.Append);
            if (!down && !pad.HasUnsent) return last;
        }
    }

    static async Task SketchSession(string url, string outPath)
    {
        var client = new OmokageClient(new OmokageClientOptions(url) { AutoReconnect = false, PingInterval = TimeSpan.Zero });
        var results = new List<SketchResultMessage>();
        client.SketchResultReceived += r => { lock (results) results.Add(r); };
        client.Trace += OnTrace;
        _t0 = ClockSync.LocalNow();

        Note("connect and say hello (protocol 1." + Protocol.Minor + "): a server with a sketch model says so in welcome.sketch (its raster and preview sizes, the tools, widths and limits)");
        WelcomeMessage welcome = await client.ConnectAsync();
        SketchLimits limits = welcome.Sketch;
        if (limits == null) throw new InvalidOperationException("the server at " + url + " has no sketch model (no welcome.sketch); " +
                                                                "fit one: omokage fit CATALOG --models pca,sketch");

        Note("open a drawing: sketch.begin, sent without waiting; its result has revision 0, no faces, and the average face as the preview");
        int begin = client.SendSketchBegin();
        SketchResultMessage empty = await client.WaitSketchResultAsync(begin);

        var pad = new SketchPad();
        pad.Configure(limits);
        long sentBefore = client.SketchMessagesSent;
        Note("stroke 1, drawn live for 0.6 s at 90 frames a second (the controller's ray on the panel, trigger held): the face's outline, a pen line. " +
             "A point per frame; a piece at most every 33 ms, the first plain, the rest with append: true. Nothing waits for a result: the " +
             "server coalesces, each result answers the newest piece it includes");
        await DrawLive(client, pad, 0.6, u => 0.5f + 0.32f * (float)Math.Cos(2 * Math.PI * u), u => 0.55f + 0.38f * (float)Math.Sin(2 * Math.PI * u));
        Note("stroke 2: the eyes (0.25 s)");
        await DrawLive(client, pad, 0.25, u => 0.32f + 0.36f * u, u => 0.5f);
        Note("stroke 3: a stroke of hair colour across the top (paint, pink, 8 % of the canvas wide, 0.4 s)");
        pad.Style = new SketchStyle(SketchTools.Paint, 236, 120, 170, 0.08);
        int last = await DrawLive(client, pad, 0.4, u => 0.2f + 0.6f * u, u => 0.14f);
        long pieces = client.SketchMessagesSent - sentBefore;
        Note("wait for the result that includes the last piece (WaitSketchResultAsync): the drawing's 9 faces, best first, each with its probability, and a JPEG generated from the drawing");
        SketchResultMessage drawn = await client.WaitSketchResultAsync(last);
        int resultsWhileDrawing;  // the strokes' results: revisions 1 … the last piece's
        lock (results) resultsWhileDrawing = results.Count(r => r.Revision >= 1 && r.Revision <= drawn.Revision);

        Note("undo: the whole paint stroke goes, its pieces with it");
        pad.Undo();
        int undo = client.SendSketchUndo();
        SketchResultMessage undone = await client.WaitSketchResultAsync(undo);

        Note("a stroke with a NaN coordinate: refused with bad_field, naming the refused message's rid; the drawing is unchanged");
        string refused;
        try
        {
            await client.WaitSketchResultAsync(client.SendSketchStroke(new[] { 0.4, double.NaN }, SketchStyle.DefaultPen));
            refused = "(accepted?)";
        }
        catch (OmokageServerException e)
        {
            refused = e.Code + " (rid " + e.Rid + "): " + e.ServerMessage;
        }

        string algorithm = welcome.Algorithms.Contains("pca") ? "pca" : welcome.Algorithms[0];
        Note("pick from these: start init=sketch; the selection's first grid is the latest result's 9 faces, and the drawing stays evidence in the policy's belief");
        CandidatesMessage grid = await client.StartSketchAsync(algorithm, welcome.DefaultPolicy);
        bool sameFaces = grid.Items.Select(i => i.Id).OrderBy(i => i).SequenceEqual(undone.Items.Select(i => i.Id).OrderBy(i => i));

        Note("close");
        await client.CloseAsync();

        var summary = new StringBuilder();
        summary.AppendLine("- server: `" + welcome.Server + "`, protocol 1." + welcome.ProtocolMinor + ", catalog " + welcome.Catalog.Count +
                           " faces; welcome.sketch: resolution " + limits.Resolution + ", preview " + limits.PreviewSize + " px, tools " +
                           string.Join(", ", limits.Tools) + ", width " + limits.MinWidth.ToString(CultureInfo.InvariantCulture) + " … " +
                           limits.MaxWidth.ToString(CultureInfo.InvariantCulture) + ", " + limits.MaxStrokes + " strokes, " +
                           limits.MaxPointsPerMessage + " points a message");
        summary.AppendLine("- begin: revision " + empty.Revision + ", " + empty.Items.Count + " faces, preview " + empty.Preview.Format + " " +
                           empty.Preview.Width + "×" + empty.Preview.Height);
        summary.AppendLine("- 3 strokes drawn live (1.25 s): " + pad.PointCount + " points in " + pieces + " sketch.stroke messages (≤ 30 a second), " +
                           "answered by " + resultsWhileDrawing + " results (coalesced: at most one per message, fewer when the server is busy); " +
                           client.SketchResultsIgnored + " stale results dropped");
        summary.AppendLine("- after the third stroke: revision " + drawn.Revision + ", " + drawn.Strokes + " strokes, " + drawn.Items.Count +
                           " faces (best: #" + drawn.Items[0].Id + " \"" + drawn.Items[0].Title + "\", p = " +
                           drawn.Items[0].Probability.GetValueOrDefault().ToString("0.000", CultureInfo.InvariantCulture) + "), preview " +
                           drawn.Preview.Format + " " + drawn.Preview.Width + "×" + drawn.Preview.Height + ", " + drawn.Preview.Data.Length + " B");
        summary.AppendLine("- undo: revision " + undone.Revision + ", " + undone.Strokes + " strokes, " + undone.Items.Count + " faces");
        summary.AppendLine("- bad point: `" + refused + "`");
        summary.AppendLine("- start init=sketch: step " + grid.Step + ", " + grid.Items.Count + " faces, policy " + grid.Policy +
                           "; the faces of the last result: " + sameFaces);
        Console.WriteLine(summary);
        if (!sameFaces || drawn.Items.Count != 9 || undone.Strokes != 2 || !refused.StartsWith(ErrorCodes.BadField, StringComparison.Ordinal))
            throw new InvalidOperationException("the sketch session did not go as expected:\n" + summary);

        if (outPath == null) return;
        var md = new StringBuilder();
        md.AppendLine("# Sketch transcript: live sketch search with the C# client and `omokage serve`");
        md.AppendLine();
        md.AppendLine("A short live sketch session (protocol v1.3) driven by `Omokage.Client.Core` against `omokage serve` with a sketch");
        md.AppendLine("model, every message as the client sent (→) or received (←) it, decoded, with the time since the client started.");
        md.AppendLine("The strokes are drawn live, in real time, through `SketchPad` as `OmokageSketchPanel` draws them from the");
        md.AppendLine("controller's ray: a point per 90 Hz frame, a `sketch.stroke` piece at most every 33 ms (`append: true` after the");
        md.AppendLine("first), nothing awaited; `sketch.result`s come coalesced, each answering the newest piece it includes.");
        md.AppendLine("`OmokageClient.WaitSketchResultAsync` waits for the result that includes a given message. `bin` fields show their");
        md.AppendLine("size and first bytes (`ff d8 ff` starts a JPEG). Catalog: `omokage catalog generate --count 150 --size 64 --seed 1`,");
        md.AppendLine("models pca and sketch.");
        md.AppendLine();
        md.AppendLine("Regenerate: `OMOKAGE_TRANSCRIPT_OUT=\"$PWD/unity_client/Documentation~/session-transcript.md\" bash .ci/csharp.sh`");
        md.AppendLine("(writes this file beside it; the program is `tests/csharp/Transcript/SessionTranscript.cs`).");
        md.AppendLine();
        md.Append(summary);
        md.AppendLine();
        md.AppendLine("```text");
        lock (Gate)
            foreach (string line in Lines) md.AppendLine(line);
        md.AppendLine("```");
        File.WriteAllText(outPath, md.ToString(), new UTF8Encoding(false));
        Console.WriteLine("wrote " + outPath);
    }
}
