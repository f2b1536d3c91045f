using System;
using System.Threading;
using System.Threading.Tasks;

namespace Omokage.Client
{
    /// <summary>
    /// An error as an app shows it: a stable <see cref="Code"/> (the server's <c>error.code</c>, or one of the client
    /// codes below) and a sentence for people (<see cref="Message"/>).
    /// </summary>
    public sealed class OmokageError
    {
        /// <summary>No reply in time (<see cref="OmokageTimeoutException"/>).</summary>
        public const string Timeout = "timeout";
        /// <summary>Not connected, or the connection was lost (<see cref="OmokageConnectionException"/>).</summary>
        public const string Connection = "connection";
        /// <summary>The server broke the protocol (<see cref="OmokageProtocolException"/>).</summary>
        public const string Protocol = "protocol";
        /// <summary>The request was cancelled.</summary>
        public const string Cancelled = "cancelled";
        /// <summary>A URL from the server was refused by the <see cref="UrlPolicy"/>.</summary>
        public const string UrlBlocked = "url_blocked";
        /// <summary>Anything else (a bug, an argument out of range).</summary>
        public const string Client = "client";

        public OmokageError(string code, string message, Exception exception = null)
        {
            Code = code;
            Message = message;
            Exception = exception;
        }

        public string Code { get; private set; }

        public string Message { get; private set; }

        /// <summary>What was thrown (null for errors that are not exceptions, e.g. a refused URL).</summary>
        public Exception Exception { get; private set; }

        public override string ToString() { return Code + ": " + Message; }

        /// <summary>The code and a human message for anything the client throws.</summary>
        public static OmokageError From(Exception e)
        {
            var aggregate = e as AggregateException;
            if (aggregate != null && aggregate.InnerExceptions.Count == 1) e = aggregate.InnerExceptions[0];
            var server = e as OmokageServerException;
            if (server != null) return new OmokageError(server.Code, ServerText(server), e);
            if (e is OmokageTimeoutException) return new OmokageError(Timeout, "The server did not answer in time.", e);
            if (e is OmokageConnectionException) return new OmokageError(Connection, "No connection to the server: " + e.Message, e);
            if (e is OmokageProtocolException) return new OmokageError(Protocol, "The server sent something this client does not understand: " + e.Message, e);
            if (e is OperationCanceledException) return new OmokageError(Cancelled, "Cancelled.", e);
            return new OmokageError(Client, e == null ? "unknown error" : e.Message, e);
        }

        static string ServerText(OmokageServerException e)
        {
            switch (e.Code)
            {
                case ErrorCodes.Unauthorized: return "The server refused the token: check the token in the connection settings.";
                case ErrorCodes.Overloaded: return "The server is busy; try again in a moment.";
                case ErrorCodes.WrongState: return "The selection on the server cannot do that now: " + e.ServerMessage;  // not started, decided, the first grid (back), …
                case ErrorCodes.NotFound: return "The server does not know that face: " + e.ServerMessage;
                case ErrorCodes.Internal: return "The server failed: " + e.ServerMessage;
                case ErrorCodes.CalibrationFailed: return "The calibration did not work; the previous one stays in force: " + e.ServerMessage;
                default: return "The server refused the request (" + e.Code + "): " + e.ServerMessage;
            }
        }
    }

    /// <summary>Fire-and-forget for Task methods wired to events: a failure goes to a handler instead of vanishing.</summary>
    public static class TaskObserver
    {
        /// <summary>
        /// Calls <paramref name="onError"/> when <paramref name="task"/> fails, on the caller's synchronization context when
        /// there is one (Unity's main thread), else on the thread pool. Cancellation is not an error.
        /// </summary>
        public static void Observe(Task task, Action<Exception> onError)
        {
            if (task == null) return;
            TaskScheduler scheduler = SynchronizationContext.Current != null ? TaskScheduler.FromCurrentSynchronizationContext() : TaskScheduler.Default;
            task.ContinueWith(t =>
            {
                Exception e = t.Exception.InnerExceptions.Count == 1 ? t.Exception.InnerExceptions[0] : t.Exception;
                if (onError != null) onError(e);
            }, CancellationToken.None, TaskContinuationOptions.OnlyOnFaulted, scheduler);
        }
    }
}
