using System;
using System.Collections.Generic;
using System.IO;
using NUnit.Framework;
using Omokage.Client.MessagePack;

namespace Omokage.Client.Tests
{
    /// <summary>
    /// The executable half of docs/protocol.md: every vector in tests/vectors decodes to the message index.json
    /// describes and re-encodes byte for byte; server vectors parse into typed messages; client vectors are
    /// what the request builders produce. The vectors ship inside the package (Tests/Vectors~, a copy of the
    /// repository's tests/vectors that CI keeps identical), so each file is its own test case in Unity's Test Runner.
    /// </summary>
    [TestFixture]
    public class GoldenVectorTests
    {
        sealed class Vector
        {
            public string File;
            public string Direction;
            public string Sha256;
            public object Message;
        }

        static Dictionary<string, Vector> _index;
        static string _dir;
        static long _indexMinor;

        static Dictionary<string, Vector> Index()
        {
            if (_index != null) return _index;
            _dir = TestEnv.VectorsDir();
            var index = new Dictionary<string, Vector>();
            if (_dir != null && System.IO.File.Exists(Path.Combine(_dir, "index.json")))
            {
                var root = (MsgMap)MiniJson.Parse(System.IO.File.ReadAllText(Path.Combine(_dir, "index.json")));
                _indexMinor = root.GetInt64("protocol_minor") ?? 0;
                foreach (object o in (List<object>)root["vectors"])
                {
                    var v = (MsgMap)o;
                    index[(string)v["file"]] = new Vector
                    {
                        File = (string)v["file"], Direction = (string)v["direction"], Sha256 = (string)v["sha256"],
                        Message = MiniJson.ToMessage(v["message"]),
                    };
                }
            }
            _index = index;
            return index;
        }

        /// <summary>One test case per vector file.</summary>
        public static IEnumerable<TestCaseData> Files()
        {
            var names = new List<string>(Index().Keys);
            names.Sort(StringComparer.Ordinal);
            foreach (string name in names) yield return new TestCaseData(name);
        }

        [Test]
        public void VectorsShipWithThePackage()
        {
            Assert.IsNotNull(_dir ?? TestEnv.VectorsDir(), "the package folder was not found");
            Assert.That(Index().Count, Is.GreaterThanOrEqualTo(20), "vectors in " + _dir + " (index.json)");
        }

        static Vector Load(string file, out byte[] bytes)
        {
            Vector v = Index()[file];
            bytes = System.IO.File.ReadAllBytes(Path.Combine(_dir, file));
            return v;
        }

        [Test, TestCaseSource("Files")]
        public void DecodesToTheIndexedMessage(string file)
        {
            byte[] bytes;
            Vector v = Load(file, out bytes);
            object decoded = MsgPackReader.Decode(bytes);
            MsgPackAssert.DeepEqual(v.Message, decoded, file);
        }

        [Test, TestCaseSource("Files")]
        public void ReencodesByteForByte(string file)
        {
            byte[] bytes;
            Load(file, out bytes);
            MsgPackAssert.BytesEqual(bytes, MsgPackWriter.Encode(MsgPackReader.Decode(bytes)), file);
            MsgPackAssert.BytesEqual(bytes, BuiltInMessageCodec.Instance.Encode(BuiltInMessageCodec.Instance.Decode(bytes)), file + " via the codec");
        }

        [Test, TestCaseSource("Files")]
        public void IndexedMessageEncodesToTheFile(string file)
        {
            byte[] bytes;
            Vector v = Load(file, out bytes);
            MsgPackAssert.BytesEqual(bytes, MsgPackWriter.Encode(v.Message), file);
            Assert.AreEqual(v.Sha256, Hashing.Sha256Hex(bytes), "sha256 in index.json");
        }

        [Test, TestCaseSource("Files")]
        public void TypedRoundTrip(string file)
        {
            byte[] bytes;
            Vector v = Load(file, out bytes);
            var map = MsgPackReader.DecodeMap(bytes);
            if (v.Direction == "server")
            {
                ServerMessage msg = ServerMessage.Parse(map);
                // a type from a newer minor than this client speaks is unknown to it, and must parse as UnknownMessage
                if (_indexMinor <= Protocol.Minor || msg.Rid.HasValue)
                    Assert.IsNotInstanceOf(typeof(UnknownMessage), msg, "a v1." + Protocol.Minor + " server message type");
                Assert.AreEqual(map.GetString("type"), msg.Type);
                Assert.AreEqual(map.GetInt64("rid"), msg.Rid.HasValue ? (long?)msg.Rid.Value : null);
            }
            else
            {
                Assert.AreEqual("client", v.Direction);
                MsgPackAssert.BytesEqual(bytes, MsgPackWriter.Encode(Rebuild(map)), file + " rebuilt with Requests");
            }
        }

