using System;
using System.Collections.Generic;

namespace Omokage.Client
{
    /// <summary>
    /// The answers being given to one <c>questionnaire</c> (protocol v1.2, docs/studies.md), engine-free: one item at a time
    /// (<see cref="Index"/>), its options (Likert: min … max; best/worst: the conditions' labels; text: none, a text field),
    /// a highlighted option moved by a controller (<see cref="MoveHighlight"/>) and committed by a press
    /// (<see cref="ConfirmHighlight"/>) or an option committed directly (<see cref="Select"/>: a pointer's press on an armed
    /// option; gaze only arms). <see cref="Answers"/> is what <c>answers</c> sends: the answered items, each a Likert
    /// integer or a string. Kinds it does not know are left unanswered (the server names them if they were required).
    /// </summary>
    public sealed class QuestionnaireForm
    {
        readonly int?[] _selected;
        readonly string[] _text;

        public QuestionnaireForm(QuestionnaireMessage questionnaire)
        {
            if (questionnaire == null) throw new ArgumentNullException("questionnaire");
            Questionnaire = questionnaire;
            _selected = new int?[questionnaire.Items.Count];
            _text = new string[questionnaire.Items.Count];
        }

        public QuestionnaireMessage Questionnaire { get; private set; }

        public int Count { get { return _selected.Length; } }

        /// <summary>The item shown, 0 … <see cref="Count"/> − 1.</summary>
        public int Index { get; private set; }

        public QuestionnaireItem Current { get { return Count == 0 ? null : Questionnaire.Items[Index]; } }

        /// <summary>The option a controller highlights on the current item (−1: none yet).</summary>
        public int Highlight { get; private set; } = -1;

        /// <summary>Options one item may have: a Likert scale of up to 11 points (0 … 10), up to 11 best/worst choices. An item
        /// with more is not rendered (<see cref="CanRender"/>) rather than shown cut short.</summary>
        public const int MaxOptions = 11;

        /// <summary>Whether this client can render the item: its kind (likert, best, worst, text) and at most
        /// <see cref="MaxOptions"/> options (a Likert scale of min … max, min ≤ max).</summary>
        public static bool CanRender(QuestionnaireItem item)
        {
            if (item.Kind == QuestionKinds.Likert) return item.Max >= item.Min && (long)item.Max - item.Min + 1 <= MaxOptions;
            if (item.Kind == QuestionKinds.Best || item.Kind == QuestionKinds.Worst) return item.Choices.Count <= MaxOptions;
            return item.Kind == QuestionKinds.Text;
        }

        /// <summary>Why <see cref="CanRender"/> refuses the item, for people (null when it can render it).</summary>
        public static string CannotRenderReason(QuestionnaireItem item)
        {
            if (CanRender(item)) return null;
            if (item.Kind == QuestionKinds.Likert)
                return "a Likert scale of " + item.Min + " … " + item.Max + ": this client shows at most " + MaxOptions + " points";
            if (item.Kind == QuestionKinds.Best || item.Kind == QuestionKinds.Worst)
                return item.Choices.Count + " choices: this client shows at most " + MaxOptions;
            return "the kind " + item.Kind + " is unknown to this client";
        }

        /// <summary>The item's options, for people: "1" … "5" for Likert, the choices for best/worst, none for text or for an
        /// item this client cannot render.</summary>
        public IReadOnlyList<string> Options(int item)
        {
            QuestionnaireItem q = Questionnaire.Items[item];
            if (!CanRender(q)) return new string[0];
            if (q.Kind == QuestionKinds.Likert)
            {
                var list = new List<string>();
                for (int v = q.Min; v <= q.Max; v++) list.Add(v.ToString());
                return list;
            }
            if (q.Kind == QuestionKinds.Best || q.Kind == QuestionKinds.Worst) return q.Choices;
            return new string[0];
        }

        /// <summary>The option chosen for the item, or null.</summary>
        public int? Selected(int item) { return _selected[item]; }

        public string Text(int item) { return _text[item]; }

        public bool IsAnswered(int item)
        {
            return _selected[item].HasValue || !string.IsNullOrEmpty(_text[item]);
        }

        /// <summary>Chooses option <paramref name="option"/> of <paramref name="item"/> (a Likert value or a choice).</summary>
        public void Select(int item, int option)
        {
            if (item < 0 || item >= Count) throw new ArgumentOutOfRangeException("item");
            if (option < 0 || option >= Options(item).Count) throw new ArgumentOutOfRangeException("option", option, "not an option of item " + Questionnaire.Items[item].Id);
            _selected[item] = option;
            if (item == Index) Highlight = option;
        }

        /// <summary>Free text for a <c>text</c> item (trimmed, at most 2,000 characters; empty: unanswered).</summary>
        public void SetText(int item, string text)
        {
            if (item < 0 || item >= Count) throw new ArgumentOutOfRangeException("item");
            if (Questionnaire.Items[item].Kind != QuestionKinds.Text) throw new InvalidOperationException("item " + Questionnaire.Items[item].Id + " takes no text");
            text = (text ?? "").Trim();
            if (text.Length > QuestionnaireAnswer.MaxTextChars) text = text.Substring(0, QuestionnaireAnswer.MaxTextChars);
            _text[item] = text.Length == 0 ? null : text;
        }

