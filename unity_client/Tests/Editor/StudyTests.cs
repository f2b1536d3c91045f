using System;
using System.Collections.Generic;
using System.IO;
using NUnit.Framework;
using Omokage.Client.MessagePack;

namespace Omokage.Client.Tests
{
    /// <summary>v1.2 studies on the client: the questionnaire form (what answers it sends, controller and pointer input),
    /// the fallback keyboard, the study loop's state, and a whole participant session against a scripted server.</summary>
    [TestFixture]
    public class StudyTests
    {
        static MsgMap Vector(string file)
        {
            string dir = TestEnv.VectorsDir();
            Assert.IsNotNull(dir, "the golden vectors");
            return MsgPackReader.DecodeMap(File.ReadAllBytes(Path.Combine(dir, file)));
        }

        static QuestionnaireMessage Questionnaire(string file) { return (QuestionnaireMessage)ServerMessage.Parse(Vector(file)); }

        [Test]
        public void Form_SendsTheGoldenAnswers()
        {
            var form = new QuestionnaireForm(Questionnaire("questionnaire_condition.msgpack"));
            Assert.AreEqual(2, form.Count);
            CollectionAssert.AreEqual(new[] { "1", "2", "3", "4", "5" }, form.Options(0));
            Assert.IsFalse(form.CanSubmit, "Q1 is required");
            CollectionAssert.AreEqual(new[] { "Q1" }, form.Missing());

            // a controller: move the highlight, press to commit
            form.MoveHighlight(+1);
            Assert.AreEqual(0, form.Highlight);
            form.MoveHighlight(+3);
            Assert.IsNull(form.Selected(0), "highlighting is not answering");
            Assert.IsTrue(form.ConfirmHighlight());
            Assert.AreEqual(3, form.Selected(0), "the 4th option: 4");
            Assert.IsTrue(form.CanSubmit);

            Assert.IsTrue(form.Next());
            Assert.AreEqual(QuestionKinds.Text, form.Current.Kind);
            Assert.AreEqual(0, form.Options(1).Count, "free text has no options");
            Assert.IsFalse(form.ConfirmHighlight());
            form.SetText(1, "  顔が選びやすかった \n");
            Assert.IsFalse(form.Next(), "the last item");

            var answers = form.Answers();
            Assert.AreEqual(2, answers.Count);
            byte[] expected = File.ReadAllBytes(Path.Combine(TestEnv.VectorsDir(), "answers.msgpack"));
            MsgPackAssert.BytesEqual(expected, MsgPackWriter.Encode(Requests.Answers(7, form.Questionnaire.Id, answers)), "the form's answers");

            Assert.IsTrue(form.Previous());
            Assert.AreEqual(3, form.Highlight, "back on an answered item, the highlight is the answer");
            form.SetText(1, "   ");
            Assert.AreEqual(1, form.Answers().Count, "blank text is no answer");
            Assert.Throws<InvalidOperationException>(() => form.SetText(0, "x"), "a Likert item takes no text");
            Assert.Throws<ArgumentOutOfRangeException>(() => form.Select(0, 5));
        }

        [Test]
        public void Form_BestAndWorstSendTheLabels()
        {
            var form = new QuestionnaireForm(Questionnaire("questionnaire_final.msgpack"));
            CollectionAssert.AreEqual(new[] { "System B", "System A", "System D", "System C" }, form.Options(0));
            form.Select(0, 2);  // a pointer's press on an armed option
            Assert.IsFalse(form.CanSubmit, "worst is required too");
            form.MoveHighlight(-1);
            Assert.AreEqual(1, form.Highlight, "the highlight moves from the answer");
            Assert.AreEqual(2, form.Selected(0), "until a press, the answer stays");
            form.Next();
            form.MoveHighlight(-1);
            Assert.AreEqual(3, form.Highlight, "from nothing, back wraps to the last");
            form.ConfirmHighlight();
            Assert.IsTrue(form.CanSubmit);
            var wire = Requests.Answers(9, "final", form.Answers());
            var list = wire.GetList("answers");
            Assert.AreEqual("System D", ((MsgMap)list[0])["value"]);
            Assert.AreEqual("System C", ((MsgMap)list[1])["value"]);
        }

        static QuestionnaireMessage Likert(long min, long max, bool required = true)
        {
            return new QuestionnaireMessage(new MsgMap
            {
                { "type", "questionnaire" }, { "rid", 3L }, { "id", "block-1" }, { "title", "About System A" },
                { "items", new List<object>
                    {
                        new MsgMap { { "id", "Q1" }, { "kind", "likert" }, { "text", "How sure are you?" }, { "required", required },
                                     { "min", min }, { "max", max }, { "labels", new List<object> { "not at all", "completely" } } },
                    } },
            });
        }

