namespace Omokage.Client.MessagePack
{
    /// <summary>
    /// Turns one protocol message (a map) into the bytes of one binary WebSocket frame and back.
    /// The built-in <see cref="BuiltInMessageCodec"/> needs no third-party code; a project that already
    /// uses MessagePack-CSharp can plug its serializer in here (see the package README).
    /// </summary>
    public interface IMessageCodec
    {
        /// <summary>Canonical encoding of one message: keys in insertion order, shortest ints, float64 doubles.</summary>
        byte[] Encode(MsgMap message);

        /// <summary>Exactly one MessagePack map; anything else (trailing bytes, another type) throws.</summary>
        MsgMap Decode(byte[] frame);
    }

    /// <summary>The package's own reader and writer (<see cref="MsgPackReader"/>, <see cref="MsgPackWriter"/>).</summary>
    public sealed class BuiltInMessageCodec : IMessageCodec
    {
        public static readonly BuiltInMessageCodec Instance = new BuiltInMessageCodec();

        public byte[] Encode(MsgMap message) { return MsgPackWriter.Encode(message); }

        public MsgMap Decode(byte[] frame) { return MsgPackReader.DecodeMap(frame); }
    }
}
