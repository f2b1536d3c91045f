using System;
using System.Threading.Tasks;
using Omokage.Client;
using UnityEngine;
using UnityEngine.Events;

namespace Omokage.Client.Components
{
    /// <summary>Which gaze a calibration fits.</summary>
    public enum CalibrationSource
    {
        /// <summary>Eye gaze (the default): needs an eye tracker that delivers a pose (<see cref="OmokageGazeReporter.EyeTracked"/>).</summary>
        Eye,
        /// <summary>Head gaze (e.g. in the Editor with the XR Device Simulator, where the head is the only gaze).</summary>
        Head,
    }

    /// <summary>
    /// Gaze calibration (protocol v1.4; v1.5 cancel): shows targets one at a time while the gaze sender streams gaze, and lets the server fit
    /// a correction that it applies to every later gaze sample of the session (for a study participant, of their later
    /// sessions too).
    /// <list type="bullet">
    /// <item><see cref="Begin"/> sends <c>calibrate.begin</c> (<see cref="Pattern"/>, <see cref="Source"/>) and gets the targets;
    /// each is shown for its settle time (it shrinks from <c>settleScale</c> times its size while the eyes settle) and its
    /// dwell time (<see cref="CalibrationRun"/>, on the server's clock).</item>
    /// <item>A target is drawn <c>distance_m</c> from the viewer (the gaze sender's head, or <c>viewer</c>), every frame from
    /// where the viewer is, along its direction in the scene frame: yaw 0, pitch 0 is Unity's +z (straight ahead, where the
    /// sample puts the grid; <see cref="SceneFrame"/>). Assign your own small object as <c>target</c>, or a sphere is built
    /// (no collider, so it never blocks a pointer).</item>
    /// <item>Meanwhile <see cref="OmokageGazeReporter.Calibrating"/> keeps the gaze sender streaming with or without a grid
    /// (without hits: the samples are the calibration's). At the end the pending batch is flushed and <c>calibrate.end</c>
    /// says when each target was shown: <see cref="onCalibrated"/> (accuracy, precision in degrees) or, through
    /// <see cref="Begin"/>, <see cref="onCalibrationFailed"/> (<c>calibration_failed</c>: the previous correction stays).</item>
    /// </list>
    /// <see cref="Cancel"/> stops a run: the server's calibration is abandoned with <c>calibrate.cancel</c> (protocol v1.5; its
    /// samples are dropped, <see cref="Cancelled"/> says how many), so the previous correction stays. (A server older than
    /// v1.5 has no cancel: there the run is ended with a <c>calibrate.end</c> it must refuse, to the same effect.) A lost
    /// connection ends the run as failed (the new server session is not calibrating). Hide the grid from
    /// <see cref="onStarted"/> if it distracts.
    /// </summary>
    [AddComponentMenu("Omokage/Gaze Calibration")]
    public class OmokageCalibration : MonoBehaviour
    {
        [SerializeField] OmokageConnection connection;

        [Tooltip("The gaze sender that streams gaze while the targets are shown (empty: found in the scene).")]
        [SerializeField] OmokageGazeReporter gazeReporter;

        [Tooltip("Which gaze the server fits: eye gaze (needs an eye tracker) or head gaze.")]
        [SerializeField] CalibrationSource source = CalibrationSource.Eye;

        [Tooltip("One of the server's patterns (welcome.gaze.calibration), e.g. nine-point or five-point. Empty: the server's default.")]
        [SerializeField] string pattern = "";

        [Tooltip("The object shown at each target (a small sphere or dot that looks the same from the viewer). Empty: a sphere is built.")]
        [SerializeField] Transform target;

        [Tooltip("Where the targets are seen from. Empty: the gaze sender's head (the main camera).")]
        [SerializeField] Transform viewer;

        [Tooltip("Diameter of the built sphere in metres (0.03 m at 1.5 m is about 1.1°).")]
        [SerializeField] float targetSize = 0.03f;

        [Tooltip("A target appears this many times larger and shrinks to its size while the eyes settle (1: no shrinking).")]
        [SerializeField] float settleScale = 2.5f;

        [Tooltip("Material of the built sphere (an unlit one stands out best).")]
        [SerializeField] Material targetMaterial;

        [Tooltip("The server sent the targets and the first is shown (e.g. hide the grid here).")]
        public UnityEvent onStarted = new UnityEvent();

        [Tooltip("The server fitted a correction, applied from now on: (accuracy, precision) in degrees.")]
        public OmokageCalibratedEvent onCalibrated = new OmokageCalibratedEvent();

        [Tooltip("Begin failed: calibration_failed (too few samples, targets not looked at, accuracy worse than 3°; the previous " +
                 "correction stays), no eye gaze, not connected, …: (code, message for people).")]
        public OmokageErrorEvent onCalibrationFailed = new OmokageErrorEvent();

