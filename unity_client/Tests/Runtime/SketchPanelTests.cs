using System.Collections;
using NUnit.Framework;
using Omokage.Client.Components;
using UnityEngine;
using UnityEngine.TestTools;

namespace Omokage.Client.Tests
{
    /// <summary>
    /// PlayMode tests of <see cref="OmokageSketchPanel"/> in a real player loop (Unity's Test Runner → PlayMode), without a
    /// server: the controller's pointer draws while its press is held, strokes end when it is released or leaves the
    /// canvas, undo and clear, pen settings. CI compiles them but cannot run them; the engine-free logic (SketchPad,
    /// SketchRaster, the client's sketch messages) is tested in Tests/Editor, which CI runs.
    /// </summary>
    public class SketchPanelTests
    {
        GameObject _root;

        [SetUp]
        public void CreateRoot() { _root = new GameObject("omokage sketch test"); }

        [TearDown]
        public void DestroyRoot() { Object.Destroy(_root); }

        OmokageSketchPanel NewPanel(out OmokagePointer pointer)
        {
            _root.SetActive(false);  // the panel builds its canvas in Awake: set it up first
            var panel = _root.AddComponent<OmokageSketchPanel>();
            pointer = new GameObject("pointer").AddComponent<OmokagePointer>();
            pointer.transform.SetParent(_root.transform, false);
            pointer.UseRaycast = false;  // the test says where the ray hits
            panel.Pointer = pointer;
            panel.BeginOnConnect = false;
            _root.SetActive(true);
            return panel;
        }

        /// <summary>The world point of canvas point (x, y) (x right, y down) on the panel's canvas.</summary>
        static Vector3 OnCanvas(OmokageSketchPanel panel, float x, float y)
        {
            return panel.Canvas.TransformPoint(new Vector3(x - 0.5f, 0.5f - y, 0f));
        }

        [UnityTest]
        public IEnumerator HeldTrigger_OnTheCanvas_DrawsAStroke_ReleaseEndsIt()
        {
            OmokagePointer pointer;
            var panel = NewPanel(out pointer);
            Assert.IsNotNull(panel.InkTexture, "the local ink");
            pointer.Held = true;
            for (int frame = 0; frame <= 20; frame++)
            {
                pointer.PointAt(panel, 0.016f, OnCanvas(panel, 0.2f + 0.03f * frame, 0.4f));
                yield return null;
            }
            Assert.AreEqual(1, panel.Pad.StrokeCount, "one stroke while the trigger is held");
            Assert.That(panel.Pad.PointCount, Is.GreaterThan(10));
            float x, y;
            Assert.IsTrue(panel.CanvasPoint(OnCanvas(panel, 0.25f, 0.75f), out x, out y));
            Assert.AreEqual(0.25f, x, 1e-4f);
            Assert.AreEqual(0.75f, y, 1e-4f, "canvas y runs down");

            pointer.Held = false;
            yield return null;
            Assert.IsFalse(panel.Pad.Drawing, "released: the stroke ended");

            pointer.Held = true;
            pointer.PointAt(null, 0.016f);  // the ray is off the panel: nothing is drawn
            yield return null;
            Assert.AreEqual(1, panel.Pad.StrokeCount);
            pointer.PointAt(panel, 0.016f, OnCanvas(panel, 0.5f, 0.5f));
            yield return null;
            Assert.AreEqual(2, panel.Pad.StrokeCount, "back on the canvas with the trigger held: a new stroke");
            pointer.Held = false;
            yield return null;

            panel.Undo();
            Assert.AreEqual(1, panel.Pad.StrokeCount);
            panel.Clear();
            Assert.AreEqual(0, panel.Pad.StrokeCount);
            Assert.IsNull(panel.LatestResult, "no server, no result");
        }

        [UnityTest]
        public IEnumerator PenSettings_ApplyToTheNextStroke()
        {
            OmokagePointer pointer;
            var panel = NewPanel(out pointer);
            panel.Tool = SketchTool.Paint;
            panel.Colour = new Color(1f, 0.5f, 0f, 1f);
            panel.Width = 0.9f;  // clamped to the protocol's 0.25
            panel.PenAt(0.3f, 0.3f);
            panel.PenAt(0.6f, 0.3f);
            panel.PenUp();
            yield return null;
            SketchStyle style = panel.Pad.StrokeStyle(0);
            Assert.AreEqual(SketchTools.Paint, style.Tool);
            Assert.AreEqual(255, style.R);
            Assert.AreEqual(128, style.G);
            Assert.AreEqual(0.25, style.Width, 1e-9);
            panel.UseLine();
            panel.SetWidth(0.012f);
            panel.PenAt(0.5f, 0.6f);
            panel.PenUp();
            Assert.AreEqual(SketchTools.Line, panel.Pad.StrokeStyle(1).Tool);
            Assert.AreEqual(0.012, panel.Pad.StrokeStyle(1).Width, 1e-9);
        }
    }
}
