using System.Collections.Generic;
using Omokage.Client;
using UnityEngine;

namespace Omokage.Client.Components
{
    /// <summary>
    /// Samples head pose and eye gaze at a fixed rate into a ring buffer, ready for the coming gaze work
    /// (inferring preference from where the user looks in the grid).
    /// <para><b>It sends nothing.</b> Protocol v1 has no gaze message: the server would answer
    /// <c>error unknown_type</c>. When the protocol gains one, this component will batch
    /// <see cref="Snapshot"/> into it; until then read the samples locally.</para>
    /// Timestamps are on the server's clock (Unix seconds, from the connection's ping/pong clock offset) once a
    /// ping has completed, so they line up with the server's event log; before that, on the local clock
    /// (<see cref="GazeSample.ServerClock"/> false).
    /// Eye gaze: assign <see cref="EyeGaze"/> a transform driven by the eye-gaze pose (OpenXR "Eye Gaze
    /// Interaction" profile, e.g. through a Tracked Pose Driver on &lt;EyeGaze&gt;/pose). Without it, the head's
    /// forward direction stands in (<see cref="GazeSample.EyeTracked"/> false).
    /// </summary>
    [AddComponentMenu("Omokage/Head Pose and Gaze Reporter")]
    public class OmokageGazeReporter : MonoBehaviour
    {
        [Tooltip("The head (the XR camera). Empty: Camera.main.")]
        [SerializeField] Transform head;

        [Tooltip("A transform that follows the eye-gaze pose (optional).")]
        [SerializeField] Transform eyeGaze;

        [Tooltip("For server-clock timestamps (optional).")]
        [SerializeField] OmokageConnection connection;

        [SerializeField] float sampleRateHz = 60f;

        [Tooltip("Samples kept (the oldest are dropped): 3600 = one minute at 60 Hz.")]
        [SerializeField] int capacity = 3600;

        [Tooltip("How far the gaze ray looks for a candidate tile.")]
        [SerializeField] float maxDistance = 10f;

        RingBuffer<GazeSample> _samples;
        double _accumulated;

        public Transform Head { get { return head; } set { head = value; } }

        public Transform EyeGaze { get { return eyeGaze; } set { eyeGaze = value; } }

        public OmokageConnection Connection { get { return connection; } set { connection = value; } }

        /// <summary>The buffer, oldest first (main thread only).</summary>
        public RingBuffer<GazeSample> Samples
        {
            get
            {
                if (_samples == null) _samples = new RingBuffer<GazeSample>(Mathf.Max(1, capacity));
                return _samples;
            }
        }

        /// <summary>A copy of the buffered samples, oldest first.</summary>
        public List<GazeSample> Snapshot() { return Samples.ToList(); }

        void Update()
        {
            if (sampleRateHz <= 0f) return;
            double period = 1.0 / sampleRateHz;
            _accumulated += Time.unscaledDeltaTime;
            if (_accumulated < period) return;
            _accumulated = System.Math.Min(_accumulated - period, period);  // no bursts after a hitch
            SampleNow();
        }

        /// <summary>Takes one sample now and buffers it.</summary>
        public GazeSample SampleNow()
        {
            var sample = new GazeSample { ItemId = -1 };
            var client = connection != null ? connection.Client : null;
            if (client != null && client.Clock.HasEstimate)
            {
                sample.Time = client.Clock.ServerNow();
                sample.ServerClock = true;
            }
            else
            {
                sample.Time = ClockSync.LocalNow();
            }

            Transform h = head;
            if (h == null && Camera.main != null) h = Camera.main.transform;
            if (h == null) return sample;
            Vector3 p = h.position;
            Quaternion q = h.rotation;
            sample.HeadX = p.x; sample.HeadY = p.y; sample.HeadZ = p.z;
            sample.HeadQx = q.x; sample.HeadQy = q.y; sample.HeadQz = q.z; sample.HeadQw = q.w;

            bool tracked = eyeGaze != null && eyeGaze.gameObject.activeInHierarchy;
            Vector3 origin = tracked ? eyeGaze.position : p;
            Vector3 direction = tracked ? eyeGaze.forward : h.forward;
            sample.EyeTracked = tracked;
            sample.GazeX = direction.x; sample.GazeY = direction.y; sample.GazeZ = direction.z;

            RaycastHit hit;
            if (Physics.Raycast(new Ray(origin, direction), out hit, maxDistance) && hit.collider != null)
            {
                var tile = hit.collider.GetComponentInParent<CandidateTile>();
                if (tile != null && tile.Item != null) sample.ItemId = tile.Item.Id;
            }
            Samples.Add(sample);
            return sample;
        }
    }
}
