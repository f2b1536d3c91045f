using System;
using System.Collections.Generic;
using System.Threading;
using System.Threading.Tasks;

namespace Omokage.Client
{
    /// <summary>
    /// The v1.3 sketch messages of one <see cref="OmokageClient"/>, and which of them the results include. Sketch messages get
    /// no reply of their own: the server coalesces, and each <c>sketch.result</c> answers the newest sketch message it
    /// includes (with that message's rid), and so covers every sketch message sent before it. Every message sent gets the
    /// next number of one sequence; a result covers the sequence up to its rid's number. A result that covers nothing new
    /// (an older or repeated one), shows a drawing a later <c>sketch.begin</c> replaced, or arrives over an earlier
    /// connection is stale and dropped (it still completes the waiters of the messages it covers). A refused message (an
    /// <c>error</c> with its rid) is covered by no result: its waiters fail with the server's error. Thread-safe.
    /// </summary>
    internal sealed class SketchTracker
    {
        const int RecentCapacity = 256;  // rids remembered for WaitSketchResultAsync (a result covers the older ones)
        const int MaxOutstanding = 1024;  // a server that never answers must not grow this without bound

        struct SentMessage
        {
            public int Rid;
            public long Seq;
        }

        sealed class Waiter
        {
            public long Seq;
            public int Rid;
            public object Link;
            public readonly TaskCompletionSource<SketchResultMessage> Tcs =
                new TaskCompletionSource<SketchResultMessage>(TaskCreationOptions.RunContinuationsAsynchronously);
        }

        readonly object _gate = new object();
        readonly List<SentMessage> _outstanding = new List<SentMessage>();  // sent, not covered, not refused; in order
        readonly SentMessage[] _recent = new SentMessage[RecentCapacity];  // every recent one, covered or not
        readonly ErrorMessage[] _refused = new ErrorMessage[16];
        readonly List<Waiter> _waiters = new List<Waiter>();
        int _recentNext, _refusedNext;
        object _link;
        Exception _lost;   // why the current link went down (null while it is up): a waiter for it fails at once
        long _seq;
        long _covered;
        long _beginSeq;
        long _sent, _results, _ignored, _sharpened;
        SketchResultMessage _latest;
        long _latestSeq;   // the sequence number the latest result covers

        public SketchResultMessage Latest { get { lock (_gate) return _latest; } }

        public bool Pending { get { lock (_gate) return _outstanding.Count > 0; } }

        public long SentCount { get { return Interlocked.Read(ref _sent); } }

        public long Results { get { return Interlocked.Read(ref _results); } }

        public long Ignored { get { return Interlocked.Read(ref _ignored); } }

        /// <summary>A new connection was welcomed: it has no drawing, and whatever the old one sent is moot.</summary>
        public void NewLink(object link)
        {
            lock (_gate)
            {
                _link = link;
                _lost = null;
                _outstanding.Clear();
                Array.Clear(_recent, 0, _recent.Length);
                Array.Clear(_refused, 0, _refused.Length);
                _covered = _seq;
                _beginSeq = _seq;
                _latest = null;
            }
        }

        /// <summary>A sketch message is about to go out over <paramref name="link"/> with <paramref name="rid"/>.</summary>
        public void Sent(object link, int rid, string type)
        {
            lock (_gate)
            {
                if (link != _link) NewLink(link);
                var sent = new SentMessage { Rid = rid, Seq = ++_seq };
                if (type == MessageTypes.SketchBegin) _beginSeq = sent.Seq;
                _outstanding.Add(sent);
                if (_outstanding.Count > MaxOutstanding) _outstanding.RemoveAt(0);
                _recent[_recentNext] = sent;
                _recentNext = (_recentNext + 1) % _recent.Length;
            }
            Interlocked.Increment(ref _sent);
        }

        /// <summary>v1.6: whether a sharper preview is of the result on show (this link's, of the current drawing, the
        /// newest): only then is it raised. A preview that crossed a later <c>sketch.begin</c> on the way is dropped.</summary>
        public bool TakePreview(object link, SketchPreviewMessage preview)
        {
            lock (_gate)
            {
                if (link == _link && _latest != null && _latest.Revision == preview.Revision && _latestSeq >= _beginSeq)
                {
                    Interlocked.Increment(ref _sharpened);
                    return true;
                }
            }
            return false;
        }