        [Test]
        public void Form_LikertScalesUpTo11Points_LargerOnesAreRefusedClearly()
        {
            var form = new QuestionnaireForm(Likert(0, 10));  // an 11-point scale: every point can be answered
            Assert.IsTrue(QuestionnaireForm.CanRender(form.Current));
            Assert.AreEqual(11, form.Options(0).Count);
            Assert.AreEqual("10", form.Options(0)[10]);
            form.MoveHighlight(-1);
            Assert.IsTrue(form.ConfirmHighlight(), "the last point, from the controller");
            Assert.AreEqual(10L, form.Answers()[0].Number);
            form.Select(0, 9);
            Assert.AreEqual(9L, form.Answers()[0].Number);

            var nine = new QuestionnaireForm(Likert(1, 9));
            nine.Select(0, 8);
            Assert.AreEqual(9L, nine.Answers()[0].Number, "9 of a 9-point scale");

            var wide = new QuestionnaireForm(Likert(1, 20));  // more than fits: not shown cut short at 11
            Assert.IsFalse(QuestionnaireForm.CanRender(wide.Current));
            Assert.AreEqual(0, wide.Options(0).Count);
            StringAssert.Contains("1 … 20", QuestionnaireForm.CannotRenderReason(wide.Current));
            Assert.Throws<ArgumentOutOfRangeException>(() => wide.Select(0, 11));
            Assert.IsFalse(QuestionnaireForm.CanRender(new QuestionnaireForm(Likert(5, 1)).Current), "max below min");
            Assert.IsNull(QuestionnaireForm.CannotRenderReason(form.Current));
        }

        [Test]
        public void Form_CanSubmit_AllocatesNothing()
        {
            var form = new QuestionnaireForm(Questionnaire("questionnaire_condition.msgpack"));
            bool can = form.CanSubmit;  // warm up
            long before = GC.GetAllocatedBytesForCurrentThread();
            for (int frame = 0; frame < 1000; frame++) can = form.CanSubmit;  // a submit button asks every frame
            long allocated = GC.GetAllocatedBytesForCurrentThread() - before;
            Assert.AreEqual(0, allocated, "bytes allocated by 1,000 CanSubmit");
            Assert.IsFalse(can);
            Assert.AreEqual(1, form.MissingCount());
            form.Select(0, 2);
            Assert.AreEqual(0, form.MissingCount());
            Assert.IsTrue(form.CanSubmit);
        }

        [Test]
        public void FallbackKeyboard_Types()
        {
            var keyboard = new FallbackKeyboard("ok");
            Assert.IsFalse(keyboard.Press(FallbackKeyboard.Space));
            foreach (string k in new[] { "f", "i", "n", "e", "e" }) keyboard.Press(k);
            keyboard.Press(FallbackKeyboard.Backspace);
            Assert.AreEqual("ok fine", keyboard.Text);
            Assert.IsTrue(keyboard.Press(FallbackKeyboard.Done));
            Assert.AreEqual(4, FallbackKeyboard.Rows.Length);
            var full = new FallbackKeyboard(new string('x', QuestionnaireAnswer.MaxTextChars));
            full.Press("y");
            Assert.AreEqual(QuestionnaireAnswer.MaxTextChars, full.Text.Length, "capped at 2,000 characters");
        }

        [Test]
        public void State_FollowsTheStudyLoop()
        {
            var state = new StudyState();
            var phases = new List<StudyPhase>();
            state.PhaseChanged += phases.Add;
            state.OnWelcome((WelcomeMessage)ServerMessage.Parse(Vector("welcome.msgpack")));
            Assert.AreEqual(StudyPhase.NotAStudy, state.Phase);
            state.OnWelcome((WelcomeMessage)ServerMessage.Parse(Vector("welcome_study.msgpack")));
            Assert.AreEqual(StudyPhase.NextDue, state.Phase);
            state.OnAsking();
            state.OnReply(ServerMessage.Parse(Vector("candidates_trial.msgpack")));
            Assert.AreEqual(StudyPhase.Trial, state.Phase);
            Assert.AreEqual("System B · trial 2 of 5 · find the face shown", state.Describe());
            state.OnDecided();
            Assert.AreEqual(StudyPhase.NextDue, state.Phase);
            state.OnAsking();
            state.OnReply(ServerMessage.Parse(Vector("questionnaire_condition.msgpack")));
            Assert.AreEqual(StudyPhase.Questionnaire, state.Phase);
            state.OnDecided();
            Assert.AreEqual(StudyPhase.Questionnaire, state.Phase, "a decision does not end a questionnaire");
            state.OnAnswered((AnsweredMessage)ServerMessage.Parse(Vector("answered.msgpack")));
            Assert.AreEqual(StudyPhase.NextDue, state.Phase);
            state.OnAsking();
            state.OnFailed();
            Assert.AreEqual(StudyPhase.NextDue, state.Phase, "a failed study.next is asked again");
            state.OnAsking();
            state.OnReply(ServerMessage.Parse(Vector("study_done.msgpack")));
            Assert.AreEqual(StudyPhase.Done, state.Phase);
            Assert.AreEqual(5, state.DoneTrials);
            Assert.Throws<ArgumentException>(() => state.OnReply(ServerMessage.Parse(Vector("pong.msgpack"))));
            CollectionAssert.Contains(phases, StudyPhase.Questionnaire);
        }

