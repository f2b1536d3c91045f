using System;
using Omokage.Client.MessagePack;

namespace Omokage.Client
{
    /// <summary>Constants of protocol v1.7 (docs/protocol.md).</summary>
    public static class Protocol
    {
        /// <summary>The protocol (major) version this package speaks, sent in <c>hello</c>.</summary>
        public const int Version = 1;

        /// <summary>The minor version this package speaks, sent as <c>hello.protocol_minor</c>. v1.x adds optional
        /// fields and messages only (v1.1: policies, <c>skip</c>, <c>rate</c>, <c>probability</c>; v1.2: studies, gaze,
        /// <c>models</c>; v1.3: live sketch search, <c>sketch.*</c> and <c>welcome.sketch</c>; v1.4: gaze calibration,
        /// <c>calibrate.*</c> and <c>welcome.gaze.calibration</c>; v1.5: <c>hello.device</c>, <c>calibrate.cancel</c>, the ideal face,
        /// <c>welcome.gaze.profile</c> and <c>welcome.ideal</c>; v1.6: sharper sketch previews; v1.7: resuming a selection,
        /// <c>hello.resume</c>, <c>welcome.resume</c> and <c>welcome.resumed</c>, and <c>back</c>); unknown fields are ignored, so an older server
        /// simply answers without them (<see cref="WelcomeMessage.ProtocolMinor"/> below 7).
        /// <para>Announcing 2 means the server may send <c>models</c> unasked (no rid): the client parses it into
        /// <see cref="ModelsMessage"/> and raises <see cref="OmokageClient.ModelsChanged"/>; any other unknown type
        /// without a rid is ignored (<see cref="UnknownMessage"/> through <see cref="OmokageClient.MessageReceived"/>).
        /// Announcing 3 means a server with a sketch model says so in <see cref="WelcomeMessage.Sketch"/>; announcing 4, a server
        /// with calibration patterns lists them in <see cref="GazeLimits.Calibration"/>; announcing 5, the server says what corrects
        /// the session's gaze (<see cref="GazeLimits.Profile"/>) and whether it generates ideal faces
        /// (<see cref="WelcomeMessage.Ideal"/>); announcing 6, a server whose generator is slow says so
        /// (<see cref="SketchLimits.Sharpens"/>) and sends sharper sketch previews after the results
        /// (<see cref="SketchPreviewMessage"/>, <see cref="OmokageClient.SketchPreviewReceived"/>); announcing 7, the server gives each
        /// connection outside a study a resume token (<see cref="WelcomeMessage.Resume"/>), which the client presents in the hello of
        /// its next connection to go on with the selection (<see cref="WelcomeMessage.Resumed"/>, <see cref="OmokageClient.ResumedGrid"/>).</para></summary>
        public const int Minor = 7;

        /// <summary>The package version: the one C# source of it (the default client name uses it). A test checks that
        /// package.json says the same.</summary>
        public const string PackageVersion = "0.11.0";

        /// <summary>Default <c>hello.client</c>: <c>omokage-unity/</c> + <see cref="PackageVersion"/>.</summary>
        public const string DefaultClientName = "omokage-unity/" + PackageVersion;

        /// <summary>The largest request id (2^31 − 1).</summary>
        public const int MaxRid = int.MaxValue;

        /// <summary>v1.7: the WebSocket close status of a connection whose selection went on on another one
        /// (<see cref="SupersededReason"/>): 1000, a normal closure.</summary>
        public const int SupersededCloseStatus = 1000;

        /// <summary>v1.7: the close reason the server gives, with <see cref="SupersededCloseStatus"/>, when another connection
        /// presented this one's resume token while it was still open and took its selection over (docs/protocol.md, "Resuming
        /// a selection"): the selection goes on there, so this client must not reconnect (its hello would start another
        /// selection over the user's head). <see cref="ConnectionState.Superseded"/>.</summary>
        public const string SupersededReason = "this selection was resumed on another connection";
    }

