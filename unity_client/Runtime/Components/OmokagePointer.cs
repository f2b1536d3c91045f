using UnityEngine;

namespace Omokage.Client.Components
{
    /// <summary>
    /// Points a ray (Physics.Raycast) from a controller or from the head at <see cref="IOmokageSelectable"/> targets
    /// (tiles, buttons; on the hit collider or its parents). Dwelling on a target for <see cref="DwellSeconds"/>
    /// <em>arms</em> it (it lights up); it never selects. The user commits with a press: bind the controller's trigger
    /// (or a confirm button) to <see cref="SelectHovered"/>. With <see cref="RequireArmed"/> (for head gaze) a press
    /// commits only an armed target. After a commit, and whenever a new grid appears under the pointer, nothing is armed
    /// until the pointer leaves the target and comes back. No dependency on an XR toolkit: put it on the controller's
    /// ray origin, or on the camera for head gaze; or turn off <see cref="UseRaycast"/> and feed
    /// <see cref="PointAt(IOmokageSelectable, float)"/> from an XR ray interactor's hover.
    /// <para>Drawing surfaces (<see cref="OmokageSketchPanel"/>) read the same ray: where it hits (<see cref="HasHit"/>,
    /// <see cref="HitPoint"/>) and whether the user holds the press (<see cref="Held"/>: set it from the trigger's state,
    /// pressed and released).</para>
    /// </summary>
    [AddComponentMenu("Omokage/Omokage Pointer")]
    public class OmokagePointer : MonoBehaviour
    {
        [Tooltip("Raycast every frame. Turn off when another system (an XR ray interactor's hover) calls PointAt.")]
        [SerializeField] bool useRaycast = true;

        [Tooltip("Where the ray starts and which way it points (forward). Empty: this transform.")]
        [SerializeField] Transform rayOrigin;

        [SerializeField] float maxDistance = 10f;

        [SerializeField] LayerMask layers = Physics.DefaultRaycastLayers;

        [Tooltip("Dwelling on a target arms it (a visible highlight). Dwell never selects: a press does.")]
        [SerializeField] bool dwellArms = true;

        [Tooltip("Dwell time in seconds before a target is armed.")]
        [SerializeField] float dwellSeconds = 1.2f;

        [Tooltip("A press commits only an armed target (use it for head gaze: a trigger pressed for something else " +
                 "does not pick whatever the head faces).")]
        [SerializeField] bool requireArmed = false;

        PointerSelection _selection;
        bool _hasHit;
        Vector3 _hitPoint;

        PointerSelection Selection
        {
            get
            {
                if (_selection == null) _selection = new PointerSelection(IsAlive);
                _selection.DwellArms = dwellArms;
                _selection.DwellSeconds = dwellSeconds;
                _selection.RequireArmed = requireArmed;
                return _selection;
            }
        }

        /// <summary>What the ray points at (null for nothing).</summary>
        public IOmokageSelectable Hovered { get { return Selection.Hovered; } }

        /// <summary>The hovered target once the dwell armed it (null otherwise).</summary>
        public IOmokageSelectable Armed { get { return Selection.Armed; } }

        public Transform RayOrigin { get { return rayOrigin; } set { rayOrigin = value; } }

        public bool DwellArms { get { return dwellArms; } set { dwellArms = value; } }

        public float DwellSeconds { get { return dwellSeconds; } set { dwellSeconds = value; } }

        public bool RequireArmed { get { return requireArmed; } set { requireArmed = value; } }

        /// <summary>0 … 1 towards arming the hovered target.</summary>
        public float DwellProgress { get { return (float)Selection.DwellProgress; } }

        public bool UseRaycast { get { return useRaycast; } set { useRaycast = value; } }

        /// <summary>Whether the ray hit something this frame (with <see cref="HitPoint"/>): the raycast's hit, or what
        /// <see cref="PointAt(IOmokageSelectable, float, Vector3)"/> was given.</summary>
        public bool HasHit { get { return _hasHit; } }

        /// <summary>Where the ray hit, in world space (valid when <see cref="HasHit"/>).</summary>
        public Vector3 HitPoint { get { return _hitPoint; } }

        /// <summary>Whether the user holds the press (the trigger) now: drawing surfaces draw while it is held. Set it from
        /// your input every frame or on press and release (the sample's <c>OmokageSamplePress</c> does); selection still
        /// commits only on <see cref="SelectHovered"/>.</summary>
        public bool Held { get; set; }

        void Update()
        {
            if (!useRaycast) return;
            var origin = rayOrigin != null ? rayOrigin : transform;
            IOmokageSelectable target = null;
            RaycastHit hit;
            bool hasHit = Physics.Raycast(new Ray(origin.position, origin.forward), out hit, maxDistance, layers) && hit.collider != null;
            if (hasHit) target = hit.collider.GetComponentInParent<IOmokageSelectable>();
            _hasHit = hasHit;
            _hitPoint = hasHit ? hit.point : Vector3.zero;
            Selection.PointAt(target, Time.unscaledDeltaTime);
        }

        void OnDisable()
        {
            Selection.Clear();
            _hasHit = false;
            Held = false;
        }

        /// <summary>
        /// Feeds one frame of pointing (Update does this from its raycast; call it yourself when another system,
        /// e.g. an XR ray interactor's hover, decides what is pointed at, with <see cref="UseRaycast"/> off). No hit point:
        /// a drawing surface does not draw; use the overload with the hit point for those.
        /// </summary>
        public void PointAt(IOmokageSelectable target, float deltaSeconds)
        {
            _hasHit = false;
            Selection.PointAt(target, deltaSeconds);
        }

        /// <summary>One frame of pointing at <paramref name="target"/>, hit at <paramref name="hitPoint"/> (world space):
        /// what another system's ray (e.g. an XR ray interactor's current raycast hit) gives, for drawing surfaces.</summary>
        public void PointAt(IOmokageSelectable target, float deltaSeconds, Vector3 hitPoint)
        {
            _hasHit = target != null;
            _hitPoint = hitPoint;
            Selection.PointAt(target, deltaSeconds);
        }

        /// <summary>The user's press (bind the controller's trigger / select action, or a confirm button): commits what the
        /// ray points at (only if armed, with <see cref="RequireArmed"/>). True when something was committed.</summary>
        public bool SelectHovered() { return Selection.Press(); }

        static bool IsAlive(IOmokageSelectable target)
        {
            var unityObject = target as Object;
            return ReferenceEquals(unityObject, null) || (bool)unityObject;  // a destroyed component is "null" to Unity
        }
    }
}