        /// <summary>Moves the controller's highlight on the current item's options (wrapping).</summary>
        public void MoveHighlight(int delta)
        {
            int n = Count == 0 ? 0 : Options(Index).Count;
            if (n == 0) return;
            Highlight = Highlight < 0 ? (delta >= 0 ? 0 : n - 1) : ((Highlight + delta) % n + n) % n;
        }

        /// <summary>The press: commits the highlighted option of the current item; false when nothing is highlighted.</summary>
        public bool ConfirmHighlight()
        {
            if (Count == 0 || Highlight < 0 || Highlight >= Options(Index).Count) return false;
            Select(Index, Highlight);
            return true;
        }

        /// <summary>Shows the next item; false on the last.</summary>
        public bool Next() { return MoveTo(Index + 1); }

        public bool Previous() { return MoveTo(Index - 1); }

        bool MoveTo(int index)
        {
            if (index < 0 || index >= Count) return false;
            Index = index;
            Highlight = _selected[index] ?? -1;
            return true;
        }

        /// <summary>Ids of required items not answered yet.</summary>
        public List<string> Missing()
        {
            var missing = new List<string>();
            for (int i = 0; i < Count; i++)
                if (Questionnaire.Items[i].Required && !IsAnswered(i)) missing.Add(Questionnaire.Items[i].Id);
            return missing;
        }

        /// <summary>How many required items are not answered yet (<see cref="Missing"/> without the list).</summary>
        public int MissingCount()
        {
            int n = 0;
            for (int i = 0; i < Count; i++)
                if (Questionnaire.Items[i].Required && !IsAnswered(i)) n++;
            return n;
        }

        /// <summary>Every required item is answered, and at least one item. Allocates nothing (a submit button asks every frame).</summary>
        public bool CanSubmit { get { return MissingCount() == 0 && AnsweredCount() > 0; } }

        int AnsweredCount()
        {
            int n = 0;
            for (int i = 0; i < Count; i++)
                if (IsAnswered(i)) n++;
            return n;
        }

        /// <summary>What <c>answers</c> carries: each answered item, Likert as the integer, best/worst as the choice's label,
        /// text as the text.</summary>
        public List<QuestionnaireAnswer> Answers()
        {
            var list = new List<QuestionnaireAnswer>();
            for (int i = 0; i < Count; i++)
            {
                QuestionnaireItem q = Questionnaire.Items[i];
                if (q.Kind == QuestionKinds.Text)
                {
                    if (_text[i] != null) list.Add(QuestionnaireAnswer.Of(q.Id, _text[i]));
                }
                else if (_selected[i].HasValue)
                {
                    if (q.Kind == QuestionKinds.Likert) list.Add(QuestionnaireAnswer.Of(q.Id, (long)(q.Min + _selected[i].Value)));
                    else list.Add(QuestionnaireAnswer.Of(q.Id, q.Choices[_selected[i].Value]));
                }
            }
            return list;
        }
    }

    /// <summary>Where a study participant is (v1.2 studies).</summary>
    public enum StudyPhase
    {
        /// <summary>The welcome carried no study: an ordinary session.</summary>
        NotAStudy,
        /// <summary><c>study.next</c> is due (after the welcome, a <c>decided</c>, or an <c>answered</c>).</summary>
        NextDue,
        /// <summary><c>study.next</c> was sent; its reply is awaited.</summary>
        Asking,
        /// <summary>A trial's grid is shown: choose, skip, rate, decide.</summary>
        Trial,
        /// <summary>A questionnaire is shown: answer it.</summary>
        Questionnaire,
        /// <summary>Nothing is left.</summary>
        Done,
    }

    /// <summary>
    /// The study loop of docs/protocol.md ("Studies (v1.2)"), engine-free: what the welcome and each reply mean for what
    /// comes next. A study component feeds it the welcome, the replies to <c>study.next</c>, <c>decided</c> and
    /// <c>answered</c>, and sends <c>study.next</c> whenever <see cref="Phase"/> is <see cref="StudyPhase.NextDue"/>.
    /// A reconnection (a new welcome) makes <c>study.next</c> due again: the server resumes the same trial at the grid
    /// the participant last saw.
    /// </summary>
    public sealed class StudyState
    {
        public StudyPhase Phase { get; private set; }

        /// <summary>From the last welcome (null: no study).</summary>
        public StudyInfo Info { get; private set; }

        /// <summary>The trial shown (null outside a trial).</summary>
        public TrialInfo Trial { get; private set; }

        /// <summary>The questionnaire shown (null outside one).</summary>
        public QuestionnaireMessage Questionnaire { get; private set; }

