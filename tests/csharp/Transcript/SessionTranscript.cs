// A whole selection session driven by the C# client (Omokage.Client.Core) against `omokage serve`,
// printing every message sent and received. Usage:
//   mono SessionTranscript.exe ws://127.0.0.1:8765/ws [transcript.md]
using System;
using System.Collections.Generic;
using System.Globalization;
using System.IO;
using System.Linq;
using System.Text;
using System.Threading.Tasks;
using Omokage.Client;

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

    static async Task Run(string url, string outPath)
    {
        var options = new OmokageClientOptions(url) { PingInterval = TimeSpan.Zero, AutoReconnect = false };
        var client = new OmokageClient(options);
        client.Trace += OnTrace;
        client.MessageReceived += m => Console.WriteLine("(unsolicited) " + m);
        _t0 = ClockSync.LocalNow();

        Note("connect and say hello (protocol 1.1); the server answers with its limits, algorithms, catalog and the policies it offers");
        WelcomeMessage welcome = await client.ConnectAsync();

        Note("ping: round trip and NTP-style clock offset");
        PingResult ping = await client.PingAsync();

        Note("start a random selection in PCA space with the server's default policy (seed 7 makes it repeatable)");
        CandidatesMessage grid = await client.StartRandomAsync("pca", 7, welcome.DefaultPolicy);

        Note("fetch the 9 textures by content hash");
        TextureFetchResult tex1 = await client.FetchTexturesAsync(grid.Items.Select(i => i.Texture));

        Note("choose the face in the middle of the grid (index 4)");
        int chosen = grid.Items[4].Id;
        grid = await client.ChooseAsync(chosen);

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
        RatedMessage rated = await client.RateAsync(grid.Items[1].Id, 5);

        Note("none of these: skip; nine faces not seen yet follow, with no chosen face first");
        grid = await client.SkipAsync();
        int skippedStep = grid.Step;

        Note("choose again (index 2), then decide on the face chosen last (shown first)");
        grid = await client.ChooseAsync(grid.Items[2].Id);
        DecidedMessage decided = await client.DecideAsync(grid.Items[0].Id);

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
        summary.AppendLine("- bad choose: `" + errorText + "`");
        summary.AppendLine("- rated #" + rated.Id + " " + rated.Rating + "/5; skipped to grid " + skippedStep);
        summary.AppendLine("- decided: #" + decided.Item.Id + " \"" + decided.Item.Title + "\" after " + decided.Steps +
                           " grids → " + decided.Item.Url);
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
            md.AppendLine();
            md.AppendLine("Regenerate: `OMOKAGE_TRANSCRIPT_OUT=\"$PWD/unity_client/Documentation~/session-transcript.md\" bash .ci/csharp.sh`");
            md.AppendLine("(the program is `tests/csharp/Transcript/SessionTranscript.cs`).");
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
}
