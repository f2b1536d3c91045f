using System;
using System.Collections.Generic;
using NUnit.Framework;
using Omokage.Client.MessagePack;

namespace Omokage.Client.Tests
{
    /// <summary>Protocol v1.4 gaze calibration, engine-free: the run's timing and the intervals it reports, the directions of
    /// the targets, the scene frame, the messages, and the client's requests against a scripted server.</summary>
    [TestFixture]
    public class CalibrationTests
    {
        static MsgMap CalibrationMap(int targets, double settle = 0.5, double dwell = 1.0)
        {
            var list = new List<object>();
            for (int k = 0; k < targets; k++) list.Add(new List<object> { (k % 3 - 1) * 15.0, (1 - k / 3 % 3) * 10.0 });
            return new MsgMap
            {
                { "type", "calibration" }, { "rid", 3L }, { "pattern", "nine-point" }, { "targets", list }, { "distance_m", 1.5 },
                { "settle_s", settle }, { "dwell_s", dwell },
            };
        }

        static CalibrationRun NineTargets() { return new CalibrationRun((CalibrationMessage)ServerMessage.Parse(CalibrationMap(9))); }

        [Test]
        public void Run_ShowsEachTargetToSettleThenCollect_AndReportsTheIntervals()
        {
            var run = NineTargets();
            Assert.AreEqual(CalibrationPhase.NotStarted, run.Phase);
            Assert.AreEqual(-1, run.Current);
            Assert.AreEqual(13.5, run.Duration, 1e-12);
            Assert.AreEqual(1.5, run.DistanceM);

            double t0 = 5000.0;
            Assert.AreEqual(CalibrationPhase.Settling, run.Update(t0), "the first call shows target 0");
            Assert.AreEqual(0, run.Current);
            Assert.AreEqual(t0, run.Appeared);
            Assert.AreEqual(0.0, run.SettleProgress);
            Assert.AreEqual(CalibrationPhase.Settling, run.Update(t0 + 0.25));
            Assert.AreEqual(0.5, run.SettleProgress, 1e-9);
            Assert.AreEqual(CalibrationPhase.Collecting, run.Update(t0 + 0.5), "settled after settle_s");
            Assert.AreEqual(1.0, run.SettleProgress);
            Assert.AreEqual(CalibrationPhase.Collecting, run.Update(t0 + 1.4999));
            Assert.AreEqual(0, run.Shown.Count, "still on screen: not reported yet");
            Assert.AreEqual(CalibrationPhase.Settling, run.Update(t0 + 1.5), "after settle + dwell the next target appears");
            Assert.AreEqual(1, run.Current);
            Assert.AreEqual(1, run.Shown.Count);
            Assert.AreEqual(0, run.Shown[0].Target);
            Assert.AreEqual(t0 + 0.5, run.Shown[0].Start);
            Assert.AreEqual(t0 + 1.5, run.Shown[0].End);

            // the rest at 90 Hz: each target's interval lies between its first and its last frame on screen
            var firstFrame = new Dictionary<int, double> { { 0, t0 }, { 1, t0 + 1.5 } };
            var lastFrame = new Dictionary<int, double> { { 0, t0 + 1.4999 } };
            double t = t0 + 1.5;
            while (!run.Done)
            {
                t += 1.0 / 90;
                int before = run.Current;
                run.Update(t);
                if (run.Current != before)
                {
                    lastFrame[before] = t - 1.0 / 90;
                    if (run.Current >= 0) firstFrame[run.Current] = t;
                }
            }
            Assert.AreEqual(CalibrationPhase.Done, run.Phase);
            Assert.AreEqual(-1, run.Current);
            Assert.AreEqual(9, run.Shown.Count);
            for (int k = 0; k < 9; k++)
            {
                CalibrationShown s = run.Shown[k];
                Assert.AreEqual(k, s.Target, "in order");
                Assert.AreEqual(firstFrame[k] + 0.5, s.Start, 1e-6, "t_start = appeared + settle_s");
                Assert.AreEqual(firstFrame[k] + 1.5, s.End, 1e-6, "t_end = appeared + settle_s + dwell_s");
                Assert.That(s.End, Is.LessThanOrEqualTo(lastFrame[k] + 1.0 / 90 + 1e-9), "gone only after its interval");
                if (k > 0) Assert.That(s.Start, Is.GreaterThan(run.Shown[k - 1].End), "intervals do not overlap");
            }
            Assert.AreEqual(CalibrationPhase.Done, run.Update(t + 10), "done stays done");
            Assert.AreEqual(9, run.Shown.Count);
        }