        /// <summary>A client message rebuilt from its fields with the typed builders.</summary>
        static MsgMap Rebuild(MsgMap m)
        {
            long? rawRid = m.GetInt64("rid");
            int? rid = rawRid.HasValue ? (int?)(int)rawRid.Value : null;
            switch (m.GetString("type"))
            {
                case MessageTypes.Hello:
                    long? minor = m.GetInt64("protocol_minor");
                    return Requests.Hello(rid, m.GetString("client"), m.GetString("token"), (int)m.GetInt64("protocol").Value,
                                          minor.HasValue ? (int?)(int)minor.Value : null, m.GetString("participant"), m.GetString("device"),
                                          m.GetString("resume"));
                case MessageTypes.StudyNext: return Requests.StudyNext(rid, m.GetBytes("image"));
                case MessageTypes.SketchBegin: return Requests.SketchBegin(rid);
                case MessageTypes.SketchUndo: return Requests.SketchUndo(rid);
                case MessageTypes.SketchClear: return Requests.SketchClear(rid);
                case MessageTypes.SketchStroke:
                    var points = new List<double>();
                    foreach (object o in m.GetList("points")) points.Add((double)o);
                    var colour = m.GetList("colour");
                    var style = new SketchStyle(m.GetString("tool"), (byte)(long)colour[0], (byte)(long)colour[1], (byte)(long)colour[2],
                                                m.GetNumber("width").Value);
                    return Requests.SketchStroke(rid, points, style, m.GetBool("append") ?? false);
                case MessageTypes.Answers:
                    var answers = new List<QuestionnaireAnswer>();
                    foreach (object o in m.GetList("answers"))
                    {
                        var a = (MsgMap)o;
                        object value = a["value"];
                        answers.Add(value is string ? QuestionnaireAnswer.Of(a.GetString("item"), (string)value)
                                                    : QuestionnaireAnswer.Of(a.GetString("item"), (long)value));
                    }
                    return Requests.Answers(rid, m.GetString("questionnaire"), answers);
                case MessageTypes.Start:
                    long? seed = m.GetInt64("seed");
                    return Requests.Start(rid, m.GetString("algorithm"), m.GetString("init"), m.GetBytes("image"),
                                          seed.HasValue ? (int?)(int)seed.Value : null, m.GetString("policy"));
                case MessageTypes.Choose: return Requests.Choose(rid, (int)m.GetInt64("id").Value);
                case MessageTypes.Skip: return Requests.Skip(rid);
                case MessageTypes.Back: return Requests.Back(rid);
                case MessageTypes.Rate: return Requests.Rate(rid, (int)m.GetInt64("id").Value, (int)m.GetInt64("rating").Value);
                case MessageTypes.Decide: return Requests.Decide(rid, (int)m.GetInt64("id").Value);
                case MessageTypes.TextureGet:
                    var hashes = new List<string>();
                    foreach (object h in m.GetList("hashes")) hashes.Add((string)h);
                    return Requests.TextureGet(rid, hashes);
                case MessageTypes.Ping:
                    object t = m["t"];
                    return t is double ? Requests.Ping(rid, (double)t) : Requests.Ping(rid, (long)t);
                case MessageTypes.GazeBatch:
                    var samples = new List<GazeWireSample>();
                    foreach (object o in m.GetList("samples"))
                    {
                        var a = (List<object>)o;
                        var g = new GazeWireSample
                        {
                            T = (double)a[0], Source = (string)a[1], Ox = (double)a[2], Oy = (double)a[3], Oz = (double)a[4],
                            Dx = (double)a[5], Dy = (double)a[6], Dz = (double)a[7], Confidence = (double)a[8], HasHit = a.Count == 12,
                        };
                        if (g.HasHit) { g.Panel = (int)(long)a[9]; g.U = (double)a[10]; g.V = (double)a[11]; }
                        samples.Add(g);
                    }
                    return Requests.GazeBatch(rid, samples, samples.Count);
                case MessageTypes.CalibrateBegin: return Requests.CalibrateBegin(rid, m.GetString("pattern"), m.GetString("source"));
                case MessageTypes.CalibrateEnd:
                    var shown = new List<CalibrationShown>();
                    foreach (object o in m.GetList("shown"))
                    {
                        var a = (List<object>)o;
                        shown.Add(new CalibrationShown((int)(long)a[0], (double)a[1], (double)a[2]));
                    }
                    return Requests.CalibrateEnd(rid, shown);
                case MessageTypes.CalibrateCancel: return Requests.CalibrateCancel(rid);
                case MessageTypes.Ideal:
                    long? near = m.GetInt64("near");
                    return Requests.Ideal(rid, near.HasValue ? (int?)(int)near.Value : null);
                case MessageTypes.Layout:
                    var panels = new List<PanelPose>();
                    foreach (object o in m.GetList("panels"))
                    {
                        var p = (MsgMap)o;
                        var pos = p.GetList("position"); var rot = p.GetList("rotation"); var size = p.GetList("size");
                        panels.Add(new PanelPose
                        {
                            Px = (double)pos[0], Py = (double)pos[1], Pz = (double)pos[2],
                            Qx = (double)rot[0], Qy = (double)rot[1], Qz = (double)rot[2], Qw = (double)rot[3],
                            Width = (double)size[0], Height = (double)size[1],
                        });
                    }
                    return Requests.Layout(rid, panels);
                default:
                    Assert.Fail("unknown client message type " + m.GetString("type"));
                    return null;
            }
        }

        [Test]
        public void IndexListsEveryVectorFile()
        {
            var index = Index();
            Assert.That(index.Count, Is.GreaterThan(0), "vectors found");
            var files = new List<string>();
            foreach (string path in Directory.GetFiles(_dir, "*.msgpack")) files.Add(Path.GetFileName(path));
            files.Sort(StringComparer.Ordinal);
            var indexed = new List<string>(index.Keys);
            indexed.Sort(StringComparer.Ordinal);
            CollectionAssert.AreEqual(files, indexed);
            var types = new HashSet<string>();
            foreach (var v in index.Values) types.Add(v.Direction + " " + ((MsgMap)v.Message).GetString("type"));
            foreach (string t in new[] { "hello", "start", "choose", "skip", "rate", "decide", "texture.get", "ping" })
                Assert.IsTrue(types.Contains("client " + t), "a vector for client message " + t);
            foreach (string t in new[] { "welcome", "candidates", "rated", "decided", "texture", "pong", "error" })
                Assert.IsTrue(types.Contains("server " + t), "a vector for server message " + t);
        }

