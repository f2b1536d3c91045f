using System.Collections;
using System.Text.RegularExpressions;
using System.Threading;
using NUnit.Framework;
using Omokage.Client.Components;
using UnityEngine;
using UnityEngine.TestTools;

namespace Omokage.Client.Tests
{
    /// <summary>
    /// PlayMode tests of the components in a real player loop (Unity's Test Runner → PlayMode). They need no server.
    /// CI compiles them against its UnityEngine stub but cannot run them; the engine-free logic they wire up
    /// (PointerSelection, OpenUrlGate, SelectionSession) is tested in Tests/Editor, which CI runs.
    /// </summary>
    public class ComponentTests
    {
        sealed class CountingTarget : IOmokageSelectable
        {
            public int Selected;
            public bool Armed;
            public object Content = new object();
            public bool IsSelectable { get { return true; } }
            public object DwellKey { get { return Content; } }
            public void OnPointerHover(bool hovered, float dwellProgress, bool armed) { Armed = armed; }
            public void OnPointerSelect() { Selected++; }
        }

        GameObject _root;

        [SetUp]
        public void CreateRoot() { _root = new GameObject("omokage test"); }

        [TearDown]
        public void DestroyRoot() { Object.Destroy(_root); }

        [UnityTest]
        public IEnumerator Dispatcher_RunsPostsFromOtherThreads_OnTheMainThread()
        {
            OmokageDispatcher.EnsureExists();
            int mainThread = Thread.CurrentThread.ManagedThreadId;
            int ranOn = -1;
            var poster = new Thread(() => OmokageDispatcher.Post(() => ranOn = Thread.CurrentThread.ManagedThreadId));
            poster.Start();
            poster.Join();
            yield return new WaitUntil(() => ranOn != -1);
            Assert.AreEqual(mainThread, ranOn);
        }

        [UnityTest]
        public IEnumerator Pointer_DwellArms_OnlyThePressSelects()
        {
            var pointer = _root.AddComponent<OmokagePointer>();
            pointer.UseRaycast = false;
            pointer.DwellSeconds = 0.2f;
            pointer.RequireArmed = true;
            var target = new CountingTarget();
            for (int frame = 0; frame < 60; frame++)
            {
                pointer.PointAt(target, 0.05f);  // 3 s of staring
                yield return null;
            }
            Assert.IsTrue(target.Armed, "armed, visibly");
            Assert.AreEqual(0, target.Selected, "dwell never selects");
            Assert.IsTrue(pointer.SelectHovered());
            Assert.AreEqual(1, target.Selected);
        }

        [UnityTest]
        public IEnumerator Grid_AsksBeforeOpeningAUrl_AndRefusesOthers()
        {
            _root.SetActive(false);
            var grid = _root.AddComponent<CandidateGrid>();
            grid.AllowedUrlHosts = new[] { "avatars.example" };
            _root.SetActive(true);
            string asked = null;
            OmokageError failure = null;
            grid.OpenUrlRequested += url => asked = url;
            grid.Failed += e => failure = e;

            Assert.IsTrue(grid.RequestOpenUrl("https://avatars.example/items/1"));
            Assert.AreEqual("https://avatars.example/items/1", asked);
            Assert.AreEqual("https://avatars.example/items/1", grid.PendingUrl, "held until the user answers");
            grid.CancelOpenUrl();
            Assert.IsNull(grid.PendingUrl);

            LogAssert.Expect(LogType.Warning, new Regex("url_blocked"));
            Assert.IsFalse(grid.RequestOpenUrl("https://elsewhere.example/"));
            Assert.AreEqual(OmokageError.UrlBlocked, failure.Code);
            Assert.IsNull(grid.PendingUrl);
            yield return null;
        }

        [UnityTest]
        public IEnumerator Grid_WithoutAConnection_ReportsAnError_NotAnException()
        {
            _root.SetActive(false);
            var grid = _root.AddComponent<CandidateGrid>();
            grid.StartOnConnect = false;
            _root.SetActive(true);
            OmokageError failure = null;
            grid.Failed += e => failure = e;
            LogAssert.Expect(LogType.Warning, new Regex("connection"));
            grid.StartSelection();  // a UnityEvent-style call: the failure is routed, not thrown
            yield return new WaitUntil(() => failure != null);
            Assert.AreEqual(OmokageError.Connection, failure.Code);
            Assert.IsNull(grid.Current);
        }
    }
}