        [Test]
        public void Run_ALateFrame_KeepsTheTargetUpLonger_AndSkipsNoTarget()
        {
            var run = NineTargets();
            run.Update(100.0);
            run.Update(101.5);                 // target 1 at 101.5
            Assert.AreEqual(1, run.Current);
            run.Update(106.0);                 // a 4.5 s hitch: target 1 ends (101.5 + 1.5 = 103), target 2 appears now
            Assert.AreEqual(2, run.Current, "one target per call, however late");
            Assert.AreEqual(CalibrationPhase.Settling, run.Phase);
            Assert.AreEqual(106.0, run.Appeared);
            Assert.AreEqual(102.0, run.Shown[1].Start);
            Assert.AreEqual(103.0, run.Shown[1].End, "the interval is the scheduled one, within the time it was up");
            run.Update(107.5);
            Assert.AreEqual(106.5, run.Shown[2].Start);
        }

        [Test]
        public void Run_ZeroSettle_CollectsAtOnce()
        {
            var run = new CalibrationRun(new[] { new CalibrationTarget(0, 0), new CalibrationTarget(10, 0) }, 2.0, 0, 0.5);
            Assert.AreEqual(CalibrationPhase.Collecting, run.Update(1.0));
            Assert.AreEqual(1.0, run.SettleProgress);
            run.Update(1.5);
            run.Update(2.0);
            Assert.IsTrue(run.Done);
            Assert.AreEqual(1.0, run.Shown[0].Start);
            Assert.AreEqual(1.5, run.Shown[1].Start);
        }

        [Test]
        public void Run_RefusesWhatCannotBeShown()
        {
            var one = new[] { new CalibrationTarget(0, 0) };
            Assert.Throws<ArgumentOutOfRangeException>(() => new CalibrationRun(new CalibrationTarget[0], 1.5, 0.5, 1));
            Assert.Throws<ArgumentOutOfRangeException>(() => new CalibrationRun(new CalibrationTarget[65], 1.5, 0.5, 1), "more than calibrate.end can carry");
            Assert.Throws<ArgumentOutOfRangeException>(() => new CalibrationRun(one, 0, 0.5, 1));
            Assert.Throws<ArgumentOutOfRangeException>(() => new CalibrationRun(one, 1.5, -0.1, 1));
            Assert.Throws<ArgumentOutOfRangeException>(() => new CalibrationRun(one, 1.5, 0.5, 0));
            Assert.Throws<ArgumentNullException>(() => new CalibrationRun((CalibrationMessage)null));
            Assert.Throws<ArgumentOutOfRangeException>(() => new CalibrationRun(one, 1.5, 0.5, 1).Update(double.NaN));
        }

        [Test]
        public void Run_UpdateAllocatesNothing()
        {
            var targets = new CalibrationTarget[64];
            for (int k = 0; k < targets.Length; k++) targets[k] = new CalibrationTarget(k % 8 * 4 - 14, k / 8 * 3 - 10);
            double t = 1.0;
            var warm = new CalibrationRun(targets, 1.5, 0.5, 1.0);
            while (!warm.Done) warm.Update(t += 1.0 / 90);  // JIT and first-use allocations
            var run = new CalibrationRun(targets, 1.5, 0.5, 1.0);
            int frames = 0;
            long before = GC.GetAllocatedBytesForCurrentThread();
            while (!run.Done)
            {
                run.Update(t += 1.0 / 90);
                frames++;
            }
            long allocated = GC.GetAllocatedBytesForCurrentThread() - before;
            Assert.AreEqual(0, allocated, "bytes allocated by " + frames + " frames of a 64-target run");
            Assert.That(frames, Is.GreaterThan(8000));
            Assert.AreEqual(64, run.Shown.Count);
        }