        [Test]
        public void TypedFieldsOfTheServerVectors()
        {
            Assert.That(Index().Count, Is.GreaterThan(0), "vectors found");
            var welcome = (WelcomeMessage)Parse("welcome.msgpack");
            Assert.AreEqual(1, welcome.ProtocolVersion);
            Assert.AreEqual("c0ffee01", welcome.SessionId);
            Assert.AreEqual(64, welcome.Limits.MaxHashesPerRequest);
            Assert.AreEqual(9, welcome.Limits.GridSize);
            Assert.AreEqual(200.0, welcome.Limits.MaxMessagesPerSecond);
            Assert.AreEqual(4194304, welcome.Limits.MaxFrameBytes);
            CollectionAssert.AreEqual(new[] { "raw", "pca", "nmf", "ae" }, welcome.Algorithms);
            Assert.AreEqual(1500, welcome.Catalog.Count);
            Assert.AreEqual(200, welcome.Catalog.ImageSize);
            // a v1.0 welcome: minor 0, no policies, so no skip or rate
            Assert.AreEqual(0, welcome.ProtocolMinor);
            Assert.IsFalse(welcome.Supports(1));
            Assert.AreEqual(0, welcome.Policies.Count);
            Assert.IsNull(welcome.DefaultPolicy);

            var random = (CandidatesMessage)Parse("candidates_random.msgpack");
            Assert.AreEqual(1, random.Step);
            Assert.AreEqual(9, random.Items.Count);
            foreach (var item in random.Items) Assert.IsNull(item.Distance, "a random pick has no distance");
            foreach (var item in random.Items) Assert.IsNull(item.Probability, "v1.0 has no probability");
            Assert.IsNull(random.Reconstruction);
            Assert.IsNull(random.Policy, "v1.0 names no policy");

            var choose = (CandidatesMessage)Parse("candidates_choose.msgpack");
            Assert.AreEqual(2, choose.Step);
            Assert.AreEqual(0.0, choose.Items[0].Distance);
            StringAssert.StartsWith("桜", choose.Items[0].Title);

            var image = (CandidatesMessage)Parse("candidates_image.msgpack");
            Assert.IsNotNull(image.Reconstruction);
            Assert.IsTrue(image.Reconstruction.HashMatches(), "reconstruction hash is SHA-256 of its data");

            var texture = (TextureMessage)Parse("texture.msgpack");
            Assert.AreEqual("png", texture.Texture.Format);
            Assert.AreEqual("png", Hashing.SniffImageFormat(texture.Texture.Data));
            Assert.IsTrue(texture.Texture.HashMatches());
            Assert.AreEqual(8, texture.Texture.Width);

            var pong = (PongMessage)Parse("pong.msgpack");
            Assert.AreEqual(1732356000.125, pong.T);
            Assert.AreEqual(1732356000.25, pong.ServerTime);

            var decided = (DecidedMessage)Parse("decided.msgpack");
            Assert.AreEqual(7, decided.Item.Id);
            Assert.AreEqual(3, decided.Steps);
            StringAssert.StartsWith("https://", decided.Item.Url);

            var error = (ErrorMessage)Parse("error_rid.msgpack");
            Assert.AreEqual(ErrorCodes.NotFound, error.Code);
            Assert.AreEqual(4, error.Rid);
            var exception = error.ToException();
            Assert.AreEqual(ErrorCodes.NotFound, exception.Code);
            Assert.AreEqual(4, exception.Rid);

            var noRid = (ErrorMessage)Parse("error_no_rid.msgpack");
            Assert.AreEqual(ErrorCodes.BadFrame, noRid.Code);
            Assert.IsNull(noRid.Rid);
        }

        [Test]
        public void TypedFieldsOfTheV1_1Vectors()
        {
            Assert.That(Index().Count, Is.GreaterThan(0), "vectors found");
            var welcome = (WelcomeMessage)Parse("welcome_v1_1.msgpack");
            Assert.AreEqual(1, welcome.ProtocolVersion, "the major version stays 1");
            Assert.AreEqual(1, welcome.ProtocolMinor);
            Assert.IsTrue(welcome.Supports(1));
            CollectionAssert.AreEqual(new[] { "infogain", "thompson", "study", "random" }, welcome.Policies);
            Assert.AreEqual(Policies.InfoGain, welcome.DefaultPolicy);
            Assert.AreEqual(9, welcome.Limits.GridSize, "the v1.0 fields are all still there");

            var withBelief = (CandidatesMessage)Parse("candidates_probability.msgpack");
            Assert.AreEqual("infogain", withBelief.Policy);
            Assert.AreEqual(0.375, withBelief.Items[0].Probability);
            Assert.AreEqual(0.125, withBelief.Items[1].Probability);
            Assert.AreEqual(0.0, withBelief.Items[2].Probability);
            Assert.IsNull(withBelief.Items[2].Distance);
            Assert.AreEqual(0.0, withBelief.Items[0].Distance);

            var skipped = (CandidatesMessage)Parse("candidates_skip.msgpack");
            Assert.AreEqual(3, skipped.Step);
            Assert.AreEqual(Policies.Study, skipped.Policy);
            Assert.AreEqual(9, skipped.Items.Count);
            foreach (var item in skipped.Items) Assert.IsNull(item.Probability, "study keeps no belief");

            var rated = (RatedMessage)Parse("rated.msgpack");
            Assert.AreEqual(141, rated.Id);
            Assert.AreEqual(4, rated.Rating);
            Assert.AreEqual(9, rated.Rid);

            var badPolicy = (ErrorMessage)Parse("error_bad_policy.msgpack");
            Assert.AreEqual(ErrorCodes.BadField, badPolicy.Code);
            StringAssert.Contains("start.policy", badPolicy.Message);

            // the client vectors are what the builders make
            MsgPackAssert.BytesEqual(Bytes("skip.msgpack"), MsgPackWriter.Encode(Requests.Skip(8)), "skip");
            MsgPackAssert.BytesEqual(Bytes("rate.msgpack"), MsgPackWriter.Encode(Requests.Rate(9, 141, 4)), "rate");
            MsgPackAssert.BytesEqual(Bytes("start_policy.msgpack"),
                                     MsgPackWriter.Encode(Requests.StartRandom(2, "pca", 42, Policies.InfoGain)), "start with a policy");
            MsgPackAssert.BytesEqual(Bytes("hello_v1_1.msgpack"),
                                     MsgPackWriter.Encode(Requests.Hello(1, "omokage-web/0.2.0", null, Protocol.Version, 1)), "v1.1 hello");
            MsgPackAssert.BytesEqual(Bytes("hello.msgpack"),
                                     MsgPackWriter.Encode(Requests.Hello(1, "omokage-unity/0.1.0")), "a v1.0 hello is unchanged");
        }