    /// <summary>Message types of protocol v1.7.</summary>
    public static class MessageTypes
    {
        // client → server
        public const string Hello = "hello";
        public const string Start = "start";
        public const string Choose = "choose";
        /// <summary>v1.1: "none of these".</summary>
        public const string Skip = "skip";
        /// <summary>v1.7: undo the last <c>choose</c> or <c>skip</c>; the grid before it comes back as it was.</summary>
        public const string Back = "back";
        /// <summary>v1.1: an explicit rating 1 … 5 of a face shown in this selection.</summary>
        public const string Rate = "rate";
        public const string Decide = "decide";
        public const string TextureGet = "texture.get";
        public const string Ping = "ping";
        /// <summary>v1.2: a batch of head or eye gaze samples (no reply unless something was wrong).</summary>
        public const string GazeBatch = "gaze.batch";
        /// <summary>v1.2: where the grid's panels are, so the server can ray-cast gaze rays.</summary>
        public const string Layout = "layout";
        /// <summary>v1.2, studies: the participant's next step (a trial's grid, a questionnaire, or the end).</summary>
        public const string StudyNext = "study.next";
        /// <summary>v1.2, studies: the answers to a questionnaire.</summary>
        public const string Answers = "answers";
        /// <summary>v1.3, sketch: a new, empty drawing on this connection.</summary>
        public const string SketchBegin = "sketch.begin";
        /// <summary>v1.3, sketch: one stroke, or the next piece of a stroke being drawn (<c>append</c>).</summary>
        public const string SketchStroke = "sketch.stroke";
        /// <summary>v1.3, sketch: takes back the last whole stroke.</summary>
        public const string SketchUndo = "sketch.undo";
        /// <summary>v1.3, sketch: empties the drawing (it stays open).</summary>
        public const string SketchClear = "sketch.clear";
        /// <summary>v1.4, gaze calibration: starts a calibration; the <c>gaze.batch</c> samples until <c>calibrate.end</c>
        /// are the calibration's.</summary>
        public const string CalibrateBegin = "calibrate.begin";
        /// <summary>v1.4, gaze calibration: when each target was shown; the server fits a correction.</summary>
        public const string CalibrateEnd = "calibrate.end";
        /// <summary>v1.5, gaze calibration: abandons the running calibration (its samples are dropped; the correction in force
        /// stays).</summary>
        public const string CalibrateCancel = "calibrate.cancel";
        /// <summary>v1.5: the face the session's belief likes best near a favourite, generated, with the unseen faces nearest
        /// to it.</summary>
        public const string Ideal = "ideal";
        // server → client
        public const string Welcome = "welcome";
        public const string Candidates = "candidates";
        /// <summary>v1.1: the answer to <c>rate</c>.</summary>
        public const string Rated = "rated";
        public const string Decided = "decided";
        public const string Texture = "texture";
        public const string Pong = "pong";
        public const string Error = "error";
        /// <summary>v1.2: the served models and their training progress, sent unasked (no rid) to v1.2 clients.</summary>
        public const string Models = "models";
        /// <summary>v1.2, studies: the reply to <c>study.next</c> when a questionnaire is due.</summary>
        public const string Questionnaire = "questionnaire";
        /// <summary>v1.2, studies: the answers are stored.</summary>
        public const string Answered = "answered";
        /// <summary>v1.2, studies: nothing is left for the participant.</summary>
        public const string StudyDone = "study.done";
        /// <summary>v1.3, sketch: the faces the drawing fits best and a face generated from it; answers the newest sketch
        /// message it includes (results are coalesced).</summary>
        public const string SketchResult = "sketch.result";
        /// <summary>v1.4: the reply to <c>calibrate.begin</c>, the targets to show one at a time.</summary>
        public const string Calibration = "calibration";
        /// <summary>v1.4: the reply to <c>calibrate.end</c>, the correction fitted and now applied to the session's gaze.</summary>
        public const string Calibrated = "calibrated";
        /// <summary>v1.5: the reply to <c>calibrate.cancel</c>: how many of the calibration's samples were dropped.</summary>
        public const string CalibrationCancelled = "calibration.cancelled";
        /// <summary>v1.5: the reply to <c>ideal</c>: the generated face (inline) and the unseen catalog faces nearest to it.</summary>
        public const string IdealResult = "ideal.result";
        /// <summary>v1.6: a sharper preview of the drawing of a <c>sketch.result</c>, sent after it (no rid) by a server whose
        /// generator is too slow for the live loop.</summary>
        public const string SketchPreview = "sketch.preview";
    }

    /// <summary>The <c>error.code</c> values of protocol v1.x.</summary>
    public static class ErrorCodes
    {
        public const string BadFrame = "bad_frame";
        public const string UnknownType = "unknown_type";
        public const string BadField = "bad_field";
        public const string TooLarge = "too_large";
        public const string Unauthorized = "unauthorized";
        public const string NotFound = "not_found";
        public const string WrongState = "wrong_state";
        public const string Overloaded = "overloaded";
        public const string Internal = "internal";
        /// <summary>v1.4: <c>calibrate.end</c> could not fit a correction (the message says why); the previous one stays.</summary>
        public const string CalibrationFailed = "calibration_failed";
    }

