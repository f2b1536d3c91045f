using System;
using System.Collections.Concurrent;

namespace Omokage.Client
{
    /// <summary>
    /// Actions posted from any thread and run on one thread (Unity's main thread) when it calls
    /// <see cref="Drain"/> (OmokageDispatcher does, every Update). An action that throws is reported to
    /// the error callback and does not stop the others.
    /// </summary>
    public sealed class MainThreadQueue
    {
        readonly ConcurrentQueue<Action> _queue = new ConcurrentQueue<Action>();

        public void Post(Action action)
        {
            if (action == null) throw new ArgumentNullException("action");
            _queue.Enqueue(action);
        }

        public int Count { get { return _queue.Count; } }

        /// <summary>Drops every queued action without running it; returns how many were dropped.</summary>
        public int Clear()
        {
            int dropped = 0;
            Action unused;
            while (_queue.TryDequeue(out unused)) dropped++;
            return dropped;
        }

        /// <summary>Runs the queued actions (at most <paramref name="max"/>, to bound one frame's work); returns how many ran.</summary>
        public int Drain(int max = int.MaxValue, Action<Exception> onError = null)
        {
            int ran = 0;
            Action action;
            while (ran < max && _queue.TryDequeue(out action))
            {
                ran++;
                try { action(); }
                catch (Exception e)
                {
                    if (onError != null) onError(e);
                }
            }
            return ran;
        }
    }
}
