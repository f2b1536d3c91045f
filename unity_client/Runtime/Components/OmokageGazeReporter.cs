using System.Collections.Generic;
using Omokage.Client;
using UnityEngine;
using UnityEngine.XR;

namespace Omokage.Client.Components
{
    /// <summary>Which gaze sources the sender uses besides the head.</summary>
    public enum EyeGazeMode
    {
        /// <summary>Head gaze only.</summary>
        Off,
        /// <summary>Eye gaze too, when an eye-gaze device delivers a tracked pose (OpenXR "Eye Gaze Interaction" enabled
        /// and the user granted the eye-tracking permission) or <see cref="OmokageGazeReporter.EyeGaze"/> is assigned and
        /// active; head gaze is always sent as well.</summary>
        WhenAvailable,
    }

    /// <summary>
    /// Sends where the user looks to the server (protocol v1.2 <c>gaze.batch</c>, docs/gaze.md), <b>by default</b>:
    /// <list type="bullet">
    /// <item><b>Head gaze</b> every frame (the headset's rate): the head's (camera's) forward ray, with the client's own hit
    /// {panel, u, v} against the grid's tiles (panel k = tile k = <c>candidates.items[k]</c>).</item>
    /// <item><b>Eye gaze</b> too (<see cref="EyeGazeMode.WhenAvailable"/>), when an eye-gaze device delivers a tracked pose
    /// (the OpenXR Eye Gaze Interaction profile; on Quest Pro the app must hold the eye-tracking permission, which the sender
    /// asks for once on an Android player (<see cref="EyeTrackingPermission"/>); until it is granted only head gaze goes out)
    /// or an <see cref="EyeGaze"/> transform is assigned. An untracked eye (a blink) is skipped: a gap, not a stale ray.
    /// <see cref="EyeGazePermitted"/> lets the app veto it (consent).</item>
    /// <item>Samples are stamped on the server's clock (local clock + the ping/pong offset), buffered in the client's
    /// preallocated <see cref="OmokageClient.Gaze"/> ring and sent as one <c>gaze.batch</c> every
    /// <c>flushIntervalSeconds</c> (100 ms). The client sends the pending batch before every choose, skip and decide.</item>
    /// <item><c>layout</c> (the 9 tiles' poses) is sent when a grid is shown, whenever the tiles move, and after a
    /// reconnection.</item>
    /// <item>Rays and panels go out in the protocol's scene frame (−z forward, +y up): Unity's world with z mirrored
    /// (<see cref="SceneFrame"/>), so that the server's yaw and pitch, and a calibration's correction, are the user's.</item>
    /// </list>
    /// It sends only while the app has focus, the server takes gaze (<see cref="OmokageClient.GazeAccepted"/>) and a grid is
    /// shown, undecided and not <see cref="CandidateGrid.Busy"/> (a choose or skip in flight), or while a calibration runs (<see cref="Calibrating"/>, set by <see cref="OmokageCalibration"/>: then
    /// without hits, since the samples belong to no grid). The per-frame path allocates nothing. It also keeps the last
    /// <c>capacity</c> samples locally (<see cref="Samples"/>) with the face under the head or eye ray.
    /// Tiles: each tile's image renderer is taken to be a unit quad (as built tiles are): the panel's size is its lossy scale.
    /// </summary>
    [AddComponentMenu("Omokage/Gaze Sender")]
    public class OmokageGazeReporter : MonoBehaviour
    {
        [Tooltip("The head (the XR camera). Empty: Camera.main.")]
        [SerializeField] Transform head;

        [Tooltip("A transform that follows the eye-gaze pose (optional; e.g. a Tracked Pose Driver on <EyeGaze>/pose).")]
        [SerializeField] Transform eyeGaze;

        [Tooltip("The XR tracking space (the camera's parent by default): eye-gaze device poses are relative to it.")]
        [SerializeField] Transform trackingSpace;

        [SerializeField] OmokageConnection connection;

        [Tooltip("The grid whose tiles the gaze is cast against (empty: found in the scene).")]
        [SerializeField] CandidateGrid grid;

        [Tooltip("Send gaze to the server (when it takes gaze). Off: only the local buffer is filled.")]
        [SerializeField] bool sendGaze = true;

        [SerializeField] EyeGazeMode eyeGazeMode = EyeGazeMode.WhenAvailable;

        [Tooltip("How often the pending samples go out as one gaze.batch (seconds; the protocol suggests 0.05 to 0.1).")]
        [SerializeField] float flushIntervalSeconds = 0.1f;

        [Tooltip("Samples kept locally (the oldest are dropped): 3600 = one minute at 60 Hz.")]
        [SerializeField] int capacity = 3600;

        static readonly InputFeatureUsage<Vector3> GazePosition = new InputFeatureUsage<Vector3>("gazePosition");
        static readonly InputFeatureUsage<Quaternion> GazeRotation = new InputFeatureUsage<Quaternion>("gazeRotation");

        readonly GazeSender _sender = new GazeSender();
        readonly List<InputDevice> _devices = new List<InputDevice>();
        RingBuffer<GazeSample> _samples;
        InputDevice _eyeDevice;
        float _nextDeviceLookup;
        OmokageClient _client;

