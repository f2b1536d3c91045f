using System;
using System.Collections.Generic;
using System.Linq;
using NUnit.Framework;

namespace Omokage.Client.Tests
{
    /// <summary>v1.4 gaze calibration against a real `omokage serve` (OMOKAGE_SERVER_URL; it offers the repository's
    /// calibration/ patterns): a simulated eye whose gaze is off by a known affine distortion looks at each target of a
    /// <see cref="CalibrationRun"/>, and the server's fit recovers it; too few targets is <c>calibration_failed</c> and the
    /// connection goes on; a v1.3 client is not told about calibration. v1.5: <c>calibrate.cancel</c> drops the samples and
    /// ends the calibration; a device in the hello gets its default correction (<c>welcome.gaze.profile</c>).</summary>
    [TestFixture]
    [Category("Live")]
    public class LiveCalibrationTests
    {
        // true (yaw, pitch) = A · measured + b, degrees: the distortion the server must undo (as docs/gaze.md's test)
        static readonly double[,] A = { { 1.06, 0.05 }, { -0.03, 0.93 } };
        static readonly double[] B = { 1.8, -1.2 };
        const double NoiseDeg = 0.3;
        const double SampleHz = 15;  // replayed at once: 9 targets × 1.5 s stay within the server's burst of 256 samples

        readonly LiveClients _clients = new LiveClients();

        OmokageClient Connect(int? minor = Protocol.Minor, Action<OmokageClientOptions> configure = null)
        {
            return _clients.Connect(TestEnv.ServerUrl(), o =>
            {
                o.ProtocolMinor = minor;
                if (configure != null) configure(o);
            });
        }

        [TearDown]
        public void CloseClients() { _clients.CloseAll(); }

        /// <summary>What the distorted eye reports for a true direction: measured = A⁻¹ (true − b).</summary>
        static void Measured(double yaw, double pitch, out double myaw, out double mpitch)
        {
            double det = A[0, 0] * A[1, 1] - A[0, 1] * A[1, 0];
            double ty = yaw - B[0], tp = pitch - B[1];
            myaw = (A[1, 1] * ty - A[0, 1] * tp) / det;
            mpitch = (-A[1, 0] * ty + A[0, 0] * tp) / det;
        }

        static double Gaussian(Random random)
        {
            double u1 = 1.0 - random.NextDouble(), u2 = random.NextDouble();
            return Math.Sqrt(-2 * Math.Log(u1)) * Math.Cos(2 * Math.PI * u2);
        }

        /// <summary>
        /// Runs <paramref name="run"/> over simulated frames at <see cref="SampleHz"/> that ended a second ago (server clock),
        /// until it is done or has shown <paramref name="targets"/> targets: the eye looks at the target shown (at the previous
        /// one for the first 0.2 s of a settle: the saccade), distorted and noisy; its samples go out in batches.
        /// </summary>
        internal static void LookAtTheTargets(OmokageClient client, CalibrationRun run, int targets, Random random)
        {
            double offset = client.Clock.Offset;
            double t = client.Clock.ServerNow() - run.Duration - 1.0 - 0.2 * run.Count;
            int previous = 0, pending = 0;
            while (!run.Done && run.Shown.Count < targets)
            {
                t += 1.0 / SampleHz;
                CalibrationPhase phase = run.Update(t);
                if (phase == CalibrationPhase.Done) break;
                int looked = phase == CalibrationPhase.Settling && t - run.Appeared < 0.2 ? previous : run.Current;
                if (phase == CalibrationPhase.Collecting) previous = run.Current;
                double myaw, mpitch, x, y, z;
                Measured(run.Target(looked).Yaw, run.Target(looked).Pitch, out myaw, out mpitch);
                CalibrationRun.Direction(myaw + NoiseDeg * Gaussian(random), mpitch + NoiseDeg * Gaussian(random), out x, out y, out z);
                Assert.IsTrue(client.Gaze.Record(GazeWireSample.Eye, t - offset, 0.03, 1.6, 0, x, y, z, 1.0, -1), "sample recorded");
                if (++pending == 30)
                {
                    client.FlushGaze();
                    pending = 0;
                }
            }
        }

