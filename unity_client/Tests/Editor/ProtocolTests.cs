using System;
using System.Collections.Generic;
using NUnit.Framework;
using Omokage.Client.MessagePack;

namespace Omokage.Client.Tests
{
    [TestFixture]
    public class ProtocolTests
    {
        static MsgMap Item(long id)
        {
            return new MsgMap { { "id", id }, { "distance", null }, { "texture", new string('a', 64) }, { "title", "t" }, { "url", "u" } };
        }

        [Test]
        public void RequestBuilders_PutTypeFirst_RidSecond_AndLeaveOutNullOptionals()
        {
            var start = Requests.StartRandom(3, "pca");
            CollectionAssert.AreEqual(new[] { "type", "rid", "algorithm", "init" }, new List<string>(start.Keys));
            var hello = Requests.Hello(null, "x");
            CollectionAssert.AreEqual(new[] { "type", "protocol", "client" }, new List<string>(hello.Keys));
            var image = Requests.StartImage(1, "nmf", new byte[] { 1 }, 5);
            CollectionAssert.AreEqual(new[] { "type", "rid", "algorithm", "init", "image", "seed" }, new List<string>(image.Keys));
            Assert.AreEqual("image", image["init"]);
            Assert.Throws<ArgumentOutOfRangeException>(() => Requests.Choose(-1, 3));
        }

        [Test]
        public void V1_1Builders_PutTheNewFieldsLast()
        {
            var start = Requests.StartRandom(3, "pca", 7, "cover");
            CollectionAssert.AreEqual(new[] { "type", "rid", "algorithm", "init", "seed", "policy" }, new List<string>(start.Keys));
            var noPolicy = Requests.StartRandom(3, "pca", null, null);
            CollectionAssert.AreEqual(new[] { "type", "rid", "algorithm", "init" }, new List<string>(noPolicy.Keys));
            var hello = Requests.Hello(1, "x", "t", Protocol.Version, Protocol.Minor);
            CollectionAssert.AreEqual(new[] { "type", "rid", "protocol", "client", "token", "protocol_minor" }, new List<string>(hello.Keys));
            CollectionAssert.AreEqual(new[] { "type" }, new List<string>(Requests.Skip(null).Keys));
            var rate = Requests.Rate(4, 17, 5);
            CollectionAssert.AreEqual(new[] { "type", "rid", "id", "rating" }, new List<string>(rate.Keys));
            Assert.Throws<ArgumentOutOfRangeException>(() => Requests.Rate(4, 17, 0));
            Assert.Throws<ArgumentOutOfRangeException>(() => Requests.Rate(4, 17, 6));
            Assert.AreEqual(7, new OmokageClientOptions("ws://127.0.0.1:1/ws").ProtocolMinor, "clients announce v1.7 by default");
        }

        [Test]
        public void V1_5Messages_CheckTheirFields()
        {
            // a device goes last in the hello, after the participant
            var hello = Requests.Hello(1, "x", null, Protocol.Version, Protocol.Minor, "p-1", HeadsetModels.Quest3);
            CollectionAssert.AreEqual(new[] { "type", "rid", "protocol", "client", "protocol_minor", "participant", "device" },
                                      new List<string>(hello.Keys));
            Assert.IsNull(new OmokageClientOptions("ws://127.0.0.1:1/ws").Device, "no device unless one is set");

            var noSamples = new MsgMap { { "type", "calibration.cancelled" }, { "rid", 3L } };
            StringAssert.Contains("`samples`", Assert.Throws<OmokageProtocolException>(() => ServerMessage.Parse(noSamples)).Message);
            var preview = new MsgMap { { "hash", new string('a', 64) }, { "format", "jpeg" }, { "width", 8L }, { "height", 8L }, { "data", new byte[] { 1 } } };
            var noPreview = new MsgMap { { "type", "ideal.result" }, { "rid", 4L }, { "near", 5L }, { "items", new List<object> { Item(6) } } };
            StringAssert.Contains("`preview`", Assert.Throws<OmokageProtocolException>(() => ServerMessage.Parse(noPreview)).Message);
            var badItem = new MsgMap { { "type", "ideal.result" }, { "near", 5L }, { "items", new List<object> { new MsgMap { { "id", 6L } } } }, { "preview", preview } };
            StringAssert.Contains("ideal.result.items[0]", Assert.Throws<OmokageProtocolException>(() => ServerMessage.Parse(badItem)).Message);
            var ideal = (IdealResultMessage)ServerMessage.Parse(new MsgMap
            {
                { "type", "ideal.result" }, { "rid", 4L }, { "near", 5L }, { "items", new List<object>() }, { "preview", preview },
            });
            Assert.AreEqual(0, ideal.Items.Count, "a catalog with every face shown has none left to list");
            Assert.AreEqual(5, ideal.Near);
            var badIdeal = new MsgMap
            {
                { "type", "welcome" }, { "protocol", 1L }, { "server", "s" }, { "session_id", "x" }, { "algorithms", new List<object>() },
                { "catalog", new MsgMap { { "count", 3L }, { "image_size", 64L } } }, { "ideal", new MsgMap() },
            };
            StringAssert.Contains("welcome.ideal", Assert.Throws<OmokageProtocolException>(() => ServerMessage.Parse(badIdeal)).Message);
        }

