using System;
using System.Collections.Generic;
using System.Threading;
using System.Threading.Tasks;
using NUnit.Framework;

namespace Omokage.Client.Tests
{
    [TestFixture]
    public class UrlAndErrorTests
    {
        [Test]
        public void UrlPolicy_OnlyHttpAndHttps()
        {
            var policy = new UrlPolicy();
            string reason;
            Assert.IsTrue(policy.IsAllowed("https://avatars.example/items/00001", out reason));
            Assert.IsTrue(policy.IsAllowed("http://192.168.0.10:8000/x", out reason));
            foreach (string bad in new[] { "javascript:alert(1)", "file:///sdcard/secret", "intent://scan/#Intent;scheme=zxing;end",
                                           "market://details?id=x", "ftp://example.com/", "data:text/html,hi", "", null, "not a url",
                                           "/relative/path", "https://bank.example@evil.example/" })
            {
                Assert.IsFalse(policy.IsAllowed(bad, out reason), bad ?? "null");
                Assert.IsNotNull(reason);
            }
        }

        [Test]
        public void UrlPolicy_AllowedHosts_ExactAndSubdomains()
        {
            var policy = new UrlPolicy(new[] { "shop.example", "*.cdn.example", " ", null });
            string reason;
            Assert.IsTrue(policy.IsAllowed("https://shop.example/a", out reason));
            Assert.IsTrue(policy.IsAllowed("https://SHOP.example/a", out reason), "hosts compare case-insensitively");
            Assert.IsFalse(policy.IsAllowed("https://www.shop.example/a", out reason), "an exact entry is that host only");
            Assert.IsFalse(policy.IsAllowed("https://evilshop.example/a", out reason));
            Assert.IsTrue(policy.IsAllowed("https://cdn.example/a", out reason));
            Assert.IsTrue(policy.IsAllowed("https://eu.cdn.example/a", out reason));
            Assert.IsFalse(policy.IsAllowed("https://eviLcdn.example/a", out reason));
            Assert.IsFalse(policy.IsAllowed("https://shop.example.evil.example/a", out reason));
            StringAssert.Contains("not in the allowed hosts", reason);
            Assert.AreEqual(2, policy.AllowedHosts.Count, "blank entries are ignored");
        }

        [Test]
        public void PlaintextToRemote_IsWsToAnotherMachine()
        {
            Assert.IsTrue(UrlPolicy.IsPlaintextToRemote(new Uri("ws://192.168.0.10:8765/ws")));
            Assert.IsTrue(UrlPolicy.IsPlaintextToRemote(new Uri("ws://server.lan:8765/ws")));
            Assert.IsFalse(UrlPolicy.IsPlaintextToRemote(new Uri("wss://server.example/ws")));
            Assert.IsFalse(UrlPolicy.IsPlaintextToRemote(new Uri("ws://127.0.0.1:8765/ws")));
            Assert.IsFalse(UrlPolicy.IsPlaintextToRemote(new Uri("ws://localhost:8765/ws")));
            Assert.IsFalse(UrlPolicy.IsPlaintextToRemote(new Uri("ws://[::1]:8765/ws")));
        }

        [Test]
        public void OpenUrlGate_OpensOnlyAfterConfirm()
        {
            var opened = new List<string>();
            var gate = new OpenUrlGate(new UrlPolicy(), opened.Add);
            string reason;
            Assert.IsTrue(gate.Request("https://avatars.example/items/7", out reason));
            Assert.AreEqual("https://avatars.example/items/7", gate.Pending);
            Assert.AreEqual(0, opened.Count, "asking is not opening");
            gate.Cancel();
            Assert.IsNull(gate.Pending);
            Assert.IsFalse(gate.Confirm(), "nothing pending after Cancel");
            Assert.AreEqual(0, opened.Count);

            Assert.IsTrue(gate.Request("https://avatars.example/items/8", out reason));
            Assert.IsTrue(gate.Confirm());
            CollectionAssert.AreEqual(new[] { "https://avatars.example/items/8" }, opened);
            Assert.IsFalse(gate.Confirm(), "one confirm opens once");

            Assert.IsFalse(gate.Request("javascript:alert(1)", out reason));
            Assert.IsNull(gate.Pending);
            Assert.AreEqual(1, opened.Count);
        }

        [Test]
        public void OmokageError_CodesAndMessages()
        {
            var server = OmokageError.From(new OmokageServerException(ErrorCodes.Unauthorized, "bad token", 1));
            Assert.AreEqual("unauthorized", server.Code);
            StringAssert.Contains("token", server.Message);
            Assert.AreEqual(OmokageError.Timeout, OmokageError.From(new OmokageTimeoutException("x", TimeSpan.FromSeconds(1))).Code);
            Assert.AreEqual(OmokageError.Connection, OmokageError.From(new OmokageConnectionException("gone")).Code);
            Assert.AreEqual(OmokageError.Protocol, OmokageError.From(new OmokageProtocolException("bad")).Code);
            Assert.AreEqual(OmokageError.Cancelled, OmokageError.From(new TaskCanceledException()).Code);
            Assert.AreEqual(OmokageError.Client, OmokageError.From(new InvalidOperationException("busy")).Code);
            Assert.AreEqual(OmokageError.Timeout, OmokageError.From(new AggregateException(new OmokageTimeoutException("x", TimeSpan.Zero))).Code);
            Assert.IsInstanceOf<OmokageException>(new OmokageTimeoutException("x", TimeSpan.Zero), "timeouts are in the package's family");
        }

        [Test]
        public void TaskObserver_RoutesFailures()
        {
            var failed = new ManualResetEventSlim();
            Exception seen = null;
            var tcs = new TaskCompletionSource<bool>();
            TaskObserver.Observe(tcs.Task, e => { seen = e; failed.Set(); });
            tcs.SetException(new OmokageConnectionException("gone"));
            Assert.IsTrue(failed.Wait(TimeSpan.FromSeconds(5)));
            Assert.IsInstanceOf<OmokageConnectionException>(seen, "unwrapped");

            int calls = 0;
            TaskObserver.Observe(Task.FromResult(1), e => calls++);
            var cancelled = new TaskCompletionSource<bool>();
            cancelled.SetCanceled();
            TaskObserver.Observe(cancelled.Task, e => calls++);
            Thread.Sleep(100);
            Assert.AreEqual(0, calls, "success and cancellation are not errors");
        }
    }
}