        [Test]
        public void TypedFieldsOfTheV1_2Vectors()
        {
            Assert.That(Index().Count, Is.GreaterThan(0), "vectors found");
            // models: sent unasked (no rid) to a v1.2 client, which this package is (it speaks v1.5)
            Assert.That(Protocol.Minor, Is.GreaterThanOrEqualTo(2));
            var training = (ModelsMessage)Parse("models_training.msgpack");
            Assert.IsNull(training.Rid);
            CollectionAssert.AreEqual(new[] { "raw", "pca" }, training.Algorithms);
            Assert.AreEqual(2, training.Training.Count);
            Assert.AreEqual("nmf", training.Training[0].Algorithm);
            Assert.AreEqual(0.0, training.Training[0].Progress);
            var ready = (ModelsMessage)Parse("models_ready.msgpack");
            Assert.AreEqual(0, ready.Training.Count, "nothing trains any more");

            var gazeWelcome = (WelcomeMessage)Parse("welcome_gaze.msgpack");
            Assert.AreEqual(2, gazeWelcome.ProtocolMinor);
            Assert.IsNotNull(gazeWelcome.Gaze);
            Assert.AreEqual(120.0, gazeWelcome.Gaze.MaxRateHz);
            Assert.AreEqual(256, gazeWelcome.Gaze.MaxSamplesPerBatch);
            CollectionAssert.Contains(gazeWelcome.Policies, Policies.ThompsonGaze);
            Assert.IsNull(gazeWelcome.Study);
            Assert.IsNull(((WelcomeMessage)Parse("welcome_v1_1.msgpack")).Gaze, "no gaze limits from a v1.1 server");

            var dropped = (ErrorMessage)Parse("error_gaze_dropped.msgpack");
            Assert.AreEqual(ErrorCodes.BadField, dropped.Code);
            Assert.AreEqual(2, dropped.Dropped);
            Assert.AreEqual(ErrorCodes.Overloaded, ((ErrorMessage)Parse("error_gaze_overloaded.msgpack")).Code);
            Assert.IsNotNull(((ErrorMessage)Parse("error_gaze_overloaded.msgpack")).Dropped);
            Assert.IsNull(((ErrorMessage)Parse("error_rid.msgpack")).Dropped);

            // studies
            var studyWelcome = (WelcomeMessage)Parse("welcome_study.msgpack");
            Assert.IsNotNull(studyWelcome.Study);
            Assert.AreEqual("pilot", studyWelcome.Study.Name);
            Assert.AreEqual(5, studyWelcome.Study.Trials);
            Assert.AreEqual(1, studyWelcome.Study.Completed);
            Assert.AreEqual("trial", studyWelcome.Study.Next);

            var trial = (CandidatesMessage)Parse("candidates_trial.msgpack");
            Assert.IsNotNull(trial.Trial);
            Assert.AreEqual(2, trial.Trial.Index);
            Assert.AreEqual(5, trial.Trial.Count);
            Assert.IsFalse(trial.Trial.Practice);
            Assert.AreEqual("System B", trial.Trial.Label);
            Assert.AreEqual(TrialInfo.TargetTask, trial.Trial.Task);
            Assert.AreEqual(77, trial.Trial.Target.Id);
            Assert.IsNull(((CandidatesMessage)Parse("candidates_skip.msgpack")).Trial, "no trial outside a study");

            var block = (QuestionnaireMessage)Parse("questionnaire_condition.msgpack");
            Assert.AreEqual("block-2", block.Id);
            Assert.AreEqual("About System B", block.Title);
            Assert.AreEqual(2, block.Items.Count);
            Assert.AreEqual(QuestionKinds.Likert, block.Items[0].Kind);
            Assert.IsTrue(block.Items[0].Required);
            Assert.AreEqual(1, block.Items[0].Min);
            Assert.AreEqual(5, block.Items[0].Max);
            CollectionAssert.AreEqual(new[] { "not at all", "completely" }, block.Items[0].Labels);
            Assert.AreEqual(QuestionKinds.Text, block.Items[1].Kind);
            Assert.IsFalse(block.Items[1].Required);

            var final = (QuestionnaireMessage)Parse("questionnaire_final.msgpack");
            Assert.AreEqual("final", final.Id);
            Assert.AreEqual(QuestionKinds.Best, final.Items[0].Kind);
            Assert.AreEqual(QuestionKinds.Worst, final.Items[1].Kind);
            CollectionAssert.AreEqual(new[] { "System B", "System A", "System D", "System C" }, final.Items[0].Choices);

            Assert.AreEqual("block-2", ((AnsweredMessage)Parse("answered.msgpack")).Questionnaire);
            Assert.AreEqual(5, ((StudyDoneMessage)Parse("study_done.msgpack")).Trials);
            Assert.AreEqual(ErrorCodes.Unauthorized, ((ErrorMessage)Parse("error_unknown_participant.msgpack")).Code);

            // the client vectors are what the builders make
            MsgPackAssert.BytesEqual(Bytes("hello_participant.msgpack"), MsgPackWriter.Encode(
                Requests.Hello(1, "omokage-unity/0.3.0", null, Protocol.Version, 2, "p-7f3a")), "hello with a participant");
            MsgPackAssert.BytesEqual(Bytes("hello_v1_2.msgpack"), MsgPackWriter.Encode(
                Requests.Hello(1, "omokage-web/0.3.0", null, Protocol.Version, 2)), "v1.2 hello");
            MsgPackAssert.BytesEqual(Bytes("study_next.msgpack"), MsgPackWriter.Encode(Requests.StudyNext(2)), "study.next");
            MsgPackAssert.BytesEqual(Bytes("answers.msgpack"), MsgPackWriter.Encode(Requests.Answers(7, "block-2", new[]
            {
                QuestionnaireAnswer.Of("Q1", 4), QuestionnaireAnswer.Of("comment", "顔が選びやすかった"),
            })), "answers");
        }

