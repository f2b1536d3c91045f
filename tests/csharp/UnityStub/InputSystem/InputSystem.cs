// A compile-time stand-in for the Input System package (assembly Unity.InputSystem), for the sample's press binding
// (compiled by .ci/csharp.sh with OMOKAGE_INPUT_SYSTEM defined). Signatures as in com.unity.inputsystem 1.x.
using System;

namespace UnityEngine.InputSystem
{
    public enum InputActionType { Value = 0, Button = 1, PassThrough = 2 }

    public sealed class InputAction : ICloneable, IDisposable
    {
        public InputAction(string name = null, InputActionType type = default(InputActionType), string binding = null,
                           string interactions = null, string processors = null, string expectedControlType = null) { }

        public event Action<CallbackContext> started;
        public event Action<CallbackContext> performed;
        public event Action<CallbackContext> canceled;

        public bool enabled { get { return false; } }
        public void Enable() { }
        public void Disable() { }
        public void Dispose() { }
        public object Clone() { return this; }

        public struct CallbackContext { }

        void NeverCalled()
        {
            started(default(CallbackContext));
            performed(default(CallbackContext));
            canceled(default(CallbackContext));
        }
    }

    public class InputActionReference : ScriptableObject
    {
        public InputAction action { get { return null; } }
    }
}