        [Test]
        public void Directions_AreTheServersYawAndPitch()
        {
            double x, y, z;
            CalibrationRun.Direction(0, 0, out x, out y, out z);
            Assert.AreEqual(new[] { 0.0, 0.0, -1.0 }, new[] { x, y, z }, "straight ahead is −z");
            CalibrationRun.Direction(90, 0, out x, out y, out z);
            Assert.AreEqual(1.0, x, 1e-12, "positive yaw is to the right (+x)");
            Assert.AreEqual(0.0, z, 1e-12);
            CalibrationRun.Direction(0, 90, out x, out y, out z);
            Assert.AreEqual(1.0, y, 1e-12, "positive pitch is up");
            foreach (var target in new[] { new CalibrationTarget(-15, 10), new CalibrationTarget(15, -10), new CalibrationTarget(7.5, 3) })
            {
                target.Direction(out x, out y, out z);
                Assert.AreEqual(1.0, Math.Sqrt(x * x + y * y + z * z), 1e-12, "a unit vector");
                double yaw, pitch;
                CalibrationRun.YawPitch(x, y, z, out yaw, out pitch);
                Assert.AreEqual(target.Yaw, yaw, 1e-9, "yaw = atan2(x, −z)");
                Assert.AreEqual(target.Pitch, pitch, 1e-9, "pitch = asin(y)");
            }
            var run = NineTargets();
            run.Update(0);
            CalibrationRun.Direction(-15, 10, out x, out y, out z);
            Assert.AreEqual(new[] { x, y, z }, new[] { run.X, run.Y, run.Z }, "the run's current direction");
        }

        [Test]
        public void SceneFrame_MirrorsUnitysWorld_AndKeepsEveryHit()
        {
            // a grid in Unity's world: 1.5 m ahead along +z, turned 20° about y and tilted 10° about x
            double half = Math.PI / 180 * 10, tilt = Math.PI / 180 * 5;
            double qy = Math.Sin(half), qw1 = Math.Cos(half), qx = Math.Sin(tilt), qw2 = Math.Cos(tilt);
            // q = q_y(20°) * q_x(10°)
            double rx = qw1 * qx, ry = qy * qw2, rz = -qy * qx, rw = qw1 * qw2;
            var unity = new PanelPose[9];
            var scene = new PanelPose[9];
            for (int k = 0; k < 9; k++)
            {
                unity[k] = new PanelPose { Px = (k % 3 - 1) * 0.36, Py = 1.5 + (1 - k / 3) * 0.36, Pz = 1.5, Qx = rx, Qy = ry, Qz = rz, Qw = rw, Width = 0.3, Height = 0.3 };
                scene[k] = SceneFrame.Mirror(unity[k]);
                Assert.AreEqual(-unity[k].Pz, scene[k].Pz);
                Assert.AreEqual(unity[k], SceneFrame.Mirror(scene[k]), "its own inverse");
            }
            var random = new Random(3);
            int hits = 0;
            for (int i = 0; i < 500; i++)
            {
                double ox = random.NextDouble() * 0.2 - 0.1, oy = 1.5 + random.NextDouble() * 0.2, oz = random.NextDouble() * 0.2 - 0.1;
                double dx = random.NextDouble() * 0.8 - 0.4, dy = random.NextDouble() * 0.8 - 0.4, dz = 1;  // towards Unity's +z
                double u1, v1, u2, v2;
                int p1 = GazeGeometry.RayCast(unity, 9, ox, oy, oz, dx, dy, dz, out u1, out v1);
                int p2 = GazeGeometry.RayCast(scene, 9, ox, oy, SceneFrame.MirrorZ(oz), dx, dy, SceneFrame.MirrorZ(dz), out u2, out v2);
                Assert.AreEqual(p1, p2, "the same panel");
                Assert.AreEqual(u1, u2, 1e-9, "the same u");
                Assert.AreEqual(v1, v2, 1e-9, "the same v");
                if (p1 >= 0) hits++;
            }
            Assert.That(hits, Is.GreaterThan(100), "rays that hit a panel");
            double yaw, pitch;
            CalibrationRun.YawPitch(0, 0, SceneFrame.MirrorZ(1), out yaw, out pitch);
            Assert.AreEqual(0.0, yaw, 1e-12, "Unity's forward (+z) is straight ahead in the scene frame");
            CalibrationRun.YawPitch(1, 0, SceneFrame.MirrorZ(1), out yaw, out pitch);
            Assert.AreEqual(45.0, yaw, 1e-9, "and Unity's right is the scene frame's right");
        }