        [Test]
        public void TypedFieldsOfTheV1_3Vectors()
        {
            Assert.That(Index().Count, Is.GreaterThan(0), "vectors found");
            Assert.That(Protocol.Minor, Is.GreaterThanOrEqualTo(3), "the package speaks v1.3 (or newer)");
            Assert.That(_indexMinor, Is.GreaterThanOrEqualTo(3), "the vectors hold v1.3's (or newer)");

            var welcome = (WelcomeMessage)Parse("welcome_sketch.msgpack");
            Assert.AreEqual(3, welcome.ProtocolMinor);
            Assert.IsNotNull(welcome.Sketch, "welcome.sketch");
            Assert.AreEqual(32, welcome.Sketch.Resolution);
            Assert.AreEqual(96, welcome.Sketch.PreviewSize);
            CollectionAssert.AreEqual(new[] { SketchTools.Line, SketchTools.Paint }, welcome.Sketch.Tools);
            Assert.IsTrue(welcome.Sketch.Offers(null), "a line (tool left out) is offered");
            Assert.IsFalse(welcome.Sketch.Offers("spray"));
            Assert.AreEqual(0.001, welcome.Sketch.MinWidth);
            Assert.AreEqual(0.25, welcome.Sketch.MaxWidth);
            Assert.AreEqual(256, welcome.Sketch.MaxStrokes);
            Assert.AreEqual(512, welcome.Sketch.MaxPointsPerMessage);
            Assert.AreEqual(4096, welcome.Sketch.MaxPointsPerStroke);
            Assert.IsNotNull(welcome.Gaze, "the v1.2 fields are all still there");
            Assert.IsNull(((WelcomeMessage)Parse("welcome_gaze.msgpack")).Sketch, "no sketch from a v1.2 welcome");

            var empty = (SketchResultMessage)Parse("sketch_result_empty.msgpack");
            Assert.AreEqual(20, empty.Rid);
            Assert.AreEqual(0, empty.Revision);
            Assert.AreEqual(0, empty.Strokes);
            Assert.AreEqual(0, empty.Items.Count, "nothing drawn: no faces");
            Assert.AreEqual(8, empty.Preview.Width);
            Assert.IsTrue(empty.Preview.HashMatches(), "the inline preview is addressed by its SHA-256");

            var result = (SketchResultMessage)Parse("sketch_result.msgpack");
            Assert.AreEqual(22, result.Rid, "answers the newest message it includes");
            Assert.AreEqual(2, result.Revision);
            Assert.AreEqual(1, result.Strokes);
            Assert.AreEqual(9, result.Items.Count);
            Assert.AreEqual(412, result.Items[0].Id);
            Assert.AreEqual(0.41, result.Items[0].Probability);
            Assert.IsNull(result.Items[0].Distance);
            StringAssert.StartsWith("https://", result.Items[0].Url);
            Assert.AreEqual("jpeg", result.Preview.Format);

            var refused = (ErrorMessage)Parse("error_sketch_bad_point.msgpack");
            Assert.AreEqual(ErrorCodes.BadField, refused.Code);
            Assert.AreEqual(26, refused.Rid, "the refused message's rid");
            StringAssert.Contains("sketch.stroke.points", refused.Message);

            // the client vectors are what the builders make
            MsgPackAssert.BytesEqual(Bytes("hello_v1_3.msgpack"), MsgPackWriter.Encode(
                Requests.Hello(1, "omokage-web/0.4.0", null, Protocol.Version, 3)), "v1.3 hello");
            MsgPackAssert.BytesEqual(Bytes("sketch_begin.msgpack"), MsgPackWriter.Encode(Requests.SketchBegin(20)), "sketch.begin");
            MsgPackAssert.BytesEqual(Bytes("sketch_undo.msgpack"), MsgPackWriter.Encode(Requests.SketchUndo(23)), "sketch.undo");
            MsgPackAssert.BytesEqual(Bytes("sketch_clear.msgpack"), MsgPackWriter.Encode(Requests.SketchClear(24)), "sketch.clear");
            MsgPackAssert.BytesEqual(Bytes("start_sketch.msgpack"), MsgPackWriter.Encode(
                Requests.StartSketch(25, "pca", null, Policies.Thompson)), "start init=sketch");
            // a pen line: the tool is left out (line is the default); the points as floats, sent as the decimals they mean
            var pen = new SketchStyle(SketchTools.Line, 20, 20, 20, 0.012);
            MsgPackAssert.BytesEqual(Bytes("sketch_stroke_line.msgpack"), MsgPackWriter.Encode(
                Requests.SketchStroke(21, new[] { 0.3, 0.4, 0.35, 0.38, 0.41, 0.385 }, pen)), "a line stroke from doubles");
            MsgPackAssert.BytesEqual(Bytes("sketch_stroke_line.msgpack"), MsgPackWriter.Encode(
                Requests.SketchStroke(21, new[] { 9f, 9f, 0.3f, 0.4f, 0.35f, 0.38f, 0.41f, 0.385f }, 1, 3, pen)), "a line stroke from a float buffer");
            var paint = new SketchStyle(SketchTools.Paint, 236, 120, 170, SketchStyle.Wire(0.08f));
            MsgPackAssert.BytesEqual(Bytes("sketch_stroke_paint_append.msgpack"), MsgPackWriter.Encode(
                Requests.SketchStroke(22, new[] { 0.5f, 0.12f, 0.62f, 0.15f }, 0, 2, paint, true)), "the next piece of a paint stroke");
        }