        public Transform Head { get { return head; } set { head = value; } }

        public Transform EyeGaze { get { return eyeGaze; } set { eyeGaze = value; } }

        public OmokageConnection Connection { get { return connection; } set { connection = value; } }

        public CandidateGrid Grid { get { return grid; } set { grid = value; } }

        public bool SendGaze { get { return sendGaze; } set { sendGaze = value; } }

        public EyeGazeMode EyeGazeMode { get { return eyeGazeMode; } set { eyeGazeMode = value; } }

        /// <summary>The app's veto on eye gaze (e.g. the participant's consent); null: permitted when available.</summary>
        public System.Func<bool> EyeGazePermitted { get; set; }

        /// <summary>The Android runtime permission eye gaze needs (Quest Pro: <c>com.oculus.permission.EYE_TRACKING</c>, which the
        /// manifest must declare): on an Android player it is requested once when eye gaze is wanted and permitted, and head
        /// gaze goes out alone until the user grants it. Null or empty: none is asked for (another headset's eye tracking).</summary>
        public string EyeTrackingPermission { get; set; } = "com.oculus.permission.EYE_TRACKING";

        /// <summary>The engine-free sender (panels, layout state, last hits).</summary>
        public GazeSender Sender { get { return _sender; } }

        /// <summary>Whether this frame's sample included eye gaze.</summary>
        public bool EyeTracked { get; private set; }

        /// <summary>v1.4: a calibration runs (<see cref="OmokageCalibration"/> sets it): gaze is sent with or without a grid,
        /// without the client's hits against the tiles and without <c>layout</c> (the server gives it to the calibration).</summary>
        public bool Calibrating { get; set; }

        /// <summary>The local buffer, oldest first (main thread only).</summary>
        public RingBuffer<GazeSample> Samples
        {
            get
            {
                if (_samples == null) _samples = new RingBuffer<GazeSample>(Mathf.Max(1, capacity));
                return _samples;
            }
        }

        /// <summary>A copy of the locally buffered samples, oldest first.</summary>
        public List<GazeSample> Snapshot() { return Samples.ToList(); }

        void Awake()
        {
            if (grid == null) grid = FindObjectOfType<CandidateGrid>();
            if (connection == null && grid != null) connection = grid.Connection;
        }

        void Update() { SampleNow(); }

        /// <summary>Takes this frame's sample(s): records them locally and, while sending, into the client's gaze stream;
        /// sends the layout and the batch when due.</summary>
        public GazeSample SampleNow()
        {
            var sample = new GazeSample { ItemId = -1 };
            double now = ClockSync.LocalNow();
            var client = connection != null ? connection.Client : null;
            if (client != _client)
            {
                _client = client;
                _sender.ForgetLayout();
            }
            double offset = 0;
            sample.ServerClock = client != null && client.Clock.TryGetOffset(out offset);
            sample.Time = now + offset;

            Transform h = head;
            if (h == null && Camera.main != null) h = Camera.main.transform;
            if (h == null) return sample;
            // not while a choose or skip is in flight (Busy): its grid's gaze went out with it, and the next grid's
            // begins when that grid is shown; not while the app lacks focus (the system menu, the browser over it)
            bool gridShown = grid != null && grid.Current != null && grid.LastDecision == null && !grid.PreviewingSketch && !grid.Busy;
            bool sending = sendGaze && Application.isFocused && client != null && client.IsConnected && client.GazeAccepted &&
                           (gridShown || Calibrating);
            UpdatePanels();
            if (sending && !Calibrating && _sender.LayoutDue(client.SessionId))
                TaskObserver.Observe(client.SendLayoutAsync(_sender.TakeLayout(client.SessionId)), null);

            Vector3 p = h.position;
            Quaternion q = h.rotation;
            Vector3 f = h.forward;
            sample.HeadX = p.x; sample.HeadY = p.y; sample.HeadZ = p.z;
            sample.HeadQx = q.x; sample.HeadQy = q.y; sample.HeadQz = q.z; sample.HeadQw = q.w;

            Vector3 eo, ed;
            EyeTracked = TryEyeRay(h, out eo, out ed);
            Vector3 gaze = EyeTracked ? ed : f;
            sample.EyeTracked = EyeTracked;
            sample.GazeX = gaze.x; sample.GazeY = gaze.y; sample.GazeZ = gaze.z;

            // the scene frame: Unity's world with z mirrored (SceneFrame)
            bool due = _sender.Frame(sending ? client.Gaze : Idle, now, p.x, p.y, -p.z, f.x, f.y, -f.z,
                                     EyeTracked, eo.x, eo.y, -eo.z, ed.x, ed.y, -ed.z, 1.0);
            int panel = EyeTracked ? _sender.LastEyePanel : _sender.LastHeadPanel;
            if (panel >= 0 && grid != null && panel < grid.Tiles.Count && grid.Tiles[panel] != null && grid.Tiles[panel].Item != null)
                sample.ItemId = grid.Tiles[panel].Item.Id;
            Samples.Add(sample);

            if (client != null)
            {
                if (!sending) client.Gaze.Clear();  // nothing on screen to look at: no stale samples for the next grid
                else if (due) client.FlushGaze();
                client.Gaze.FlushInterval = Mathf.Max(0.02f, flushIntervalSeconds);
            }
            return sample;
        }