        [Test]
        public void Requests_AreCanonical_AndRefuseBadArguments()
        {
            CollectionAssert.AreEqual(new[] { "type", "rid", "pattern", "source" },
                                      new List<string>(Requests.CalibrateBegin(1, CalibrationPatterns.FivePoint, GazeWireSample.Head).Keys));
            CollectionAssert.AreEqual(new[] { "type", "source" }, new List<string>(Requests.CalibrateBegin(null, null, GazeWireSample.Eye).Keys));
            Assert.Throws<ArgumentOutOfRangeException>(() => Requests.CalibrateBegin(1, null, "hand"));
            var end = Requests.CalibrateEnd(2, new[] { new CalibrationShown(4, 10.5, 11.5) });
            var entry = (List<object>)end.GetList("shown")[0];
            Assert.AreEqual(4L, entry[0], "the index is an integer");
            Assert.AreEqual(10.5, entry[1], "t_start a float");
            Assert.AreEqual(11.5, entry[2]);
            Assert.Throws<ArgumentOutOfRangeException>(() => Requests.CalibrateEnd(2, new CalibrationShown[0]));
            Assert.Throws<ArgumentOutOfRangeException>(() => Requests.CalibrateEnd(2, new CalibrationShown[65]));
            Assert.Throws<ArgumentException>(() => Requests.CalibrateEnd(2, new[] { new CalibrationShown(0, 2, 2) }), "start < end");
            Assert.Throws<ArgumentException>(() => Requests.CalibrateEnd(2, new[] { new CalibrationShown(0, double.NaN, 2) }));
            Assert.Throws<ArgumentOutOfRangeException>(() => Requests.CalibrateEnd(2, new[] { new CalibrationShown(-1, 1, 2) }));
        }