        [Test]
        public void TypedFieldsOfTheV1_4Vectors()
        {
            Assert.That(Index().Count, Is.GreaterThan(0), "vectors found");
            Assert.That(Protocol.Minor, Is.GreaterThanOrEqualTo(4), "the package speaks v1.4 (or newer)");
            Assert.That(_indexMinor, Is.GreaterThanOrEqualTo(4), "the vectors hold v1.4's (or newer)");

            var welcome = (WelcomeMessage)Parse("welcome_calibration.msgpack");
            Assert.AreEqual(4, welcome.ProtocolMinor);
            Assert.IsNotNull(welcome.Gaze, "welcome.gaze");
            CollectionAssert.AreEqual(new[] { CalibrationPatterns.FivePoint, CalibrationPatterns.NinePoint }, welcome.Gaze.Calibration);
            Assert.IsTrue(welcome.Gaze.CanCalibrate);
            Assert.AreEqual(120.0, welcome.Gaze.MaxRateHz, "the v1.2 gaze fields are all still there");
            Assert.AreEqual(256, welcome.Gaze.MaxSamplesPerBatch);
            var older = ((WelcomeMessage)Parse("welcome_gaze.msgpack")).Gaze;
            Assert.AreEqual(0, older.Calibration.Count, "a v1.2 welcome.gaze offers no calibration");
            Assert.IsFalse(older.CanCalibrate);

            var calibration = (CalibrationMessage)Parse("calibration.msgpack");
            Assert.AreEqual(30, calibration.Rid);
            Assert.AreEqual(CalibrationPatterns.NinePoint, calibration.Pattern);
            Assert.AreEqual(9, calibration.Targets.Count);
            Assert.AreEqual(-15.0, calibration.Targets[0].Yaw);
            Assert.AreEqual(10.0, calibration.Targets[0].Pitch);
            Assert.AreEqual(0.0, calibration.Targets[4].Yaw, "the centre");
            Assert.AreEqual(0.0, calibration.Targets[4].Pitch);
            Assert.AreEqual(15.0, calibration.Targets[8].Yaw);
            Assert.AreEqual(-10.0, calibration.Targets[8].Pitch);
            Assert.AreEqual(1.5, calibration.DistanceM);
            Assert.AreEqual(0.5, calibration.SettleS);
            Assert.AreEqual(1.0, calibration.DwellS);

            var calibrated = (CalibratedMessage)Parse("calibrated.msgpack");
            Assert.AreEqual(32, calibrated.Rid);
            Assert.AreEqual(GazeWireSample.Eye, calibrated.Source);
            Assert.AreEqual(9, calibrated.Targets);
            Assert.AreEqual(0.42, calibrated.AccuracyDeg);
            Assert.AreEqual(0.31, calibrated.PrecisionDeg);
            Assert.IsTrue(calibrated.Saved, "a study participant's calibration is kept");

            var failed = (ErrorMessage)Parse("error_calibration_failed.msgpack");
            Assert.AreEqual(ErrorCodes.CalibrationFailed, failed.Code);
            Assert.AreEqual(32, failed.Rid, "the calibrate.end's rid");
            StringAssert.Contains("previous correction stays", failed.Message);
            OmokageError error = OmokageError.From(failed.ToException());
            Assert.AreEqual(ErrorCodes.CalibrationFailed, error.Code);
            StringAssert.Contains("previous one stays", error.Message);

            // the client vectors are what the builders make
            MsgPackAssert.BytesEqual(Bytes("hello_v1_4.msgpack"), MsgPackWriter.Encode(
                Requests.Hello(1, "omokage-unity/0.6.0", null, Protocol.Version, 4)), "v1.4 hello: the 0.6 package's");
            MsgPackAssert.BytesEqual(Bytes("calibrate_begin.msgpack"), MsgPackWriter.Encode(
                Requests.CalibrateBegin(30, CalibrationPatterns.NinePoint, GazeWireSample.Eye)), "calibrate.begin");
            MsgPackAssert.BytesEqual(Bytes("calibrate_begin_default.msgpack"), MsgPackWriter.Encode(Requests.CalibrateBegin(31)),
                                     "calibrate.begin with the defaults");

            // the run of the calibration vector, its first target shown at 1732356010.0 and frames every 1/8 s, says what
            // the calibrate.end vector says
            var run = new CalibrationRun(calibration);
            double t = 1732356010.0;
            while (!run.Done)
            {
                run.Update(t);
                t += 0.125;
            }
            Assert.AreEqual(9, run.Shown.Count);
            MsgPackAssert.BytesEqual(Bytes("calibrate_end.msgpack"), MsgPackWriter.Encode(Requests.CalibrateEnd(32, new List<CalibrationShown>(run.Shown))),
                                     "calibrate.end from the run");
        }

