using System;
using System.Collections.Generic;

namespace Omokage.Client
{
    /// <summary>
    /// Textures by content hash. A hash names its bytes forever, so an entry never goes stale; the cache
    /// only forgets the least recently used entries when it holds more than <see cref="MaxBytes"/>
    /// (0 = no limit). Thread-safe.
    /// </summary>
    public sealed class TextureCache
    {
        readonly object _gate = new object();
        readonly Dictionary<string, LinkedListNode<TextureData>> _byHash = new Dictionary<string, LinkedListNode<TextureData>>(StringComparer.Ordinal);
        readonly LinkedList<TextureData> _lru = new LinkedList<TextureData>();  // most recently used first
        long _bytes;

        public TextureCache(long maxBytes = 0) { MaxBytes = maxBytes; }

        /// <summary>The most encoded bytes to keep (0 = unlimited).</summary>
        public long MaxBytes { get; set; }

        public int Count { get { lock (_gate) return _byHash.Count; } }

        /// <summary>Encoded bytes held.</summary>
        public long TotalBytes { get { lock (_gate) return _bytes; } }

        public bool Contains(string hash)
        {
            lock (_gate) return hash != null && _byHash.ContainsKey(hash);
        }

        public bool TryGet(string hash, out TextureData texture)
        {
            lock (_gate)
            {
                LinkedListNode<TextureData> node;
                if (hash != null && _byHash.TryGetValue(hash, out node))
                {
                    _lru.Remove(node);
                    _lru.AddFirst(node);
                    texture = node.Value;
                    return true;
                }
            }
            texture = null;
            return false;
        }

        public void Add(TextureData texture)
        {
            if (texture == null) throw new ArgumentNullException("texture");
            lock (_gate)
            {
                LinkedListNode<TextureData> node;
                if (_byHash.TryGetValue(texture.Hash, out node))
                {
                    _lru.Remove(node);
                    _lru.AddFirst(node);
                    return;
                }
                node = _lru.AddFirst(texture);
                _byHash[texture.Hash] = node;
                _bytes += texture.Data == null ? 0 : texture.Data.Length;
                while (MaxBytes > 0 && _bytes > MaxBytes && _lru.Count > 1)
                {
                    var last = _lru.Last;
                    _lru.RemoveLast();
                    _byHash.Remove(last.Value.Hash);
                    _bytes -= last.Value.Data == null ? 0 : last.Value.Data.Length;
                }
            }
        }

        public void Clear()
        {
            lock (_gate)
            {
                _byHash.Clear();
                _lru.Clear();
                _bytes = 0;
            }
        }
    }
}
