using System.Collections.Generic;
using Omokage.Client.Components;
using UnityEngine;
#if OMOKAGE_INPUT_SYSTEM
using UnityEngine.InputSystem;
#endif

namespace Omokage.Client.Samples
{
    /// <summary>
    /// The user's press, the only thing that commits a selection: the right controller's trigger commits what its ray
    /// points at; if its ray points at nothing, the trigger (or the left trigger, or Space in the Editor) commits the
    /// tile the head's gaze has armed by dwelling on it. Needs the Input System package (com.unity.inputsystem, installed
    /// with the XR Interaction Toolkit); bindings by usage work with Quest controllers over OpenXR and with the XR Device
    /// Simulator. Assign <see cref="press"/> to use your own action (e.g. XRI's "XRI RightHand Interaction/Select").
    /// While the trigger is held, <see cref="OmokagePointer.Held"/> of the controller's pointer is true, so an
    /// <see cref="OmokageSketchPanel"/> it points at draws.
    /// </summary>
    public class OmokageSamplePress : MonoBehaviour
    {
#if OMOKAGE_INPUT_SYSTEM
        [Tooltip("Optional: your own press action. Empty: the triggers of both controllers and Space.")]
        [SerializeField] InputActionReference press;

        readonly List<InputAction> _owned = new List<InputAction>();
#endif

        /// <summary>The controller's ray (commits what it points at).</summary>
        public OmokagePointer ControllerPointer { get; set; }

        /// <summary>The head's gaze (commits only the tile it armed).</summary>
        public OmokagePointer GazePointer { get; set; }

        /// <summary>One press: the controller's target first, else the gaze's armed tile. True when something was committed.</summary>
        public bool Press()
        {
            if (ControllerPointer != null && ControllerPointer.SelectHovered()) return true;
            return GazePointer != null && GazePointer.SelectHovered();
        }

#if OMOKAGE_INPUT_SYSTEM
        void OnEnable()
        {
            if (press != null && press.action != null)
            {
                Bind(press.action);
                press.action.Enable();
                return;
            }
            foreach (string binding in new[] { "<XRController>{RightHand}/{TriggerButton}", "<XRController>{LeftHand}/{TriggerButton}", "<Keyboard>/space" })
            {
                var action = new InputAction("omokage press " + binding, InputActionType.Button, binding);
                Bind(action);
                action.Enable();
                _owned.Add(action);
            }
        }

        void Bind(InputAction action)
        {
            action.started += OnHoldStarted;
            action.performed += OnPress;
            action.canceled += OnHoldEnded;
        }

        void Unbind(InputAction action)
        {
            action.started -= OnHoldStarted;
            action.performed -= OnPress;
            action.canceled -= OnHoldEnded;
        }

        void OnDisable()
        {
            if (press != null && press.action != null) Unbind(press.action);
            foreach (var action in _owned)
            {
                Unbind(action);
                action.Dispose();
            }
            _owned.Clear();
            if (ControllerPointer != null) ControllerPointer.Held = false;
        }

        void OnPress(InputAction.CallbackContext context) { Press(); }

        // the held trigger draws on a sketch panel the controller's ray points at
        void OnHoldStarted(InputAction.CallbackContext context) { if (ControllerPointer != null) ControllerPointer.Held = true; }

        void OnHoldEnded(InputAction.CallbackContext context) { if (ControllerPointer != null) ControllerPointer.Held = false; }
#else
        void OnEnable()
        {
            Debug.LogWarning("[omokage sample] the Input System package is not installed: nothing calls Press(), so nothing can " +
                             "be chosen. Install com.unity.inputsystem (it comes with the XR Interaction Toolkit) or call " +
                             "OmokageSamplePress.Press() from your own input.");
        }
#endif
    }
}
