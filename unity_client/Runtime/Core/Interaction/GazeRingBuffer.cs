using System;
using System.Collections.Generic;

namespace Omokage.Client
{
    /// <summary>
    /// One head-pose / eye-gaze sample. Positions in metres, rotation as a quaternion, gaze as a unit
    /// direction in world space. <see cref="Time"/> is on the server's clock (Unix seconds, via
    /// <see cref="ClockSync.ServerNow"/>) once a ping has completed, so samples line up with server events.
    /// </summary>
    public struct GazeSample
    {
        public double Time;
        /// <summary>True when <see cref="Time"/> is server time (a clock offset was known).</summary>
        public bool ServerClock;
        public float HeadX, HeadY, HeadZ;
        public float HeadQx, HeadQy, HeadQz, HeadQw;
        /// <summary>Whether the eye-gaze fields hold a tracked gaze (false: head forward was used).</summary>
        public bool EyeTracked;
        public float GazeX, GazeY, GazeZ;
        /// <summary>The candidate id under the gaze ray, or -1.</summary>
        public int ItemId;
    }

    /// <summary>
    /// A fixed-size ring buffer: the newest <see cref="Capacity"/> items, oldest first. Not thread-safe
    /// (the gaze reporter fills and reads it on the main thread).
    /// </summary>
    public sealed class RingBuffer<T>
    {
        readonly T[] _items;
        int _start;
        int _count;

        public RingBuffer(int capacity)
        {
            if (capacity <= 0) throw new ArgumentOutOfRangeException("capacity");
            _items = new T[capacity];
        }

        public int Capacity { get { return _items.Length; } }

        public int Count { get { return _count; } }

        /// <summary>Items dropped to make room since creation or <see cref="Clear"/>.</summary>
        public long Overwritten { get; private set; }

        public void Add(T item)
        {
            if (_count < _items.Length)
            {
                _items[(_start + _count) % _items.Length] = item;
                _count++;
                return;
            }
            _items[_start] = item;
            _start = (_start + 1) % _items.Length;
            Overwritten++;
        }

        /// <summary>The i-th item, 0 = oldest.</summary>
        public T this[int index]
        {
            get
            {
                if (index < 0 || index >= _count) throw new ArgumentOutOfRangeException("index");
                return _items[(_start + index) % _items.Length];
            }
        }

        public T Newest
        {
            get
            {
                if (_count == 0) throw new InvalidOperationException("the buffer is empty");
                return this[_count - 1];
            }
        }

        /// <summary>Copies the items out, oldest first.</summary>
        public List<T> ToList()
        {
            var list = new List<T>(_count);
            for (int i = 0; i < _count; i++) list.Add(this[i]);
            return list;
        }

        public void Clear()
        {
            _start = 0;
            _count = 0;
            Overwritten = 0;
            Array.Clear(_items, 0, _items.Length);
        }
    }
}