        public long Sharpened { get { return Interlocked.Read(ref _sharpened); } }

        /// <summary>Takes a result: true when it is the newest (raise it), false when it is stale (dropped).</summary>
        public bool TakeResult(object link, SketchResultMessage result)
        {
            List<Waiter> done = null;
            bool replaced;
            lock (_gate)
            {
                long seq = result.Rid.HasValue ? RecentSeq(result.Rid.Value) : 0;
                if (link != _link || seq == 0 || seq <= _covered)
                {
                    Interlocked.Increment(ref _ignored);
                    return false;
                }
                _covered = seq;
                replaced = seq < _beginSeq;  // the drawing a later sketch.begin replaced
                if (!replaced)
                {
                    _latest = result;
                    _latestSeq = seq;
                }
                _outstanding.RemoveAll(m => m.Seq <= seq);
                for (int i = _waiters.Count - 1; i >= 0; i--)
                {
                    if (_waiters[i].Seq > seq) continue;
                    if (done == null) done = new List<Waiter>();
                    done.Add(_waiters[i]);
                    _waiters.RemoveAt(i);
                }
            }
            if (done != null)
                foreach (var w in done) w.Tcs.TrySetResult(result);
            if (replaced) Interlocked.Increment(ref _ignored);
            else Interlocked.Increment(ref _results);
            return !replaced;
        }

        /// <summary>Takes an error: true when it names a sketch message of this connection (it was refused).</summary>
        public bool TakeError(object link, ErrorMessage error)
        {
            Waiter failed = null;
            lock (_gate)
            {
                if (link != _link || !error.Rid.HasValue) return false;
                int rid = error.Rid.Value;
                long seq = RecentSeq(rid);
                if (seq == 0) return false;
                _outstanding.RemoveAll(m => m.Seq == seq);
                _refused[_refusedNext] = error;
                _refusedNext = (_refusedNext + 1) % _refused.Length;
                for (int i = 0; i < _waiters.Count; i++)
                {
                    if (_waiters[i].Seq != seq) continue;
                    failed = _waiters[i];
                    _waiters.RemoveAt(i);
                    break;
                }
            }
            if (failed != null) failed.Tcs.TrySetException(error.ToException());
            return true;
        }

        /// <summary>The result that includes the sketch message <paramref name="rid"/>: already completed when one did (the
        /// newest result) or when the server refused it (the server's error).</summary>
        public Task<SketchResultMessage> Wait(int rid)
        {
            lock (_gate)
            {
                foreach (var e in _refused)
                    if (e != null && e.Rid == rid) return Failed(e.ToException());
                long seq = RecentSeq(rid);
                if (seq == 0)
                    throw new ArgumentException("rid " + rid + " is not a recent sketch message of this connection", "rid");
                if (seq <= _covered && _latest != null) return Task.FromResult(_latest);
                // asked after the link went down (before a new one): nothing will answer it
                if (_lost != null) return Failed(_lost);
                var w = new Waiter { Seq = seq, Rid = rid, Link = _link };
                _waiters.Add(w);
                return w.Tcs.Task;
            }
        }

        /// <summary>A waiter gave up (timed out or cancelled).</summary>
        public void Forget(Task<SketchResultMessage> task)
        {
            lock (_gate) _waiters.RemoveAll(w => w.Tcs.Task == task);
        }

        /// <summary>The connection is gone: nothing sent over it will be answered.</summary>
        public void LinkLost(object link, Exception reason)
        {
            var failed = new List<Waiter>();
            lock (_gate)
            {
                for (int i = _waiters.Count - 1; i >= 0; i--)
                {
                    if (_waiters[i].Link != link) continue;
                    failed.Add(_waiters[i]);
                    _waiters.RemoveAt(i);
                }
                if (link == _link)
                {
                    _outstanding.Clear();
                    _lost = reason;
                }
            }
            foreach (var w in failed) w.Tcs.TrySetException(reason);
        }

        long RecentSeq(int rid)
        {
            foreach (var m in _recent)
                if (m.Rid == rid && m.Seq != 0) return m.Seq;
            return 0;
        }

        static Task<SketchResultMessage> Failed(Exception e)
        {
            var tcs = new TaskCompletionSource<SketchResultMessage>();
            tcs.SetException(e);
            return tcs.Task;
        }
    }
}
