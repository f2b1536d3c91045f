using System.Runtime.CompilerServices;

// the editor tests drive internals that have no public use (e.g. SelectionSession.TryResume with a given snapshot)
[assembly: InternalsVisibleTo("Omokage.Client.Tests.Editor")]