        /// <summary>How many trials the plan held, from <c>study.done</c>.</summary>
        public int? DoneTrials { get; private set; }

        public event Action<StudyPhase> PhaseChanged;

        public void OnWelcome(WelcomeMessage welcome)
        {
            Info = welcome == null ? null : welcome.Study;
            Trial = null;
            Questionnaire = null;
            if (Info == null) Set(StudyPhase.NotAStudy);
            else if (Info.Next == "done") Set(StudyPhase.Done);
            else Set(StudyPhase.NextDue);
        }

        /// <summary><c>study.next</c> went out.</summary>
        public void OnAsking() { Set(StudyPhase.Asking); }

        /// <summary>A reply to <c>study.next</c>.</summary>
        public void OnReply(ServerMessage reply)
        {
            var grid = reply as CandidatesMessage;
            var questionnaire = reply as QuestionnaireMessage;
            var done = reply as StudyDoneMessage;
            if (grid != null)
            {
                Trial = grid.Trial;
                Questionnaire = null;
                Set(StudyPhase.Trial);
            }
            else if (questionnaire != null)
            {
                Trial = null;
                Questionnaire = questionnaire;
                Set(StudyPhase.Questionnaire);
            }
            else if (done != null)
            {
                Trial = null;
                Questionnaire = null;
                DoneTrials = done.Trials;
                Set(StudyPhase.Done);
            }
            else throw new ArgumentException("not a reply to study.next: " + (reply == null ? "null" : reply.Type), "reply");
        }

        /// <summary><c>study.next</c> failed: ask again (e.g. after a reconnection).</summary>
        public void OnFailed() { if (Phase == StudyPhase.Asking) Set(StudyPhase.NextDue); }

        /// <summary>The trial ended with <c>decided</c>.</summary>
        public void OnDecided() { if (Phase == StudyPhase.Trial) Set(StudyPhase.NextDue); }

        /// <summary>The questionnaire's answers are stored.</summary>
        public void OnAnswered(AnsweredMessage answered)
        {
            if (Phase == StudyPhase.Questionnaire && (Questionnaire == null || answered == null || answered.Questionnaire == Questionnaire.Id))
            {
                Questionnaire = null;
                Set(StudyPhase.NextDue);
            }
        }

        /// <summary>For people: "System B · trial 2 of 5 · practice", or the study's state.</summary>
        public string Describe()
        {
            switch (Phase)
            {
                case StudyPhase.Trial:
                    if (Trial == null) return "";
                    string s = (string.IsNullOrEmpty(Trial.Label) ? "" : Trial.Label + " · ") + "trial " + Trial.Index + " of " + Trial.Count;
                    if (Trial.Practice) s += " · practice";
                    if (Trial.Task == TrialInfo.TargetTask) s += " · find the face shown";
                    return s;
                case StudyPhase.Questionnaire: return Questionnaire == null ? "" : Questionnaire.Title;
                case StudyPhase.Done: return "Done: thank you!";
                case StudyPhase.NotAStudy: return "";
                default: return Info == null ? "" : Info.Title;
            }
        }

        void Set(StudyPhase phase)
        {
            if (Phase == phase) return;
            Phase = phase;
            var handler = PhaseChanged;
            if (handler != null) handler(phase);
        }
    }
}

namespace Omokage.Client
{
    /// <summary>
    /// The fallback for free text when the system keyboard is not available (<c>TouchScreenKeyboard.isSupported</c> false,
    /// e.g. in the editor or without the platform's keyboard): a small on-panel keyboard whose keys are pressed like any
    /// option (a pointer's press, or gaze arming and a press). Engine-free: <see cref="Press"/> edits <see cref="Text"/>.
    /// </summary>
    public sealed class FallbackKeyboard
    {
        public const string Space = "space";
        public const string Backspace = "⌫";
        public const string Done = "done";

        /// <summary>The keys, row by row.</summary>
        public static readonly string[][] Rows =
        {
            new[] { "q", "w", "e", "r", "t", "y", "u", "i", "o", "p" },
            new[] { "a", "s", "d", "f", "g", "h", "j", "k", "l", "'" },
            new[] { "z", "x", "c", "v", "b", "n", "m", ",", ".", "?" },
            new[] { Space, Backspace, Done },
        };

        public FallbackKeyboard(string text = "") { Text = text ?? ""; }

        public string Text { get; private set; }

        public int MaxLength = QuestionnaireAnswer.MaxTextChars;

        /// <summary>Applies one key; true for <see cref="Done"/> (the text is finished).</summary>
        public bool Press(string key)
        {
            if (key == Done) return true;
            if (key == Backspace)
            {
                if (Text.Length > 0) Text = Text.Substring(0, Text.Length - 1);
            }
            else if (key == Space)
            {
                if (Text.Length < MaxLength) Text += " ";
            }
            else if (!string.IsNullOrEmpty(key) && Text.Length + key.Length <= MaxLength)
            {
                Text += key;
            }
            return false;
        }
    }
}
