using System;
using System.Threading.Tasks;
using Omokage.Client;
using UnityEngine;
using UnityEngine.Events;

namespace Omokage.Client.Components
{
    /// <summary>
    /// Runs a study participant's session (protocol v1.2, docs/studies.md) with a <see cref="CandidateGrid"/> and an
    /// <see cref="OmokageQuestionnairePanel"/>: when the connection's welcome carries a study (the connection's
    /// <c>participantCode</c> was sent in hello), it asks <c>study.next</c>; a trial's grid is shown by the grid (choose, skip
    /// and decide as usual; no product page is opened), and after <c>decided</c> it asks again; a questionnaire goes to the
    /// panel, whose answers it sends (<c>answers</c>) before asking again; <c>study.done</c> ends it. After a reconnection
    /// (a pause, a crash of the headset or the server) the grid restores the trial with <c>study.next</c>: the server
    /// continues it at the grid the participant last saw. The logic is the engine-free <see cref="StudyState"/>.
    /// </summary>
    [AddComponentMenu("Omokage/Omokage Study")]
    public class OmokageStudy : MonoBehaviour
    {
        [SerializeField] OmokageConnection connection;
        [SerializeField] CandidateGrid grid;
        [SerializeField] OmokageQuestionnairePanel questionnaire;

        [Tooltip("Shows the trial (condition label, trial N of M, practice) or the study's state (optional).")]
        [SerializeField] TextMesh progressText;

        [Tooltip("Seconds between a decision and the next trial or questionnaire.")]
        [SerializeField] float pauseAfterDecision = 1.5f;

        [Tooltip("The participant has done everything.")]
        public UnityEvent onDone = new UnityEvent();

        readonly StudyState _state = new StudyState();
        OmokageConnection _subscribed;
        CandidateGrid _gridSubscribed;
        int _asking;

        public StudyState State { get { return _state; } }

        /// <summary>The start image for trials whose condition starts from one (<c>study.next.image</c>); null: none.</summary>
        public byte[] StartImage { get; set; }

        public event Action<StudyPhase> PhaseChanged;

        void Awake() { OmokageDispatcher.EnsureExists(); }

        void OnEnable()
        {
            if (connection != null)
            {
                connection.Connected += OnConnected;
                _subscribed = connection;
                if (connection.IsConnected) OnConnected(connection.Welcome);
            }
            if (grid != null)
            {
                grid.Decided += OnDecided;
                _gridSubscribed = grid;
            }
            if (questionnaire != null) questionnaire.Submitted += OnSubmitted;
            _state.PhaseChanged += OnPhase;
        }

        void OnDisable()
        {
            if (_subscribed != null) _subscribed.Connected -= OnConnected;
            if (_gridSubscribed != null) _gridSubscribed.Decided -= OnDecided;
            if (questionnaire != null) questionnaire.Submitted -= OnSubmitted;
            _state.PhaseChanged -= OnPhase;
            _subscribed = null;
            _gridSubscribed = null;
        }

        void OnConnected(WelcomeMessage welcome)
        {
            bool inTrial = _state.Phase == StudyPhase.Trial;
            _state.OnWelcome(welcome);
            if (welcome.Study == null) return;
            if (grid != null) grid.OpenUrlOnDecide = false;  // a study never leaves the app
            // a trial on screen is restored by the grid (study.next: the server resumes it); otherwise ask what comes next
            if (inTrial && grid != null && grid.Current != null) _state.OnReply(grid.Current);
            else Next();
        }

        void OnDecided(DecidedMessage decided)
        {
            _state.OnDecided();
            if (_state.Phase == StudyPhase.NextDue) Observe(NextAfter(pauseAfterDecision));
        }

        async Task NextAfter(float seconds)
        {
            if (seconds > 0) await Task.Delay(TimeSpan.FromSeconds(seconds));
            if (this != null) Next();
        }

        /// <summary>Asks <c>study.next</c> when it is due (the component does this itself).</summary>
        public void Next()
        {
            if (_state.Phase != StudyPhase.NextDue || grid == null) return;
            Observe(NextAsync());
        }

        async Task NextAsync()
        {
            int asking = ++_asking;
            _state.OnAsking();
            ServerMessage reply;
            try
            {
                reply = await grid.StudyNextAsync(StartImage);
            }
            catch (Exception)
            {
                if (this != null && asking == _asking) _state.OnFailed();
                throw;
            }
            if (this == null || asking != _asking) return;
            _state.OnReply(reply);
            var form = reply as QuestionnaireMessage;
            if (form != null && questionnaire != null) questionnaire.Show(form);
            else if (questionnaire != null) questionnaire.Hide();
        }

        void OnSubmitted(QuestionnaireForm form)
        {
            Observe(SubmitAsync(form));
        }

        async Task SubmitAsync(QuestionnaireForm form)
        {
            var client = connection != null ? connection.Client : null;
            if (client == null) throw new OmokageConnectionException("no connection");
            questionnaire.SetStatus("saving…");
            try
            {
                AnsweredMessage answered = await client.AnswersAsync(form.Questionnaire.Id, form.Answers());
                if (this == null) return;
                questionnaire.Hide();
                _state.OnAnswered(answered);
                Next();
            }
            catch (OmokageServerException e)
            {
                if (this != null && questionnaire != null) questionnaire.SetStatus(e.ServerMessage);  // e.g. a required item missing
                throw;
            }
        }

        void OnPhase(StudyPhase phase)
        {
            if (progressText != null) progressText.text = _state.Describe();
            if (phase == StudyPhase.Done)
            {
                if (grid != null) grid.Clear();
                onDone.Invoke();
            }
            var handler = PhaseChanged;
            if (handler != null) handler(phase);
        }

        void Observe(Task task)
        {
            TaskObserver.Observe(task, e => Debug.LogWarning("[omokage] study: " + OmokageError.From(e)));
        }
    }
}
