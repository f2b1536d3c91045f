using System;
using UnityEngine;

namespace Omokage.Client.Components
{
    /// <summary>
    /// Runs actions posted from network threads on Unity's main thread: <see cref="Post"/> queues them,
    /// <c>Update</c> drains the queue. The client's events arrive on thread-pool threads, where touching
    /// Unity objects is not allowed; every component of this package posts them here first.
    /// One instance lives for the whole app (created on demand, kept across scene loads).
    /// </summary>
    [DefaultExecutionOrder(-1000)]
    [DisallowMultipleComponent]
    [AddComponentMenu("Omokage/Omokage Dispatcher")]
    public sealed class OmokageDispatcher : MonoBehaviour
    {
        static readonly MainThreadQueue Queue = new MainThreadQueue();
        static OmokageDispatcher _instance;

        [Tooltip("Most queued actions run per frame (the rest wait for the next frame).")]
        [SerializeField] int maxActionsPerFrame = 256;

        /// <summary>Queues an action for the main thread. Safe from any thread.</summary>
        public static void Post(Action action) { Queue.Post(action); }

        /// <summary>Actions waiting for the next Update.</summary>
        public static int Pending { get { return Queue.Count; } }

        // With "Enter Play Mode Options" (domain reload off) statics survive between plays: actions queued by the
        // last play would run against destroyed objects, and _instance would point at a destroyed dispatcher.
        [RuntimeInitializeOnLoadMethod(RuntimeInitializeLoadType.SubsystemRegistration)]
        static void ResetStatics()
        {
            Queue.Clear();
            _instance = null;
        }

        /// <summary>The dispatcher, created if there is none. Call from the main thread (components do, in Awake).</summary>
        public static OmokageDispatcher EnsureExists()
        {
            if (_instance != null) return _instance;
            var go = new GameObject("Omokage Dispatcher");
            DontDestroyOnLoad(go);
            _instance = go.AddComponent<OmokageDispatcher>();
            return _instance;
        }

        void Awake()
        {
            if (_instance != null && _instance != this)
            {
                Destroy(this);
                return;
            }
            _instance = this;
        }

        void Update()
        {
            Queue.Drain(Mathf.Max(1, maxActionsPerFrame), OnActionFailed);
        }

        static void OnActionFailed(Exception e) { Debug.LogException(e); }

        void OnDestroy()
        {
            if (_instance == this) _instance = null;
        }
    }
}