    /// <summary>v1.4 calibration pattern names a server may offer (<c>calibrate.begin.pattern</c>). Offer only what
    /// <see cref="GazeLimits.Calibration"/> lists.</summary>
    public static class CalibrationPatterns
    {
        /// <summary>3×3 targets 15° apart in yaw and 10° in pitch around straight ahead (the grid's area): the default.</summary>
        public const string NinePoint = "nine-point";
        /// <summary>The centre and four corners: a quick check.</summary>
        public const string FivePoint = "five-point";
    }

    /// <summary>v1.5 <c>welcome.gaze.profile</c> values: what corrects the session's gaze from its start.</summary>
    public static class GazeProfiles
    {
        /// <summary>Nothing: the gaze goes uncorrected until a calibration (offer one).</summary>
        public const string None = "none";
        /// <summary>The default correction of the headset model the hello named (<c>hello.device</c>); a calibration fits
        /// this user better (offer one).</summary>
        public const string Device = "device";
        /// <summary>The study participant's own saved calibration.</summary>
        public const string Participant = "participant";
        /// <summary>v1.7: the calibration of a resumed selection, fitted on its earlier connection (same headset, same user).</summary>
        public const string Calibration = "calibration";

        /// <summary>Whether <paramref name="profile"/> is a calibration fitted to this user (<see cref="Participant"/>,
        /// <see cref="Calibration"/>): then do not offer another. False for <c>none</c>, <c>device</c>, null (an older server)
        /// and names this client does not know.</summary>
        public static bool IsCalibrated(string profile)
        {
            return profile == Participant || profile == Calibration;
        }
    }

    /// <summary>
    /// v1.5 <c>hello.device</c>: headset model names the server may hold a default gaze correction for
    /// (<c>calibration/devices/NAME.json</c> on the server). Any name of ≤ 64 characters is accepted; one the server has no
    /// profile for is logged and its gaze goes uncorrected.
    /// </summary>
    public static class HeadsetModels
    {
        public const string QuestPro = "quest-pro";
        public const string Quest3 = "quest-3";

        /// <summary>The model name for a device name as the system reports it (e.g. Unity's <c>SystemInfo.deviceModel</c>,
        /// "Oculus Quest Pro", "Meta Quest 3"): <see cref="QuestPro"/>, <see cref="Quest3"/>, or null when it names neither
        /// (an unknown headset, the Editor). Case and separators do not matter.</summary>
        public static string FromDeviceName(string name)
        {
            if (string.IsNullOrEmpty(name)) return null;
            var squeezed = new System.Text.StringBuilder(name.Length);
            foreach (char c in name.ToLowerInvariant())
                if (char.IsLetterOrDigit(c)) squeezed.Append(c);
            string s = squeezed.ToString();
            if (s.Contains("questpro")) return QuestPro;
            if (s.Contains("quest3")) return s.Contains("quest3s") ? null : Quest3;  // the 3S is another model: no profile
            return null;
        }
    }

    /// <summary>Values of <c>start.init</c>.</summary>
    public static class InitModes
    {
        public const string Random = "random";
        public const string Image = "image";
        /// <summary>v1.3: the 9 faces of the latest <c>sketch.result</c> of this connection's drawing.</summary>
        public const string Sketch = "sketch";
    }

    /// <summary>v1.3 <c>sketch.stroke.tool</c> values.</summary>
    public static class SketchTools
    {
        /// <summary>A pen line, compared with the faces' line art (the default: <c>tool</c> is left out).</summary>
        public const string Line = "line";
        /// <summary>Colour, compared with the faces' colours under it.</summary>
        public const string Paint = "paint";
    }

    /// <summary>
    /// Policy names a server may offer (v1.1, <c>start.policy</c>). Offer the user only what
    /// <see cref="WelcomeMessage.Policies"/> lists; the server recommends <see cref="WelcomeMessage.DefaultPolicy"/>.
    /// </summary>
    public static class Policies
    {
        /// <summary>The reference study's loop, what v1.0 did: the chosen face and its 8 nearest unseen faces.</summary>
        public const string Study = "study";
        /// <summary>The chosen face and 8 random unseen faces (a baseline).</summary>
        public const string Random = "random";
        /// <summary>A belief over the wanted face; shows the faces whose pick tells it the most.</summary>
        public const string InfoGain = "infogain";
        /// <summary>A belief over the wanted face; faces drawn from it.</summary>
        public const string Thompson = "thompson";
        /// <summary>A belief over the wanted face; draws that repel each other, spanning the distinct looks.</summary>
        public const string Cover = "cover";
        /// <summary>v1.2: <c>thompson</c>, each grid's gaze counting as evidence (docs/gaze.md).</summary>
        public const string ThompsonGaze = "thompson+gaze";
    }