        [Test]
        public void Messages_ParseTheirFields_AndNameWhatIsWrong()
        {
            var good = (CalibrationMessage)ServerMessage.Parse(CalibrationMap(5));
            Assert.AreEqual(5, good.Targets.Count);
            Assert.AreEqual(-15.0, good.Targets[0].Yaw);
            var ints = CalibrationMap(1);
            ints.Set("targets", new List<object> { new List<object> { 5L, -3L } }).Set("dwell_s", 1L);
            var fromInts = (CalibrationMessage)ServerMessage.Parse(ints);
            Assert.AreEqual(5.0, fromInts.Targets[0].Yaw, "a number may be an integer");
            Assert.AreEqual(1.0, fromInts.DwellS);

            var e = Assert.Throws<OmokageProtocolException>(() => ServerMessage.Parse(CalibrationMap(2).Set("targets",
                new List<object> { new List<object> { 1.0, 2.0 }, new List<object> { 1.0 } })));
            StringAssert.Contains("targets[1]", e.Message);
            e = Assert.Throws<OmokageProtocolException>(() => ServerMessage.Parse(CalibrationMap(2).Set("targets", new List<object>())));
            StringAssert.Contains("targets", e.Message);
            e = Assert.Throws<OmokageProtocolException>(() => ServerMessage.Parse(CalibrationMap(2).Set("dwell_s", 0.0)));
            StringAssert.Contains("dwell_s", e.Message);
            var noDistance = CalibrationMap(2);
            noDistance.Remove("distance_m");
            e = Assert.Throws<OmokageProtocolException>(() => ServerMessage.Parse(noDistance));
            StringAssert.Contains("distance_m", e.Message);

            e = Assert.Throws<OmokageProtocolException>(() => ServerMessage.Parse(new MsgMap
            {
                { "type", "calibrated" }, { "rid", 4L }, { "source", "eye" }, { "targets", 9L }, { "accuracy_deg", 0.4 }, { "precision_deg", 0.3 },
            }));
            StringAssert.Contains("saved", e.Message);

            var welcome = new MsgMap
            {
                { "type", "welcome" }, { "protocol", 1L }, { "server", "s" }, { "session_id", "x" }, { "protocol_minor", 4L },
                { "algorithms", new List<object> { "pca" } }, { "catalog", new MsgMap { { "count", 3L }, { "image_size", 64L } } },
                { "gaze", new MsgMap { { "max_rate_hz", 90.0 } } },
            };
            var gaze = ((WelcomeMessage)ServerMessage.Parse(welcome)).Gaze;
            Assert.AreEqual(0, gaze.Calibration.Count, "absent: the server cannot calibrate");
            Assert.IsFalse(gaze.CanCalibrate);
        }

        [Test]
        public void Client_SendsThePendingGazeFirst_AndMapsCalibrationFailed()
        {
            using (var server = new FakeServer())
            {
                var received = new List<string>();
                int ends = 0;
                server.Handler = (c, m) =>
                {
                    string type = m.GetString("type");
                    lock (received) received.Add(type);
                    long? rid = m.GetInt64("rid");
                    if (type == MessageTypes.Hello)
                    {
                        var w = FakeServer.Welcome(rid, c.SessionId);
                        w.Set("protocol_minor", 4L).Set("gaze", new MsgMap
                        {
                            { "max_rate_hz", 120.0 }, { "max_samples_per_batch", 256L }, { "calibration", new List<object> { "nine-point" } },
                        });
                        c.Send(w);
                        return true;
                    }
                    if (type == MessageTypes.CalibrateBegin)
                    {
                        var reply = CalibrationMap(9);
                        reply.Set("rid", rid);
                        c.Send(reply);
                        return true;
                    }
                    if (type == MessageTypes.CalibrateEnd && ++ends == 1)
                    {
                        c.Send(new MsgMap
                        {
                            { "type", "calibrated" }, { "rid", rid }, { "source", "eye" }, { "targets", (long)m.GetList("shown").Count },
                            { "accuracy_deg", 0.4 }, { "precision_deg", 0.3 }, { "saved", false },
                        });
                        return true;
                    }
                    if (type == MessageTypes.CalibrateEnd)
                    {
                        c.Send(new MsgMap { { "type", "error" }, { "rid", rid }, { "code", "calibration_failed" }, { "message", "calibration: only 2 target(s)" } });
                        return true;
                    }
                    return false;
                };
                var client = new OmokageClient(new OmokageClientOptions(server.Url) { AutoReconnect = false, PingInterval = TimeSpan.Zero });
                try
                {
                    Sync.Run(() => client.ConnectAsync());
                    Assert.IsTrue(client.CalibrationAccepted);
                    CollectionAssert.AreEqual(new[] { "nine-point" }, client.CalibrationPatterns);
                    Sync.Run(() => client.PingAsync());
                    double t = ClockSync.LocalNow();
                    for (int i = 0; i < 4; i++) client.Gaze.Record(GazeWireSample.Eye, t + i * 0.011, 0, 1.6, 0, 0, 0, -1, 1);
                    CalibrationMessage calibration = Sync.Run(() => client.CalibrateBeginAsync(CalibrationPatterns.NinePoint));
                    Assert.AreEqual(9, calibration.Targets.Count);
                    for (int i = 0; i < 6; i++) client.Gaze.Record(GazeWireSample.Eye, t + 1 + i * 0.011, 0, 1.6, 0, 0, 0, -1, 1);
                    var shown = new[] { new CalibrationShown(0, 1, 2), new CalibrationShown(1, 3, 4) };
                    CalibratedMessage calibrated = Sync.Run(() => client.CalibrateEndAsync(shown));
                    Assert.AreEqual(2, calibrated.Targets);
                    Assert.IsFalse(calibrated.Saved);
                    var failed = Assert.Throws<OmokageServerException>(() => Sync.Run(() => client.CalibrateEndAsync(shown)));
                    Assert.AreEqual(ErrorCodes.CalibrationFailed, failed.Code);
                    Assert.IsTrue(client.IsConnected, "a failed calibration leaves the connection as it was");
                    lock (received)
                        CollectionAssert.AreEqual(new[] { "hello", "ping", "gaze.batch", "calibrate.begin", "gaze.batch", "calibrate.end", "calibrate.end" }, received);
                    Assert.AreEqual(10, client.GazeSamplesSent);
                    var sent = server.Received;
                    Assert.AreEqual("nine-point", sent[3].GetString("pattern"));
                    Assert.IsNull(sent[3]["source"], "the default source is left out");
                    Assert.AreEqual(2, sent[5].GetList("shown").Count);
                    Assert.Throws<ArgumentOutOfRangeException>(() => client.CalibrateBeginAsync(null, "hand"), "refused before anything is sent");
                    Assert.Throws<ArgumentOutOfRangeException>(() => client.CalibrateEndAsync(new CalibrationShown[0]));
                }
                finally { client.Dispose(); }
            }
        }