        [Test]
        public void TypedFieldsOfTheV1_5Vectors()
        {
            Assert.That(Index().Count, Is.GreaterThan(0), "vectors found");
            Assert.That(Protocol.Minor, Is.GreaterThanOrEqualTo(5), "the package speaks v1.5 (or newer)");
            Assert.That(_indexMinor, Is.GreaterThanOrEqualTo(5), "the vectors hold v1.5's (or newer)");

            var welcome = (WelcomeMessage)Parse("welcome_v1_5.msgpack");
            Assert.AreEqual(5, welcome.ProtocolMinor);
            Assert.IsNotNull(welcome.Gaze, "welcome.gaze");
            Assert.AreEqual(GazeProfiles.Device, welcome.Gaze.Profile, "welcome.gaze.profile: the device's default correction");
            CollectionAssert.AreEqual(new[] { CalibrationPatterns.FivePoint, CalibrationPatterns.NinePoint }, welcome.Gaze.Calibration,
                                      "the v1.4 gaze fields are all still there");
            Assert.IsNotNull(welcome.Ideal, "welcome.ideal");
            Assert.AreEqual(200, welcome.Ideal.ImageSize);
            var older = (WelcomeMessage)Parse("welcome_calibration.msgpack");
            Assert.IsNull(older.Gaze.Profile, "a v1.4 welcome says nothing about the gaze's correction");
            Assert.IsNull(older.Ideal, "a v1.4 welcome offers no ideal face");

            var cancelled = (CalibrationCancelledMessage)Parse("calibration_cancelled.msgpack");
            Assert.AreEqual(33, cancelled.Rid, "the calibrate.cancel's rid");
            Assert.AreEqual(412, cancelled.Samples);

            var ideal = (IdealResultMessage)Parse("ideal_result.msgpack");
            Assert.AreEqual(40, ideal.Rid);
            Assert.AreEqual(412, ideal.Near);
            Assert.AreEqual(9, ideal.Items.Count);
            Assert.AreEqual(733, ideal.Items[0].Id);
            Assert.AreEqual(0.18, ideal.Items[0].Distance);
            Assert.IsNull(ideal.Items[0].Probability, "an ideal face's neighbours carry no probability");
            Assert.AreEqual("Avatar 733", ideal.Items[0].Title);
            StringAssert.StartsWith("https://", ideal.Items[0].Url);
            for (int i = 1; i < ideal.Items.Count; i++)
                Assert.That(ideal.Items[i].Distance, Is.GreaterThanOrEqualTo(ideal.Items[i - 1].Distance), "nearest first");
            Assert.AreEqual("jpeg", ideal.Preview.Format);
            Assert.AreEqual(8, ideal.Preview.Width);
            Assert.IsTrue(ideal.Preview.HashMatches(), "the inline preview is addressed by its SHA-256");

            // the client vectors are what the builders make
            MsgPackAssert.BytesEqual(Bytes("hello_v1_5_device.msgpack"), MsgPackWriter.Encode(
                Requests.Hello(1, "omokage-unity/0.7.0", null, Protocol.Version, 5, null, HeadsetModels.QuestPro)),
                "v1.5 hello from a Quest Pro: the 0.7 package's");
            MsgPackAssert.BytesEqual(Bytes("calibrate_cancel.msgpack"), MsgPackWriter.Encode(Requests.CalibrateCancel(33)), "calibrate.cancel");
            MsgPackAssert.BytesEqual(Bytes("ideal.msgpack"), MsgPackWriter.Encode(Requests.Ideal(40)), "ideal near the last face chosen");
            MsgPackAssert.BytesEqual(Bytes("ideal_near.msgpack"), MsgPackWriter.Encode(Requests.Ideal(41, 412)), "ideal near a face shown");
            Assert.Throws<ArgumentOutOfRangeException>(() => Requests.Ideal(42, -1));
            Assert.Throws<ArgumentOutOfRangeException>(() => Requests.Hello(1, "c", null, 1, 5, null, ""), "an empty device name");
            Assert.Throws<ArgumentOutOfRangeException>(() => Requests.Hello(1, "c", null, 1, 5, null, new string('q', 65)), "65 characters");
        }

