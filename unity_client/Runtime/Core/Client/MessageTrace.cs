using Omokage.Client.MessagePack;

namespace Omokage.Client
{
    /// <summary>One frame sent or received, for logs and transcripts (<see cref="OmokageClient.Trace"/>).</summary>
    public sealed class MessageTrace
    {
        public MessageTrace(bool outgoing, MsgMap message, int bytes, double localTime)
        {
            Outgoing = outgoing;
            Message = message;
            Bytes = bytes;
            LocalTime = localTime;
        }

        /// <summary>True for client → server.</summary>
        public bool Outgoing { get; private set; }

        public MsgMap Message { get; private set; }

        /// <summary>Size of the frame in bytes.</summary>
        public int Bytes { get; private set; }

        /// <summary><see cref="ClockSync.LocalNow"/> when it was sent or received.</summary>
        public double LocalTime { get; private set; }

        /// <summary>A readable line; tokens (<c>hello.token</c>, v1.7 <c>hello.resume</c> and <c>welcome.resume.token</c>) are
        /// shown as <c>&lt;secret&gt;</c>, so that logging traffic does not log them. <see cref="Message"/> is the frame as it was.</summary>
        public override string ToString()
        {
            return (Outgoing ? "→ " : "← ") + MsgPackDisplay.Format(Secrets.Redact(Message)) + "  (" + Bytes + " B)";
        }
    }

    /// <summary>The answer to <see cref="OmokageClient.FetchTexturesAsync"/>.</summary>
    public sealed class TextureFetchResult
    {
        public TextureFetchResult(System.Collections.Generic.IReadOnlyDictionary<string, TextureData> textures,
                                  System.Collections.Generic.IReadOnlyList<string> notFound, int fromCache, int fetched)
        {
            Textures = textures;
            NotFound = notFound;
            FromCache = fromCache;
            Fetched = fetched;
        }

        /// <summary>Every requested texture the cache or the server had, by hash.</summary>
        public System.Collections.Generic.IReadOnlyDictionary<string, TextureData> Textures { get; private set; }

        /// <summary>Hashes the server does not know (it answered <c>error not_found</c> for them).</summary>
        public System.Collections.Generic.IReadOnlyList<string> NotFound { get; private set; }

        /// <summary>How many came from the cache without a request.</summary>
        public int FromCache { get; private set; }

        /// <summary>How many hashes were requested from the server.</summary>
        public int Fetched { get; private set; }
    }
}