        CalibrationRun _run;
        OmokageClient _client;
        string _session;
        TaskCompletionSource<bool> _showing;
        Vector3 _restScale = new Vector3(1f, 1f, 1f);
        bool _running;
        bool _cancelled;  // Cancel came before the targets did

        public OmokageConnection Connection { get { return connection; } set { connection = value; } }

        public OmokageGazeReporter GazeReporter { get { return gazeReporter; } set { gazeReporter = value; } }

        public CalibrationSource Source { get { return source; } set { source = value; } }

        /// <summary>The pattern asked for (null or empty: the server's default).</summary>
        public string Pattern { get { return pattern; } set { pattern = value; } }

        /// <summary>The object shown at each target (inactive between runs).</summary>
        public Transform Target { get { return target; } }

        /// <summary>Where the targets are seen from (null: the gaze sender's head, or the main camera).</summary>
        public Transform Viewer { get { return viewer; } set { viewer = value; } }

        /// <summary>A calibration runs (from <see cref="BeginAsync"/> until its reply).</summary>
        public bool Running { get { return _running; } }

        /// <summary>The current (or last) run: which target is shown, and when each was (engine-free).</summary>
        public CalibrationRun Run { get { return _run; } }

        /// <summary>The last calibration the server fitted on this component (null before one).</summary>
        public CalibratedMessage LastResult { get; private set; }

        /// <summary>The server fitted a correction (main thread).</summary>
        public event Action<CalibratedMessage> Calibrated;

        /// <summary><see cref="Begin"/> failed (main thread).</summary>
        public event Action<OmokageError> Failed;

        /// <summary>A run stopped by <see cref="Cancel"/> was abandoned on the server (protocol v1.5 <c>calibration.cancelled</c>:
        /// how many samples it dropped); main thread. Not raised by a server older than v1.5.</summary>
        public event Action<CalibrationCancelledMessage> Cancelled;

        void Awake()
        {
            if (gazeReporter == null) gazeReporter = FindObjectOfType<OmokageGazeReporter>();
            if (connection == null && gazeReporter != null) connection = gazeReporter.Connection;
            if (connection == null) connection = FindObjectOfType<OmokageConnection>();
            if (target == null) BuildTarget();
            _restScale = target.localScale;
            target.gameObject.SetActive(false);
        }

        void BuildTarget()
        {
            var sphere = GameObject.CreatePrimitive(PrimitiveType.Sphere);
            sphere.name = "Calibration Target";
            Destroy(sphere.GetComponent<Collider>());  // never in the way of a pointer's ray
            sphere.transform.SetParent(transform, false);
            float size = Mathf.Max(0.001f, targetSize);
            sphere.transform.localScale = new Vector3(size, size, size);
            if (targetMaterial != null) sphere.GetComponent<Renderer>().sharedMaterial = targetMaterial;
            target = sphere.transform;
        }

        void OnDisable() { Cancel(); }

        /// <summary>Runs a calibration (for UnityEvents and buttons): <see cref="BeginAsync"/>, failures to
        /// <see cref="onCalibrationFailed"/> / <see cref="Failed"/>.</summary>
        public void Begin() { TaskObserver.Observe(BeginAsync(), e => { if (this != null) Fail(OmokageError.From(e)); }); }

        /// <summary>Stops a running calibration: <c>calibrate.cancel</c> (v1.5) goes to the server, nothing is fitted and the
        /// previous correction stays (<see cref="Cancelled"/> when the server confirms). Its task is cancelled.</summary>
        public void Cancel()
        {
            if (!_running) return;
            _cancelled = true;
            if (_showing != null) _showing.TrySetCanceled();  // here, not in Update: a disabled component gets no Update
        }