        [Test]
        public void TypedFieldsOfTheV1_6Vectors()
        {
            Assert.That(Protocol.Minor, Is.GreaterThanOrEqualTo(6), "the package speaks v1.6 (or newer)");
            Assert.That(_indexMinor, Is.GreaterThanOrEqualTo(6), "the vectors hold v1.6's (or newer)");

            var welcome = (WelcomeMessage)Parse("welcome_v1_6.msgpack");
            Assert.AreEqual(6, welcome.ProtocolMinor);
            Assert.IsNotNull(welcome.Sketch, "welcome.sketch");
            Assert.IsTrue(welcome.Sketch.Sharpens, "welcome.sketch.sharpens: sharper previews follow the results");
            Assert.AreEqual(64, welcome.Sketch.PreviewSize);
            Assert.IsFalse(((WelcomeMessage)Parse("welcome_sketch.msgpack")).Sketch.Sharpens, "a v1.3 welcome: no sharpening");

            var preview = (SketchPreviewMessage)Parse("sketch_preview.msgpack");
            Assert.IsNull(preview.Rid, "a sketch.preview answers no request");
            Assert.AreEqual(2, preview.Revision, "the revision of the result it sharpens");
            Assert.AreEqual("jpeg", preview.Preview.Format);
            Assert.IsTrue(preview.Preview.HashMatches(), "the inline preview is addressed by its SHA-256");

            MsgPackAssert.BytesEqual(Bytes("hello_v1_6.msgpack"), MsgPackWriter.Encode(
                Requests.Hello(1, "omokage-web/0.8.0", null, Protocol.Version, 6)), "a v1.6 hello");
        }

        [Test]
        public void TypedFieldsOfTheV1_7Vectors()
        {
            Assert.AreEqual(7, Protocol.Minor, "the package speaks v1.7");
            Assert.AreEqual(7, _indexMinor, "the vectors are v1.7's");

            var welcome = (WelcomeMessage)Parse("welcome_v1_7.msgpack");
            Assert.AreEqual(7, welcome.ProtocolMinor);
            Assert.IsNotNull(welcome.Resume, "welcome.resume: this connection's token");
            Assert.AreEqual("9b1e6d0c4a2f48e3b7c5d1a0e6f29c84", welcome.Resume.Token);
            Assert.AreEqual(600.0, welcome.Resume.TtlS, "kept 10 minutes after a loss");
            Assert.IsNull(welcome.Resumed, "no resume was asked for: welcome.resumed is absent");
            Assert.AreEqual(GazeProfiles.None, welcome.Gaze.Profile, "the earlier fields are all still there");
            StringAssert.DoesNotContain(welcome.Resume.Token, welcome.ToString(), "a welcome's text keeps its token out of logs");
            StringAssert.DoesNotContain(welcome.Resume.Token, welcome.Resume.ToString());
            Assert.IsNull(((WelcomeMessage)Parse("welcome_v1_6.msgpack")).Resume, "a v1.6 welcome gives no token");
            Assert.IsNull(((WelcomeMessage)Parse("welcome_v1_6.msgpack")).Resumed);

            var resumed = (WelcomeMessage)Parse("welcome_v1_7_resumed.msgpack");
            Assert.AreEqual(true, resumed.Resumed, "the selection goes on here");
            Assert.AreEqual("e47a0c2b9d6f41a8b3e5c7d9f1a2b4c6", resumed.Resume.Token, "a fresh token replaces the spent one");
            Assert.AreEqual("c0ffee0b", resumed.SessionId, "a new session");

            var grid = (CandidatesMessage)Parse("candidates_resumed.msgpack");
            Assert.IsNull(grid.Rid, "the resumed grid answers no request");
            Assert.AreEqual(3, grid.Step, "the step it had reached");
            Assert.AreEqual("pca", grid.Algorithm);
            Assert.AreEqual(Policies.Thompson, grid.Policy);
            Assert.AreEqual(2, grid.Items.Count);
            Assert.AreEqual(1234, grid.Items[0].Id);
            StringAssert.StartsWith("桜", grid.Items[0].Title);
            Assert.AreEqual(0.125, grid.Items[0].Probability);
            Assert.IsNull(grid.Items[0].Distance);
            Assert.AreEqual(17, grid.Items[1].Id);
            Assert.IsNull(grid.Reconstruction);

            // back: no fields besides the rid
            MsgPackAssert.BytesEqual(Bytes("back.msgpack"), MsgPackWriter.Encode(Requests.Back(9)), "back");
            CollectionAssert.AreEqual(new[] { "type" }, new List<string>(Requests.Back(null).Keys), "a back without rid is its type alone");

            // the client vector is what the builder makes: the resume token goes last
            MsgPackAssert.BytesEqual(Bytes("hello_v1_7_resume.msgpack"), MsgPackWriter.Encode(
                Requests.Hello(1, "omokage-web/0.9.0", null, Protocol.Version, Protocol.Minor, null, null, "3f9c2a7e51d04b8e9a6c1f2d7b8e4a90")),
                "a v1.7 hello after a lost connection");
            Assert.Throws<ArgumentOutOfRangeException>(() => Requests.Hello(1, "c", null, 1, 7, null, null, ""), "an empty token");
            Assert.Throws<ArgumentOutOfRangeException>(() => Requests.Hello(1, "c", null, 1, 7, null, null, new string('a', 65)), "65 characters");
            CollectionAssert.AreEqual(new[] { "type", "rid", "protocol", "client", "token", "protocol_minor", "participant", "device", "resume" },
                new List<string>(Requests.Hello(1, "c", "t", 1, 7, "p", "quest-3", "r").Keys), "resume after every earlier field");
        }

        static byte[] Bytes(string file)
        {
            return System.IO.File.ReadAllBytes(Path.Combine(_dir, file));
        }

        static ServerMessage Parse(string file)
        {
            return ServerMessage.Parse(MsgPackReader.DecodeMap(System.IO.File.ReadAllBytes(Path.Combine(_dir, file))));
        }
    }
}