        // a stream that is never sent, for frames without a client (keeps Frame allocation-free and simple)
        static GazeStream _idle;
        static GazeStream Idle
        {
            get
            {
                if (_idle == null) _idle = new GazeStream(new ClockSync(), 16);
                return _idle;
            }
        }

        void UpdatePanels()
        {
            if (grid == null || grid.Current == null || grid.PreviewingSketch || Calibrating)
            {
                _sender.SetPanelCount(0);
                return;
            }
            var tiles = grid.Tiles;
            int n = System.Math.Min(grid.Current.Items.Count, tiles.Count);
            _sender.SetPanelCount(n);
            for (int k = 0; k < n; k++)
            {
                var tile = tiles[k];
                if (tile == null) continue;
                Transform t = tile.PanelTransform;
                Vector3 pos = t.position;
                Quaternion rot = t.rotation;
                Vector3 scale = t.lossyScale;
                _sender.SetPanel(k, SceneFrame.Mirror(new PanelPose
                {
                    Px = pos.x, Py = pos.y, Pz = pos.z, Qx = rot.x, Qy = rot.y, Qz = rot.z, Qw = rot.w,
                    Width = System.Math.Abs(scale.x), Height = System.Math.Abs(scale.y),
                }));
            }
        }

        bool TryEyeRay(Transform h, out Vector3 origin, out Vector3 direction)
        {
            origin = Vector3.zero;
            direction = Vector3.forward;
            if (eyeGazeMode == EyeGazeMode.Off) return false;
            if (EyeGazePermitted != null && !EyeGazePermitted()) return false;
            if (!EyeTrackingGranted()) return false;  // head gaze until the user grants the permission
            if (eyeGaze != null && eyeGaze.gameObject.activeInHierarchy)
            {
                origin = eyeGaze.position;
                direction = eyeGaze.forward;
                return true;
            }
            if (!_eyeDevice.isValid)
            {
                if (Time.unscaledTime < _nextDeviceLookup) return false;
                _nextDeviceLookup = Time.unscaledTime + 1f;  // look for the device once a second, not every frame
                InputDevices.GetDevicesWithCharacteristics(InputDeviceCharacteristics.EyeTracking, _devices);
                if (_devices.Count == 0) return false;
                _eyeDevice = _devices[0];
            }
            // an untracked eye (a blink, the headset off the face) is a gap, not the last or a zero pose: a grid's dwell and a
            // calibration must not take it. A device that does not report its tracking is taken by its pose alone.
            bool tracked;
            InputTrackingState state;
            if (_eyeDevice.TryGetFeatureValue(CommonUsages.isTracked, out tracked) && !tracked) return false;
            if (_eyeDevice.TryGetFeatureValue(CommonUsages.trackingState, out state) && (state & InputTrackingState.Rotation) == 0) return false;
            Vector3 position;
            Quaternion rotation;
            if (!_eyeDevice.TryGetFeatureValue(GazePosition, out position) || !_eyeDevice.TryGetFeatureValue(GazeRotation, out rotation))
                return false;  // not tracked now, or not permitted: the device delivers nothing
            // no pose yet: a zero quaternion would turn forward into a zero ray
            if (rotation.x * rotation.x + rotation.y * rotation.y + rotation.z * rotation.z + rotation.w * rotation.w < 0.5f) return false;
            Transform space = trackingSpace != null ? trackingSpace : h.parent;
            origin = space != null ? space.TransformPoint(position) : position;
            Vector3 local = rotation * Vector3.forward;
            direction = space != null ? space.TransformDirection(local) : local;
            return true;
        }

#if UNITY_ANDROID && !UNITY_EDITOR
        static bool _eyePermissionAsked;  // once per run: a refusal is the user's answer
        bool _eyePermissionGranted;
        float _nextPermissionCheck;

        // Quest Pro: the eye tracker delivers nothing until the user grants the runtime permission (declared in the
        // manifest). Asked once; checked once a second (a JNI call) until granted, never again after.
        bool EyeTrackingGranted()
        {
            if (_eyePermissionGranted || string.IsNullOrEmpty(EyeTrackingPermission)) return true;
            if (Time.unscaledTime < _nextPermissionCheck) return false;
            _nextPermissionCheck = Time.unscaledTime + 1f;
            _eyePermissionGranted = UnityEngine.Android.Permission.HasUserAuthorizedPermission(EyeTrackingPermission);
            if (!_eyePermissionGranted && !_eyePermissionAsked)
            {
                _eyePermissionAsked = true;
                UnityEngine.Android.Permission.RequestUserPermission(EyeTrackingPermission);
            }
            return _eyePermissionGranted;
        }
#else
        bool EyeTrackingGranted() { return true; }  // no runtime permission outside an Android player
#endif
    }
}