        [Test]
        public void Client_HelloNamesTheDevice_AndCancelSendsThePendingGazeFirst()
        {
            using (var server = new FakeServer())
            {
                var received = new List<string>();
                server.Handler = (c, m) =>
                {
                    string type = m.GetString("type");
                    lock (received) received.Add(type);
                    long? rid = m.GetInt64("rid");
                    if (type == MessageTypes.Hello)
                    {
                        var w = FakeServer.Welcome(rid, c.SessionId);
                        w.Set("protocol_minor", 5L).Set("gaze", new MsgMap
                        {
                            { "max_rate_hz", 120.0 }, { "max_samples_per_batch", 256L }, { "calibration", new List<object> { "nine-point" } },
                            { "profile", m.GetString("device") == "quest-3" ? "device" : "none" },
                        }).Set("ideal", new MsgMap { { "image_size", 8L } });
                        c.Send(w);
                        return true;
                    }
                    if (type == MessageTypes.CalibrateBegin)
                    {
                        c.Send(CalibrationMap(9).Set("rid", rid));
                        return true;
                    }
                    if (type == MessageTypes.CalibrateCancel)
                    {
                        c.Send(new MsgMap { { "type", "calibration.cancelled" }, { "rid", rid }, { "samples", 6L } });
                        return true;
                    }
                    return false;
                };
                var options = new OmokageClientOptions(server.Url) { AutoReconnect = false, PingInterval = TimeSpan.Zero, Device = HeadsetModels.Quest3 };
                var client = new OmokageClient(options);
                try
                {
                    Sync.Run(() => client.ConnectAsync());
                    Assert.AreEqual(HeadsetModels.Quest3, server.Received[0].GetString("device"), "hello.device");
                    Assert.AreEqual((long)Protocol.Minor, server.Received[0].GetInt64("protocol_minor"));
                    Assert.AreEqual(GazeProfiles.Device, client.GazeProfile);
                    Assert.IsTrue(client.IdealAccepted);
                    Assert.AreEqual(8, client.IdealImageSize);
                    Sync.Run(() => client.PingAsync());  // gaze is stamped on the server's clock
                    Sync.Run(() => client.CalibrateBeginAsync());
                    double t = ClockSync.LocalNow();
                    for (int i = 0; i < 6; i++) client.Gaze.Record(GazeWireSample.Eye, t + i * 0.011, 0, 1.6, 0, 0, 0, -1, 1);
                    CalibrationCancelledMessage cancelled = Sync.Run(() => client.CalibrateCancelAsync());
                    Assert.AreEqual(6, cancelled.Samples);
                    Assert.AreEqual(0, client.Gaze.Pending, "the calibration's last samples went out before the cancel");
                    lock (received)
                        CollectionAssert.AreEqual(new[] { "hello", "ping", "calibrate.begin", "gaze.batch", "calibrate.cancel" }, received);
                    var sent = server.Received;
                    CollectionAssert.AreEqual(new[] { "type", "rid" }, new List<string>(sent[4].Keys), "calibrate.cancel has no fields");
                }
                finally { client.Dispose(); }
            }

            using (var server = new FakeServer())  // a v1.4 server: no profile, no ideal; a device in the hello is just ignored
            {
                var client = new OmokageClient(new OmokageClientOptions(server.Url) { AutoReconnect = false, PingInterval = TimeSpan.Zero });
                try
                {
                    Sync.Run(() => client.ConnectAsync());
                    Assert.IsNull(server.Received[0]["device"], "no device unless one is set");
                    Assert.IsNull(client.GazeProfile);
                    Assert.IsFalse(client.IdealAccepted);
                    Assert.AreEqual(0, client.IdealImageSize);
                }
                finally { client.Dispose(); }
            }
        }