        /// <summary>
        /// Runs one calibration: <c>calibrate.begin</c>, the targets one at a time while the gaze sender streams, then
        /// <c>calibrate.end</c>. Returns the server's <see cref="CalibratedMessage"/> (also raised as <see cref="onCalibrated"/>);
        /// throws <see cref="OmokageServerException"/> with <see cref="ErrorCodes.CalibrationFailed"/> when the server could not
        /// fit one (the previous correction stays), <see cref="OmokageConnectionException"/> when not connected or the connection
        /// is lost meanwhile, <see cref="InvalidOperationException"/> when a run is going on, there is no gaze sender, the server
        /// cannot calibrate, or eye gaze is asked for and none is tracked, and <see cref="OperationCanceledException"/> after
        /// <see cref="Cancel"/>.
        /// </summary>
        public async Task<CalibratedMessage> BeginAsync()
        {
            if (_running) throw new InvalidOperationException("a calibration is running already");
            OmokageClient client = connection != null ? connection.Client : null;
            if (client == null || !client.IsConnected) throw new OmokageConnectionException("not connected: a calibration needs the server");
            if (gazeReporter == null) throw new InvalidOperationException("no gaze sender (OmokageGazeReporter) streams the gaze to calibrate");
            if (!client.CalibrationAccepted)
                throw new InvalidOperationException("the server cannot calibrate (no welcome.gaze.calibration: it has no calibration " +
                                                    "patterns, or speaks protocol 1.3 or older)");
            if (source == CalibrationSource.Eye && !gazeReporter.EyeTracked)
                throw new InvalidOperationException("no eye gaze: the eye tracker delivers no pose (enable the OpenXR Eye Gaze " +
                                                    "Interaction profile and ask for the eye-tracking permission), or calibrate head gaze");
            _running = true;
            _cancelled = false;
            gazeReporter.Calibrating = true;
            try
            {
                if (!client.Clock.HasEstimate) await client.PingAsync();  // samples and intervals are on the server's clock
                double begun = client.Clock.ServerNow();
                CalibrationMessage calibration = await client.CalibrateBeginAsync(
                    string.IsNullOrEmpty(pattern) ? null : pattern, source == CalibrationSource.Head ? GazeWireSample.Head : GazeWireSample.Eye);
                _client = client;
                _session = client.SessionId;
                _run = new CalibrationRun(calibration);
                _showing = new TaskCompletionSource<bool>();
                if (_cancelled) _showing.TrySetCanceled();
                else
                {
                    onStarted.Invoke();
                    Step();
                }
                try
                {
                    await _showing.Task;  // Update shows the targets until the run is done, lost or cancelled
                }
                catch (OperationCanceledException)
                {
                    await AbandonAsync(client, begun);
                    throw;
                }
                CalibratedMessage result = await client.CalibrateEndAsync(_run.Shown);
                LastResult = result;
                var handler = Calibrated;
                if (handler != null) handler(result);
                onCalibrated.Invoke((float)result.AccuracyDeg, (float)result.PrecisionDeg);
                return result;
            }
            finally
            {
                _running = false;
                _showing = null;
                if (gazeReporter != null) gazeReporter.Calibrating = false;
                if (target != null) target.gameObject.SetActive(false);
            }
        }

        // v1.5: calibrate.cancel drops the calibration's samples and keeps the correction in force. A v1.4 server has no
        // cancel: an interval an hour before the calibration began holds no sample, so it refuses the fit
        // (calibration_failed), ends the calibration and keeps the previous correction.
        async Task AbandonAsync(OmokageClient client, double begun)
        {
            var welcome = client.Welcome;
            try
            {
                if (welcome != null && welcome.Supports(5))
                {
                    CalibrationCancelledMessage cancelled = await client.CalibrateCancelAsync();
                    var handler = Cancelled;
                    if (handler != null && this != null) handler(cancelled);
                }
                else await client.CalibrateEndAsync(new[] { new CalibrationShown(0, begun - 3600, begun - 3599) });
            }
            catch (OmokageException) { }  // wrong_state: it had ended already; or the link is gone (then so is the calibration)
        }

        void Update()
        {
            if (!_running || _showing == null || _showing.Task.IsCompleted) return;
            if (connection == null || connection.Client != _client || !_client.IsConnected || _client.SessionId != _session)
            {
                _showing.TrySetException(new OmokageConnectionException("the connection was lost during the calibration (a new " +
                                                                        "server session is not calibrating); run it again"));
                return;
            }
            Step();
        }

        // advances the run to the server's now and places the target (allocates nothing)
        void Step()
        {
            if (_run.Update(_client.Clock.ServerNow()) == CalibrationPhase.Done)
            {
                target.gameObject.SetActive(false);
                _showing.TrySetResult(true);
                return;
            }
            Vector3 from = ViewerPosition();
            float d = (float)_run.DistanceM;
            // the run's direction is in the scene frame: z mirrored into Unity's world (SceneFrame)
            target.position = new Vector3(from.x + d * (float)_run.X, from.y + d * (float)_run.Y, from.z - d * (float)_run.Z);
            float k = 1f + (Mathf.Max(1f, settleScale) - 1f) * (1f - (float)_run.SettleProgress);
            target.localScale = new Vector3(_restScale.x * k, _restScale.y * k, _restScale.z * k);
            if (!target.gameObject.activeInHierarchy) target.gameObject.SetActive(true);
        }

        Vector3 ViewerPosition()
        {
            Transform v = viewer;
            if (v == null && gazeReporter != null) v = gazeReporter.Head;
            if (v == null && Camera.main != null) v = Camera.main.transform;
            return v != null ? v.position : Vector3.zero;
        }

        void Fail(OmokageError error)
        {
            Debug.LogWarning("[omokage] calibration: " + error);
            var handler = Failed;
            if (handler != null) handler(error);
            onCalibrationFailed.Invoke(error.Code, error.Message);
        }
    }
}
