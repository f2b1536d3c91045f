using Omokage.Client;
using UnityEngine;

namespace Omokage.Unity
{
    /// <summary>
    /// Points a ray (Physics.Raycast) from a controller or from the head and selects what it hits: by dwell
    /// (pointing at the same face for <see cref="DwellSeconds"/>, default 1.2 s) and/or by calling
    /// <see cref="SelectHovered"/> from the controller's trigger (an Input System action, or an XR ray
    /// interactor's select event). Targets are <see cref="IOmokageSelectable"/> components on the hit collider
    /// or its parents. No dependency on an XR toolkit: put it on the XR controller's ray origin (or the camera for
    /// head-gaze dwell).
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

        [Tooltip("Select by pointing at the same face for dwellSeconds.")]
        [SerializeField] bool dwellToSelect = true;

        [Tooltip("Dwell time in seconds before a selection.")]
        [SerializeField] float dwellSeconds = 1.2f;

        readonly DwellTimer _dwell = new DwellTimer();
        IOmokageSelectable _hovered;

        /// <summary>What the ray points at (null for nothing).</summary>
        public IOmokageSelectable Hovered { get { return _hovered; } }

        public Transform RayOrigin { get { return rayOrigin; } set { rayOrigin = value; } }

        public bool DwellToSelect { get { return dwellToSelect; } set { dwellToSelect = value; } }

        public float DwellSeconds { get { return dwellSeconds; } set { dwellSeconds = value; } }

        /// <summary>0 … 1 towards a dwell selection.</summary>
        public float DwellProgress { get { return (float)_dwell.Progress; } }

        public bool UseRaycast { get { return useRaycast; } set { useRaycast = value; } }

        void Update()
        {
            if (!useRaycast) return;
            var origin = rayOrigin != null ? rayOrigin : transform;
            IOmokageSelectable target = null;
            RaycastHit hit;
            if (Physics.Raycast(new Ray(origin.position, origin.forward), out hit, maxDistance, layers) && hit.collider != null)
                target = hit.collider.GetComponentInParent<IOmokageSelectable>();
            PointAt(target, Time.unscaledDeltaTime);
        }

        /// <summary>
        /// Feeds one frame of pointing (Update does this from its raycast; call it yourself when another system,
        /// e.g. an XR ray interactor's hover, decides what is pointed at, with <see cref="UseRaycast"/> off).
        /// </summary>
        public void PointAt(IOmokageSelectable target, float deltaSeconds)
        {
            if (!ReferenceEquals(target, _hovered))
            {
                if (IsAlive(_hovered)) _hovered.OnPointerHover(false, 0f);
                _hovered = target;
            }
            if (!IsAlive(target))
            {
                _hovered = null;
                _dwell.Update(null, deltaSeconds);
                return;
            }
            _dwell.DwellSeconds = dwellSeconds;
            object key = target.IsSelectable ? target.DwellKey ?? target : null;  // a busy target does not dwell
            bool fire = _dwell.Update(key, deltaSeconds) && dwellToSelect;
            target.OnPointerHover(true, dwellToSelect && key != null ? (float)_dwell.Progress : 0f);
            if (fire) target.OnPointerSelect();
        }

        /// <summary>Selects what the ray points at now: bind the controller's trigger / select action to this.</summary>
        public void SelectHovered()
        {
            if (IsAlive(_hovered) && _hovered.IsSelectable) _hovered.OnPointerSelect();
        }

        static bool IsAlive(IOmokageSelectable target)
        {
            if (target == null) return false;
            var unityObject = target as Object;
            return ReferenceEquals(unityObject, null) || (bool)unityObject;  // a destroyed component is "null" to Unity
        }
    }
}