        [Test]
        public void GazeProfile_CalibrationOfAResumedSelection_IsNotOfferedAnother()
        {
            Assert.IsTrue(GazeProfiles.IsCalibrated(GazeProfiles.Participant));
            Assert.IsTrue(GazeProfiles.IsCalibrated(GazeProfiles.Calibration));
            Assert.AreEqual("calibration", GazeProfiles.Calibration, "v1.7's welcome.gaze.profile value");
            foreach (string other in new[] { GazeProfiles.None, GazeProfiles.Device, null, "Calibration", "later-name" })
                Assert.IsFalse(GazeProfiles.IsCalibrated(other), other ?? "null");

            foreach (string profile in new[] { "none", "device", "participant", "calibration", null })
                using (var server = new FakeServer())
                {
                    server.Handler = (c, m) =>
                    {
                        if (m.GetString("type") != MessageTypes.Hello) return false;
                        var gaze = new MsgMap { { "max_rate_hz", 120.0 }, { "max_samples_per_batch", 256L }, { "calibration", new List<object> { "nine-point" } } };
                        if (profile != null) gaze.Set("profile", profile);
                        c.Send(FakeServer.Welcome(m.GetInt64("rid"), c.SessionId).Set("protocol_minor", 7L).Set("gaze", gaze));
                        return true;
                    };
                    var client = new OmokageClient(new OmokageClientOptions(server.Url) { AutoReconnect = false, PingInterval = TimeSpan.Zero });
                    try
                    {
                        Assert.IsFalse(client.GazeCalibrated, "before a welcome");
                        Sync.Run(() => client.ConnectAsync());
                        Assert.AreEqual(profile, client.GazeProfile, "welcome.gaze.profile as sent");
                        Assert.AreEqual(profile == "participant" || profile == "calibration", client.GazeCalibrated, profile ?? "null");
                        Assert.IsTrue(client.CalibrationAccepted, "the server can still calibrate: a user may ask");
                    }
                    finally { client.Dispose(); }
                }
        }
    }
}
