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
        /// <summary>v1.7: the selection went on on another connection: that one presented this client's resume token while
        /// this connection was still open, and the server closed this one (close 1000, <see cref="Protocol.SupersededReason"/>).
        /// Not connected and not trying: reconnecting would start another selection over the user's head, and the token is
        /// spent (the other connection holds the selection's new one), so it is dropped. Tell the user ("This selection went
        /// on elsewhere") and offer <see cref="OmokageClient.StartAfreshAsync"/> ("Start a new one here").</summary>
        Superseded,
    }
}