        [Test]
        public void NinePoints_RecoverAKnownDistortion_WithinHalfADegree()
        {
            var client = Connect();
            var rejected = new List<ErrorMessage>();
            client.GazeRejected += e => { lock (rejected) rejected.Add(e); };
            Assert.That(client.Welcome.ProtocolMinor, Is.GreaterThanOrEqualTo(4), "a v1.4 server (or newer)");
            Assert.That(client.CalibrationPatterns, Has.Member(CalibrationPatterns.NinePoint), "welcome.gaze.calibration");
            Assert.IsTrue(client.CalibrationAccepted);
            Sync.Run(() => client.PingAsync());  // the clock the samples and the intervals are on

            CalibrationMessage calibration = Sync.Run(() => client.CalibrateBeginAsync(CalibrationPatterns.NinePoint, GazeWireSample.Eye));
            Assert.AreEqual(CalibrationPatterns.NinePoint, calibration.Pattern);
            Assert.AreEqual(9, calibration.Targets.Count);
            Assert.That(calibration.DistanceM, Is.GreaterThan(0));

            // uncorrected, the distorted eye is off by degrees: a fit below half a degree is the server's doing
            double raw = calibration.Targets.Average(target =>
            {
                double myaw, mpitch;
                Measured(target.Yaw, target.Pitch, out myaw, out mpitch);
                return Math.Sqrt((myaw - target.Yaw) * (myaw - target.Yaw) + (mpitch - target.Pitch) * (mpitch - target.Pitch));
            });
            Assert.That(raw, Is.GreaterThan(1.5), "the distortion's mean error, degrees");

            var run = new CalibrationRun(calibration);
            LookAtTheTargets(client, run, run.Count, new Random(7));
            Assert.IsTrue(run.Done);
            Assert.AreEqual(9, run.Shown.Count);
            CalibratedMessage calibrated = Sync.Run(() => client.CalibrateEndAsync(run.Shown));  // sends the rest of the gaze first

            Assert.AreEqual(GazeWireSample.Eye, calibrated.Source);
            Assert.AreEqual(9, calibrated.Targets, "every target had enough samples");
            Assert.That(calibrated.AccuracyDeg, Is.LessThan(0.5), "accuracy after the fit, degrees (uncorrected: " + raw.ToString("0.00") + ")");
            Assert.That(calibrated.PrecisionDeg, Is.GreaterThan(0.05).And.LessThan(1.5), "precision (RMS sample to sample), degrees");
            Assert.IsFalse(calibrated.Saved, "no study participant: this session only");
            Assert.That(client.GazeSamplesSent, Is.GreaterThan(150));
            lock (rejected) Assert.IsEmpty(rejected, "no gaze refused: " + string.Join("; ", rejected.Select(e => e.Code + " " + e.Message)));
            Assert.AreEqual(0, client.GazeSamplesDroppedByServer);
        }

        [Test]
        public void TwoTargets_AreCalibrationFailed_AndTheConnectionGoesOn()
        {
            var client = Connect();
            Sync.Run(() => client.PingAsync());
            var badPattern = Assert.Throws<OmokageServerException>(() => Sync.Run(() => client.CalibrateBeginAsync("seventeen-point")));
            Assert.AreEqual(ErrorCodes.BadField, badPattern.Code);
            StringAssert.Contains(CalibrationPatterns.NinePoint, badPattern.ServerMessage, "names the patterns offered");

            CalibrationMessage calibration = Sync.Run(() => client.CalibrateBeginAsync());
            Assert.AreEqual(CalibrationPatterns.NinePoint, calibration.Pattern, "the default pattern");
            var run = new CalibrationRun(calibration);
            LookAtTheTargets(client, run, 2, new Random(11));
            Assert.AreEqual(2, run.Shown.Count, "the user looked away after two targets");
            var failed = Assert.Throws<OmokageServerException>(() => Sync.Run(() => client.CalibrateEndAsync(run.Shown)));
            Assert.AreEqual(ErrorCodes.CalibrationFailed, failed.Code);
            StringAssert.Contains("2 target", failed.ServerMessage, "says why");
            Assert.AreEqual(ErrorCodes.CalibrationFailed, OmokageError.From(failed).Code);

            // the connection goes on: the calibration has ended, a new one can begin, a selection works
            Assert.IsTrue(client.IsConnected);
            Sync.Run(() => client.PingAsync());
            var again = Assert.Throws<OmokageServerException>(() => Sync.Run(() => client.CalibrateEndAsync(run.Shown)));
            Assert.AreEqual(ErrorCodes.WrongState, again.Code, "no calibration begun any more");
            CalibrationMessage five = Sync.Run(() => client.CalibrateBeginAsync(CalibrationPatterns.FivePoint, GazeWireSample.Head));
            Assert.AreEqual(5, five.Targets.Count);

            // what OmokageCalibration.Cancel sends to a server older than v1.5 (which has no cancel): an interval before the
            // calibration began holds no sample, so the server refuses the fit and ends the calibration
            double begun = client.Clock.ServerNow();
            var cancelled = Assert.Throws<OmokageServerException>(() => Sync.Run(() =>
                client.CalibrateEndAsync(new[] { new CalibrationShown(0, begun - 3600, begun - 3599) })));
            Assert.AreEqual(ErrorCodes.CalibrationFailed, cancelled.Code);
            Assert.AreEqual(ErrorCodes.WrongState,
                            Assert.Throws<OmokageServerException>(() => Sync.Run(() => client.CalibrateEndAsync(run.Shown))).Code);

            string algorithm = client.Welcome.Algorithms.Contains("pca") ? "pca" : client.Welcome.Algorithms[0];
            CandidatesMessage grid = Sync.Run(() => client.StartRandomAsync(algorithm, 5));
            Assert.AreEqual(9, grid.Items.Count);
        }