    /// <summary>Keeps secrets out of logs: the access token and the v1.7 resume token a hello presents, and the resume token a
    /// welcome gives (<see cref="MessageTrace.ToString"/>, <see cref="WelcomeMessage.ToString"/>).</summary>
    internal static class Secrets
    {
        public const string Shown = "<secret>";

        /// <summary><paramref name="message"/> itself when it holds no secret, else a copy with each secret replaced by
        /// <see cref="Shown"/> (only a hello or a welcome is ever copied).</summary>
        public static MsgMap Redact(MsgMap message)
        {
            if (message == null) return null;
            string type = message.GetString("type");
            if (type == MessageTypes.Hello && (message["token"] != null || message["resume"] != null))
            {
                var copy = new MsgMap();
                foreach (var kv in message)
                    copy.Set(kv.Key, (kv.Key == "token" || kv.Key == "resume") && kv.Value != null ? Shown : kv.Value);
                return copy;
            }
            var resume = type == MessageTypes.Welcome ? message.GetMap("resume") : null;
            if (resume != null && resume["token"] != null)
            {
                var inner = new MsgMap();
                foreach (var kv in resume) inner.Set(kv.Key, kv.Key == "token" ? Shown : kv.Value);
                var copy = new MsgMap();
                foreach (var kv in message) copy.Set(kv.Key, kv.Key == "resume" ? inner : kv.Value);
                return copy;
            }
            return message;
        }
    }

    /// <summary>Base class of everything the client throws.</summary>
    public class OmokageException : Exception
    {
        public OmokageException(string message) : base(message) { }
        public OmokageException(string message, Exception inner) : base(message, inner) { }
    }

    /// <summary>The server answered a request with <c>error</c>; <see cref="Code"/> is one of <see cref="ErrorCodes"/>.</summary>
    public class OmokageServerException : OmokageException
    {
        public OmokageServerException(string code, string serverMessage, int? rid)
            : base(code + ": " + serverMessage)
        {
            Code = code;
            ServerMessage = serverMessage;
            Rid = rid;
        }

        public string Code { get; private set; }

        /// <summary>The server's explanation, for people.</summary>
        public string ServerMessage { get; private set; }

        public int? Rid { get; private set; }
    }

    /// <summary>The server sent something that breaks protocol v1.x (a missing field, a wrong type, a bad texture hash).</summary>
    public class OmokageProtocolException : OmokageException
    {
        public OmokageProtocolException(string message) : base(message) { }
        public OmokageProtocolException(string message, Exception inner) : base(message, inner) { }
    }

    /// <summary>A request (or the hello) got no reply in time: <see cref="OmokageClientOptions.RequestTimeout"/>,
    /// <see cref="OmokageClientOptions.ConnectTimeout"/> or, for automatic pings, <see cref="OmokageClientOptions.PingTimeout"/>.
    /// The connection may still be fine (a late reply raises <see cref="OmokageClient.MessageReceived"/>).</summary>
    public class OmokageTimeoutException : OmokageException
    {
        public OmokageTimeoutException(string message, TimeSpan timeout) : base(message) { Timeout = timeout; }

        /// <summary>How long the request waited.</summary>
        public TimeSpan Timeout { get; private set; }
    }

    /// <summary>There is no usable connection: not connected yet, reconnecting, closed, or lost while waiting for a reply.</summary>
    public class OmokageConnectionException : OmokageException
    {
        public OmokageConnectionException(string message) : base(message) { }
        public OmokageConnectionException(string message, Exception inner) : base(message, inner) { }
    }

    /// <summary>v1.7: the server closed the connection because another connection presented its resume token and took its
    /// selection over (close 1000, <see cref="Protocol.SupersededReason"/>): the client is
    /// <see cref="ConnectionState.Superseded"/> and does not reconnect. <see cref="OmokageClient.Disconnected"/> carries it for an
    /// established connection (requests in flight fail with an <see cref="OmokageConnectionException"/> around it); a connection
    /// attempt the server closed so throws it, and the retry loops do not retry it.</summary>
    public class OmokageSupersededException : OmokageConnectionException
    {
        public OmokageSupersededException(string message) : base(message) { }
        public OmokageSupersededException(string message, Exception inner) : base(message, inner) { }
    }
}
