using System.Collections.Generic;
using NUnit.Framework;

namespace Omokage.Client.Tests
{
    /// <summary>Gaze is a signal, the selection is the user's: dwell arms, only a press commits.</summary>
    [TestFixture]
    public class InteractionTests
    {
        sealed class FakeTarget : IOmokageSelectable
        {
            public object Content = new object();
            public bool Selectable = true;
            public int Selected;
            public bool Armed;
            public bool Hovered;

            public bool IsSelectable { get { return Selectable; } }
            public object DwellKey { get { return Content; } }

            public void OnPointerHover(bool hovered, float dwellProgress, bool armed)
            {
                Hovered = hovered;
                Armed = armed;
            }

            public void OnPointerSelect() { Selected++; }
        }

        static void Stare(PointerSelection pointer, IOmokageSelectable target, double seconds, double frame = 1.0 / 72)
        {
            for (double t = 0; t < seconds; t += frame) pointer.PointAt(target, frame);
        }

        [Test]
        public void DwellArms_AfterTheDwell_AndNeverFires()
        {
            var d = new DwellArming(1.2);
            var a = new object();
            var content = new object();
            Assert.IsFalse(d.Update(a, content, true, 0.5));
            Assert.AreEqual(0.5 / 1.2, d.Progress, 1e-9);
            Assert.IsFalse(d.Update(a, content, true, 0.5));
            Assert.IsTrue(d.Update(a, content, true, 0.3), "armed after 1.2 s");
            Assert.IsTrue(d.Armed);
            Assert.IsFalse(d.Update(a, content, true, 60), "arming is reported once");
            Assert.IsTrue(d.Armed, "and stays until the pointer leaves");
            d.Update(null, null, false, 0.1);
            Assert.IsFalse(d.Armed);
            Assert.AreEqual(0.0, d.Progress);
        }

        [Test]
        public void DwellArming_NewContentUnderTheGaze_BlocksUntilThePointerLeaves()
        {
            var d = new DwellArming(1.0);
            var tile = new object();
            d.Update(tile, "grid 1", true, 1.5);
            Assert.IsTrue(d.Armed);
            Assert.IsFalse(d.Update(tile, "grid 2", true, 0.1), "a new grid under the gaze");
            Assert.IsFalse(d.Armed);
            Assert.IsTrue(d.Blocked);
            for (int i = 0; i < 100; i++) Assert.IsFalse(d.Update(tile, "grid 2", true, 0.1), "staring does not arm again");
            d.Update(null, null, false, 0.1);
            Assert.IsFalse(d.Blocked, "leaving unblocks");
            d.Update(tile, "grid 2", true, 0.5);
            Assert.IsTrue(d.Update(tile, "grid 2", true, 0.5), "re-entering arms after a full dwell");
        }

        [Test]
        public void DwellArming_ABusyTargetDoesNotProgress()
        {
            var d = new DwellArming(1.0);
            var tile = new object();
            d.Update(tile, 1, true, 0.9);
            d.Update(tile, 1, false, 0.1);
            Assert.AreEqual(0.0, d.Progress, "busy: back to zero");
            Assert.IsFalse(d.Update(tile, 1, true, 0.5));
            Assert.IsTrue(d.Update(tile, 1, true, 0.5));
        }

        [Test]
        public void Pointer_StaringForMinutesAcrossGrids_ChoosesNothing()
        {
            var pointer = new PointerSelection { DwellSeconds = 1.5, RequireArmed = true };
            var tile = new FakeTarget();
            for (int grid = 0; grid < 20; grid++)
            {
                tile.Content = new object();  // every grid brings new candidates
                Stare(pointer, tile, 10);
            }
            Assert.AreEqual(0, tile.Selected, "dwell alone never selects");
        }

        [Test]
        public void Pointer_DwellArmsVisibly_PressCommits_ThenDisarmsUntilLeft()
        {
            var pointer = new PointerSelection { DwellSeconds = 1.5, RequireArmed = true };
            var tile = new FakeTarget();
            Stare(pointer, tile, 1.0);
            Assert.IsFalse(tile.Armed);
            Assert.IsFalse(pointer.Press(), "RequireArmed: a press before the dwell commits nothing");
            Stare(pointer, tile, 0.6);
            Assert.IsTrue(tile.Armed, "the tile shows it is armed");
            Assert.AreSame(tile, pointer.Armed);
            Assert.IsTrue(pointer.Press());
            Assert.AreEqual(1, tile.Selected);
            Assert.IsFalse(tile.Armed, "disarmed by the commit");
            Stare(pointer, tile, 5);
            Assert.IsFalse(tile.Armed, "stays disarmed while the gaze rests");
            Assert.IsFalse(pointer.Press());
            Assert.AreEqual(1, tile.Selected);
            pointer.PointAt(null, 0.1);
            Assert.IsFalse(tile.Hovered);
            Stare(pointer, tile, 1.6);
            Assert.IsTrue(tile.Armed, "after leaving and coming back");
        }

        [Test]
        public void Pointer_NewGridUnderTheGaze_ArmsNothing()
        {
            var pointer = new PointerSelection { DwellSeconds = 1.0, RequireArmed = true };
            var tile = new FakeTarget();
            Stare(pointer, tile, 1.2);
            Assert.IsTrue(tile.Armed);
            tile.Content = new object();  // the grid changed (e.g. a choice from the controller)
            Stare(pointer, tile, 3);
            Assert.IsFalse(tile.Armed);
            Assert.IsFalse(pointer.Press());
            Assert.AreEqual(0, tile.Selected);
        }

        [Test]
        public void Pointer_ControllerPressCommitsWhatItPointsAt_WithoutDwell()
        {
            var pointer = new PointerSelection();
            var button = new FakeTarget();
            pointer.PointAt(button, 0.01);
            Assert.IsTrue(pointer.Press(), "a trigger on the controller's ray is the user's explicit act");
            Assert.AreEqual(1, button.Selected);
            button.Selectable = false;
            pointer.PointAt(null, 0.01);
            pointer.PointAt(button, 0.01);
            Assert.IsFalse(pointer.Press(), "not while it is not selectable");
        }

        [Test]
        public void Pointer_DeadTargetsAreDropped()
        {
            var dead = new HashSet<IOmokageSelectable>();
            var pointer = new PointerSelection(t => !dead.Contains(t)) { DwellSeconds = 0.5 };
            var tile = new FakeTarget();
            Stare(pointer, tile, 1);
            dead.Add(tile);
            Assert.IsNull(pointer.Armed);
            Assert.IsFalse(pointer.Press());
            pointer.PointAt(tile, 0.1);
            Assert.IsNull(pointer.Hovered);
        }
    }
}