        /// <summary>A participant's whole session against a scripted study server: the code in hello, a trial, a pick, the
        /// questionnaire and its answers, the end; and a reconnection in the middle of a trial resumes it with study.next.</summary>
        [Test]
        public void ParticipantSession_AgainstAScriptedServer()
        {
            using (var server = new FakeServer())
            {
                int nexts = 0;
                server.Handler = (c, m) =>
                {
                    long? rid = m.GetInt64("rid");
                    MsgMap reply = null;
                    switch (m.GetString("type"))
                    {
                        case MessageTypes.Hello:
                            if (m.GetString("participant") != "p-7f3a")
                                reply = new MsgMap { { "type", "error" }, { "rid", rid }, { "code", "unauthorized" }, { "message", "this participant code is not in the study" } };
                            else
                            {
                                reply = Vector("welcome_study.msgpack");
                                reply.Set("session_id", c.SessionId);
                                reply.Set("protocol_minor", 7L);  // a v1.7 study server: back exists, and a trial refuses it
                            }
                            break;
                        case MessageTypes.StudyNext:
                            int n = ++nexts;
                            reply = Vector(n <= 2 ? "candidates_trial.msgpack" : n == 3 ? "questionnaire_condition.msgpack" : "study_done.msgpack");
                            break;
                        case MessageTypes.Choose:
                            reply = Vector("candidates_trial.msgpack");
                            reply.Set("step", 2L);
                            break;
                        case MessageTypes.Decide: reply = Vector("decided.msgpack"); break;
                        case MessageTypes.Answers:
                            Assert.AreEqual("block-2", m.GetString("questionnaire"));
                            reply = Vector("answered.msgpack");
                            break;
                    }
                    if (reply == null) return false;
                    reply.Set("rid", rid);
                    c.Send(reply);
                    return true;
                };

                var stranger = new OmokageClient(new OmokageClientOptions(server.Url) { AutoReconnect = false, PingInterval = TimeSpan.Zero, Participant = "nobody" });
                var refused = Assert.Throws<OmokageServerException>(() => Sync.Run(() => stranger.ConnectAsync()));
                Assert.AreEqual(ErrorCodes.Unauthorized, refused.Code);
                stranger.Dispose();

                var client = new OmokageClient(new OmokageClientOptions(server.Url) { AutoReconnect = false, PingInterval = TimeSpan.Zero, Participant = "p-7f3a" });
                var client2 = new OmokageClient(new OmokageClientOptions(server.Url) { AutoReconnect = false, PingInterval = TimeSpan.Zero, Participant = "p-7f3a" });
                try
                {
                    var welcome = Sync.Run(() => client.ConnectAsync());
                    var state = new StudyState();
                    state.OnWelcome(welcome);
                    Assert.AreEqual(StudyPhase.NextDue, state.Phase);

                    var session = new SelectionSession(client);
                    state.OnAsking();
                    ServerMessage reply = Sync.Run(() => session.StudyNextAsync());
                    state.OnReply(reply);
                    Assert.AreEqual(StudyPhase.Trial, state.Phase);
                    Assert.IsTrue(session.IsStudy);
                    Assert.AreSame(reply, session.Current);
                    Sync.Run(() => session.ChooseAsync(session.Current.Items[1].Id));
                    Assert.AreEqual(2, session.Current.Step);
                    Assert.IsFalse(session.CanGoBack, "a study trial's steps are what it measures: no back");

                    // the headset reconnects (a new server session): the trial resumes with study.next, not a new start
                    Sync.Run(() => client2.ConnectAsync());
                    session.Client = client2;
                    Assert.IsTrue(session.NeedsRestore);
                    Assert.AreEqual(RestoreOutcome.StudyResumed, Sync.Run(() => session.RestoreAsync()));
                    Assert.AreEqual(0, server.CountReceived(MessageTypes.Start), "a study never sends start");

                    Sync.Run(() => session.DecideAsync(session.Current.Items[0].Id));
                    state.OnDecided();
                    state.OnAsking();
                    state.OnReply(Sync.Run(() => session.StudyNextAsync()));
                    Assert.AreEqual(StudyPhase.Questionnaire, state.Phase);

                    var form = new QuestionnaireForm(state.Questionnaire);
                    form.Select(0, 4);
                    AnsweredMessage answered = Sync.Run(() => client2.AnswersAsync(form.Questionnaire.Id, form.Answers()));
                    state.OnAnswered(answered);
                    Assert.AreEqual(StudyPhase.NextDue, state.Phase);
                    state.OnAsking();
                    state.OnReply(Sync.Run(() => session.StudyNextAsync()));
                    Assert.AreEqual(StudyPhase.Done, state.Phase);

                    var hellos = server.Received.FindAll(m => m.GetString("type") == MessageTypes.Hello);
                    Assert.AreEqual("p-7f3a", hellos[hellos.Count - 1].GetString("participant"));
                    Assert.AreEqual((long)Protocol.Minor, hellos[hellos.Count - 1].GetInt64("protocol_minor"));
                }
                finally
                {
                    client.Dispose();
                    client2.Dispose();
                }
            }
        }
    }
}