        static MsgMap Welcome()
        {
            return new MsgMap
            {
                { "type", "welcome" }, { "rid", 1L }, { "protocol", 1L }, { "server", "s" }, { "session_id", "x" }, { "algorithms", new List<object>() },
                { "catalog", new MsgMap { { "count", 3L }, { "image_size", 64L } } }, { "protocol_minor", 7L },
            };
        }

        [Test]
        public void V1_7Messages_CheckTheirFields_AndKeepTokensOutOfLogs()
        {
            Assert.IsTrue(new OmokageClientOptions("ws://127.0.0.1:1/ws").ResumeSelections, "resuming is on by default");
            StringAssert.Contains("`token`", Assert.Throws<OmokageProtocolException>(() =>
                ServerMessage.Parse(Welcome().Set("resume", new MsgMap { { "ttl_s", 600.0 } }))).Message);
            var tooLong = (WelcomeMessage)ServerMessage.Parse(Welcome().Set("resume", new MsgMap { { "token", new string('f', 65) }, { "ttl_s", 600.0 } }));
            Assert.IsFalse(tooLong.Resume.Presentable, "a token no hello could present: the client keeps none, the connection still works");
            Assert.IsTrue(((WelcomeMessage)ServerMessage.Parse(Welcome().Set("resume", new MsgMap { { "token", new string('f', 64) }, { "ttl_s", 600.0 } }))).Resume.Presentable);
            StringAssert.Contains("welcome.resume: field `ttl_s`", Assert.Throws<OmokageProtocolException>(() =>
                ServerMessage.Parse(Welcome().Set("resume", new MsgMap { { "token", "abc" }, { "ttl_s", "long" } }))).Message);
            StringAssert.Contains("`resumed`", Assert.Throws<OmokageProtocolException>(() =>
                ServerMessage.Parse(Welcome().Set("resumed", 1L))).Message);
            var w = (WelcomeMessage)ServerMessage.Parse(Welcome().Set("resumed", false).Set("resume", new MsgMap { { "token", "abc" }, { "ttl_s", 60L } }));
            Assert.AreEqual(false, w.Resumed, "nothing to go on with");
            Assert.AreEqual(60.0, w.Resume.TtlS, "ttl_s is a number: an integer is accepted");

            // Log Traffic prints MessageTrace lines: neither token may appear there, the frame itself is untouched
            var hello = Requests.Hello(1, "c", "access-secret", 1, 7, null, null, "resume-secret");
            var sent = new MessageTrace(true, hello, 80, 0).ToString();
            StringAssert.DoesNotContain("access-secret", sent);
            StringAssert.DoesNotContain("resume-secret", sent);
            StringAssert.Contains("\"resume\": \"<secret>\"", sent);
            Assert.AreEqual("resume-secret", hello.GetString("resume"), "the message sent keeps its token");
            var got = new MessageTrace(false, w.Raw, 80, 0).ToString();
            StringAssert.DoesNotContain("abc", got);
            StringAssert.Contains("\"ttl_s\": 60", got);
            Assert.AreEqual("abc", w.Raw.GetMap("resume").GetString("token"));
            StringAssert.Contains("\"client\": \"c\"", new MessageTrace(true, Requests.Hello(1, "c"), 40, 0).ToString(), "the rest is shown");
        }

        [Test]
        public void HeadsetModels_FromTheSystemsDeviceName()
        {
            Assert.AreEqual(HeadsetModels.QuestPro, HeadsetModels.FromDeviceName("Oculus Quest Pro"));
            Assert.AreEqual(HeadsetModels.QuestPro, HeadsetModels.FromDeviceName("Meta Quest-Pro"));
            Assert.AreEqual(HeadsetModels.Quest3, HeadsetModels.FromDeviceName("Oculus Quest 3"));
            Assert.AreEqual(HeadsetModels.Quest3, HeadsetModels.FromDeviceName("meta quest3"));
            Assert.IsNull(HeadsetModels.FromDeviceName("Meta Quest 3S"), "another model, no profile");
            Assert.IsNull(HeadsetModels.FromDeviceName("Oculus Quest 2"));
            Assert.IsNull(HeadsetModels.FromDeviceName("MacBookPro18,3"), "the Editor");
            Assert.IsNull(HeadsetModels.FromDeviceName(""));
            Assert.IsNull(HeadsetModels.FromDeviceName(null));
        }

