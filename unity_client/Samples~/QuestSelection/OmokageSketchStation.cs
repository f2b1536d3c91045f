using System;
using System.Threading.Tasks;
using Omokage.Client.Components;
using UnityEngine;

namespace Omokage.Client.Samples
{
    /// <summary>
    /// The sample's drawing corner beside the grid, opened by "Draw a face": an <see cref="OmokageSketchPanel"/> drawn on with
    /// the controller's ray while the trigger is held (its canvas, and beside it the face the server generates from the
    /// drawing), a small result grid with the 9 faces the drawing fits best as it grows, and the buttons "use these" (a
    /// selection starts from the drawing on the main grid: <see cref="OmokageSketchPanel.StartSelectionAsync"/>,
    /// <c>start init=sketch</c>), "undo", "clear" and "close". The drawing's faces go to their own grid, so the selection
    /// on the main grid stays choosable while the user draws and is untouched when the corner closes without "use these".
    /// Closing keeps the drawing: opening again replays it to the server (a new <c>sketch.begin</c>).
    /// </summary>
    public class OmokageSketchStation : MonoBehaviour
    {
        OmokageSketchPanel _panel;
        CandidateGrid _results;
        CandidateGrid _grid;
        bool _starting;

        /// <summary>The sketch panel (its drawing, preview and latest result).</summary>
        public OmokageSketchPanel Panel { get { return _panel; } }

        /// <summary>Where the drawing's 9 faces are shown (a preview: nothing is chosen from it).</summary>
        public CandidateGrid Results { get { return _results; } }

        /// <summary>Whether the corner is open.</summary>
        public bool IsOpen { get { return gameObject.activeSelf; } }

        /// <summary>Whether "use these" would do something: a drawing with a stroke is open on the server and the grid is
        /// free.</summary>
        public bool CanUse { get { return !_starting && _panel.IsOpen && _panel.Pad.StrokeCount > 0 && !_grid.Busy; } }

        /// <summary>"Use these" started a selection from the drawing (main thread; the corner has closed).</summary>
        public event Action Used;

        /// <summary>"Use these" failed, or the server refused a stroke (main thread).</summary>
        public event Action<OmokageError> Failed;

        /// <summary>
        /// Builds the corner under <paramref name="parent"/>, closed. <paramref name="pointer"/> is the controller's pointer
        /// (its <see cref="OmokagePointer.Held"/> draws); <paramref name="material"/> an unlit textured material for the
        /// canvas, the preview and the result tiles (null: Unity's default).
        /// </summary>
        public static OmokageSketchStation Build(CandidateGrid grid, OmokageConnection connection, OmokagePointer pointer,
                                                 Material material, Transform parent, Vector3 localPosition, Quaternion localRotation)
        {
            var root = new GameObject("Omokage Sketch");
            root.SetActive(false);  // closed; the panel and the result grid get their fields before their Awake builds them
            root.transform.SetParent(parent, false);
            root.transform.localPosition = localPosition;
            root.transform.localRotation = localRotation;
            var station = root.AddComponent<OmokageSketchStation>();
            station._grid = grid;

            // the canvas (0.4 m, its top at the station's top) and, built beside it on the right, the generated preview
            var panelObject = new GameObject("Sketch Panel");
            panelObject.transform.SetParent(root.transform, false);  // parented first: Awake waits for the station to open
            panelObject.transform.localPosition = new Vector3(0f, 0.2f, 0f);
            station._panel = panelObject.AddComponent<OmokageSketchPanel>();
            station._panel.Connection = connection;
            station._panel.Grid = grid;  // "use these" starts the selection here
            station._panel.Pointer = pointer;
            station._panel.SurfaceMaterial = material;
            station._panel.Failed += station.Fail;
            OmokageActionButton.AddLabel(root.transform, "draw with the trigger held", new Vector3(0f, 0.45f, 0f));

            // the drawing's faces: a second grid at 40 % (it never starts a selection; nothing is chosen from it)
            var resultsObject = new GameObject("Sketch Results");
            resultsObject.transform.SetParent(root.transform, false);
            resultsObject.transform.localPosition = new Vector3(0f, -0.27f, 0f);
            resultsObject.transform.localScale = new Vector3(0.4f, 0.4f, 0.4f);
            station._results = resultsObject.AddComponent<CandidateGrid>();
            station._results.StartOnConnect = false;
            station._results.OpenUrlOnDecide = false;
            station._results.TileMaterial = material;
            station._results.Connection = connection;
            station._panel.ResultGrid = station._results;

            // the buttons, in a column under the preview
            var size = new Vector3(0.2f, 0.07f, 0.03f);
            var panel = station._panel;
            OmokageActionButton.Build(root.transform, "use these", new Vector3(0.33f, 0.12f, 0f), size, station.Use, () => station.CanUse);
            OmokageActionButton.Build(root.transform, "undo", new Vector3(0.33f, 0.03f, 0f), size, panel.Undo, () => panel.Pad.StrokeCount > 0);
            OmokageActionButton.Build(root.transform, "clear", new Vector3(0.33f, -0.06f, 0f), size, panel.Clear, () => panel.Pad.StrokeCount > 0);
            OmokageActionButton.Build(root.transform, "close", new Vector3(0.33f, -0.15f, 0f), size, station.Close);
            return station;
        }

        /// <summary>Opens the corner: the panel opens a drawing on the server (or replays the one kept from before).</summary>
        public void Open() { gameObject.SetActive(true); }

        /// <summary>Closes the corner; the drawing is kept, the main grid is as it was.</summary>
        public void Close() { gameObject.SetActive(false); }

        /// <summary>"Use these": a selection starts from the drawing on the main grid, then the corner closes.</summary>
        public void Use()
        {
            if (!CanUse) return;
            TaskObserver.Observe(UseAsync(), e => { if (this != null) Fail(OmokageError.From(e)); });
        }

        async Task UseAsync()
        {
            _starting = true;
            try
            {
                await _panel.StartSelectionAsync();  // sends the rest of the drawing, waits for its result, starts init=sketch
            }
            finally
            {
                _starting = false;
            }
            if (this == null) return;
            Close();
            var handler = Used;
            if (handler != null) handler();
        }

        void Fail(OmokageError error)
        {
            var handler = Failed;
            if (handler != null) handler(error);
        }
    }
}