        [Test]
        public void Cancel_DropsTheSamples_AndAFollowingEndIsRefused()
        {
            var client = Connect();
            Sync.Run(() => client.PingAsync());
            var notRunning = Assert.Throws<OmokageServerException>(() => Sync.Run(() => client.CalibrateCancelAsync()));
            Assert.AreEqual(ErrorCodes.WrongState, notRunning.Code, "nothing to cancel before calibrate.begin");

            CalibrationMessage calibration = Sync.Run(() => client.CalibrateBeginAsync(CalibrationPatterns.NinePoint, GazeWireSample.Eye));
            var run = new CalibrationRun(calibration);
            LookAtTheTargets(client, run, 3, new Random(5));  // the user looks at three targets, then takes the headset off
            Assert.AreEqual(3, run.Shown.Count);
            double now = ClockSync.LocalNow();
            for (int i = 0; i < 5; i++)  // the eye wanders while the user reaches for the cancel: not sent yet
                Assert.IsTrue(client.Gaze.Record(GazeWireSample.Eye, now - 0.1 + i * 0.011, 0.03, 1.6, 0, 0.2, 0, -0.98, 1.0, -1));
            long recorded = client.GazeSamplesSent + client.Gaze.Pending;
            Assert.That(client.Gaze.Pending, Is.GreaterThanOrEqualTo(5), "samples still wait to be sent");

            CalibrationCancelledMessage cancelled = Sync.Run(() => client.CalibrateCancelAsync());  // sends those first
            Assert.AreEqual(0, client.Gaze.Pending);
            Assert.AreEqual(recorded, cancelled.Samples, "every sample of the calibration was dropped, the last batch included");
            Assert.That(cancelled.Samples, Is.GreaterThan(30));

            // the calibration is over: its end is refused, and so is a second cancel; nothing was fitted
            var end = Assert.Throws<OmokageServerException>(() => Sync.Run(() => client.CalibrateEndAsync(run.Shown)));
            Assert.AreEqual(ErrorCodes.WrongState, end.Code, "calibrate.end after calibrate.cancel");
            Assert.AreEqual(ErrorCodes.WrongState,
                            Assert.Throws<OmokageServerException>(() => Sync.Run(() => client.CalibrateCancelAsync())).Code);
            Assert.IsTrue(client.IsConnected);

            // a new calibration begins afresh (none of the cancelled one's samples): cancelled at once, it dropped none
            CalibrationMessage again = Sync.Run(() => client.CalibrateBeginAsync(CalibrationPatterns.FivePoint, GazeWireSample.Head));
            Assert.AreEqual(5, again.Targets.Count);
            Assert.AreEqual(0, Sync.Run(() => client.CalibrateCancelAsync()).Samples);
            string algorithm = client.Welcome.Algorithms.Contains("pca") ? "pca" : client.Welcome.Algorithms[0];
            Assert.AreEqual(9, Sync.Run(() => client.StartRandomAsync(algorithm, 5)).Items.Count, "the connection goes on");
        }

        [Test]
        public void ADevice_InTheHello_GetsItsDefaultCorrection()
        {
            var quest = Connect(configure: o => o.Device = HeadsetModels.QuestPro);
            Assert.AreEqual(Protocol.Minor, quest.Welcome.ProtocolMinor, "a server of this version");
            Assert.AreEqual(GazeProfiles.Device, quest.GazeProfile, "welcome.gaze.profile for the repository's calibration/devices/quest-pro.json");

            var plain = Connect();
            Assert.AreEqual(GazeProfiles.None, plain.GazeProfile, "no device, no participant: nothing corrects the gaze");
            var unknown = Connect(configure: o => o.Device = "visor-9000");
            Assert.IsTrue(unknown.IsConnected, "a model the server has no profile for is accepted");
            Assert.AreEqual(GazeProfiles.None, unknown.GazeProfile, "and its gaze goes uncorrected");

            var old = Connect(4, o => o.Device = HeadsetModels.QuestPro);
            Assert.IsNull(old.GazeProfile, "a client that said minor 4 is not told");
            Assert.IsFalse(old.Welcome.Raw.GetMap("gaze").ContainsKey("profile"), "not on the wire either");
            Assert.IsFalse(old.Welcome.Raw.ContainsKey("ideal"));
        }

        [Test]
        public void AV1_3Client_IsNotToldAboutCalibration()
        {
            var old = Connect(3);
            Assert.That(old.Welcome.ProtocolMinor, Is.GreaterThanOrEqualTo(4), "the server's minor, whatever the client's");
            Assert.IsNotNull(old.Welcome.Gaze, "welcome.gaze for a client that announced minor 2 or more");
            Assert.AreEqual(0, old.Welcome.Gaze.Calibration.Count, "a client that said minor 3 never sees welcome.gaze.calibration");
            Assert.IsFalse(old.CalibrationAccepted);
            Assert.IsFalse(old.Welcome.Raw.GetMap("gaze").ContainsKey("calibration"), "not on the wire either");

            var current = Connect();
            Assert.IsTrue(current.Welcome.Raw.GetMap("gaze").ContainsKey("calibration"));
            CollectionAssert.IsSubsetOf(new[] { CalibrationPatterns.FivePoint, CalibrationPatterns.NinePoint }, current.CalibrationPatterns,
                                        "the repository's calibration/ patterns");
        }
    }
}
