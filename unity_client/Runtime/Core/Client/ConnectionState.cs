namespace Omokage.Client
{
    /// <summary>Where an <see cref="OmokageClient"/> stands.</summary>
    public enum ConnectionState
    {
        /// <summary>Not connected and not trying.</summary>
        Disconnected,
        /// <summary>Opening the WebSocket and saying hello.</summary>
        Connecting,
        /// <summary>Welcomed: requests may be sent.</summary>
        Connected,
        /// <summary>The connection was lost; waiting out the back-off before the next attempt.</summary>
        Reconnecting,
        /// <summary>Closed by <see cref="OmokageClient.CloseAsync"/> or Dispose; final.</summary>
        Closed,
    }
}