        [Test]
        public void V1_1Fields_AreOptional_AndParsed()
        {
            var item = Item(5);
            item.Set("probability", 0.25);
            var map = new MsgMap { { "type", "candidates" }, { "step", 2L }, { "algorithm", "pca" }, { "items", new List<object> { item, Item(6) } }, { "policy", "cover" } };
            var grid = (CandidatesMessage)ServerMessage.Parse(map);
            Assert.AreEqual("cover", grid.Policy);
            Assert.AreEqual(0.25, grid.Items[0].Probability);
            Assert.IsNull(grid.Items[1].Probability);
            var bad = new MsgMap { { "type", "candidates" }, { "step", 2L }, { "algorithm", "pca" }, { "items", new List<object> { Item(5).Set("probability", "high") } } };
            var e = Assert.Throws<OmokageProtocolException>(() => ServerMessage.Parse(bad));
            StringAssert.Contains("probability", e.Message);
            var rated = (RatedMessage)ServerMessage.Parse(new MsgMap { { "type", "rated" }, { "rid", 2L }, { "id", 5L }, { "rating", 3L } });
            Assert.AreEqual(5, rated.Id);
            Assert.AreEqual(3, rated.Rating);
        }

        [Test]
        public void UnknownFields_AreIgnored_AndKeptInRaw()
        {
            var map = new MsgMap { { "type", "pong" }, { "rid", 3L }, { "t", 1L }, { "server_time", 2.5 }, { "future", "x" } };
            var pong = (PongMessage)ServerMessage.Parse(map);
            Assert.AreEqual(1.0, pong.T, "number accepts an int");
            Assert.AreEqual(2.5, pong.ServerTime);
            Assert.AreEqual("x", pong.Raw.GetString("future"));
        }

        [Test]
        public void UnknownTypes_ParseAsUnknownMessage()
        {
            var msg = ServerMessage.Parse(new MsgMap { { "type", "gaze.ack" } });
            Assert.IsInstanceOf(typeof(UnknownMessage), msg);
            Assert.IsNull(msg.Rid);
        }

        [Test]
        public void MissingOrMistypedFields_ThrowNamingTheField()
        {
            var e = Assert.Throws<OmokageProtocolException>(() => ServerMessage.Parse(new MsgMap { { "type", "pong" }, { "t", 1.0 } }));
            StringAssert.Contains("server_time", e.Message);
            var items = new List<object> { Item(1), new MsgMap { { "id", "seven" } } };
            e = Assert.Throws<OmokageProtocolException>(() => ServerMessage.Parse(new MsgMap { { "type", "candidates" }, { "step", 1L }, { "algorithm", "pca" }, { "items", items } }));
            StringAssert.Contains("items[1]", e.Message);
            StringAssert.Contains("id", e.Message);
            Assert.Throws<OmokageProtocolException>(() => ServerMessage.Parse(new MsgMap { { "rid", 1L } }));
        }

        [Test]
        public void Welcome_LimitsDefaultWhenLeftOut()
        {
            var map = new MsgMap
            {
                { "type", "welcome" }, { "protocol", 1L }, { "server", "s" }, { "session_id", "x" },
                { "algorithms", new List<object> { "pca" } }, { "catalog", new MsgMap { { "count", 3L }, { "image_size", 64L } } },
            };
            var welcome = (WelcomeMessage)ServerMessage.Parse(map);
            Assert.AreEqual(64, welcome.Limits.MaxHashesPerRequest);
            Assert.AreEqual(9, welcome.Limits.GridSize);
        }

        [Test]
        public void Hashing_AndFormatSniffing()
        {
            Assert.AreEqual("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855", Hashing.Sha256Hex(new byte[0]));
            Assert.IsTrue(Hashing.IsHash(new string('0', 64)));
            Assert.IsFalse(Hashing.IsHash(new string('A', 64)));
            Assert.AreEqual("jpeg", Hashing.SniffImageFormat(new byte[] { 0xff, 0xd8, 0xff, 0xe0 }));
            Assert.IsNull(Hashing.SniffImageFormat(new byte[] { 1, 2, 3 }));
        }

        [Test]
        public void ClientOptions_RejectNonWebSocketUrls()
        {
            Assert.Throws<ArgumentException>(() => new OmokageClientOptions("http://127.0.0.1:8765/ws"));
            Assert.AreEqual("ws", new OmokageClientOptions("ws://127.0.0.1:8765/ws").ServerUri.Scheme);
        }

        [Test]
        public void RequestsBeforeConnecting_FailWithConnectionException()
        {
            var client = new OmokageClient("ws://127.0.0.1:9/ws");
            Assert.AreEqual(ConnectionState.Disconnected, client.State);
            Assert.Throws<OmokageConnectionException>(() => Sync.Run(() => client.ChooseAsync(1)));
            client.Dispose();
            Assert.AreEqual(ConnectionState.Closed, client.State);
        }

        [Test]
        public void ConnectingToNothing_FailsWithConnectionException()
        {
            var options = new OmokageClientOptions("ws://127.0.0.1:9/ws") { ConnectTimeout = TimeSpan.FromSeconds(3) };
            var client = new OmokageClient(options);
            Assert.Throws<OmokageConnectionException>(() => Sync.Run(() => client.ConnectAsync()));
            Assert.AreEqual(ConnectionState.Disconnected, client.State);
            client.Dispose();
        }
    }
}
