using System;
using System.Collections.Generic;
using System.Collections.ObjectModel;
using System.Threading;
using System.Threading.Tasks;

namespace Omokage.Client
{
    /// <summary>What <see cref="SelectionSession.RestoreAsync"/> did.</summary>
    public enum RestoreOutcome
    {
        /// <summary>No grid was shown yet: nothing to restore (start a selection if you want one).</summary>
        NothingShown,
        /// <summary>The selection had been decided: the decision is kept and nothing is sent.</summary>
        Decided,
        /// <summary>The server session is the one the grid belongs to: nothing was lost.</summary>
        SameSession,
        /// <summary>The grid came from a seeded random start and nothing had been chosen: the same seed gave the same faces.</summary>
        SameSeed,
        /// <summary>Image start from the face chosen last, which was chosen again: it is first in the grid, as before.</summary>
        Rechosen,
        /// <summary>Image start from the first face of the lost grid (nothing had been chosen): that face and its nearest.</summary>
        NearestToFirst,
        /// <summary>The lost grid was empty: a new random start with the same settings.</summary>
        Restarted,
        /// <summary>A study trial (v1.2): <c>study.next</c> on the new connection, and the server resumed the same trial at the
        /// grid the participant last saw.</summary>
        StudyResumed,
        /// <summary>v1.7: the server went on with the selection itself (the hello presented the resume token, the welcome said
        /// <c>resumed: true</c>): its grid is <see cref="OmokageClient.ResumedGrid"/>, now <see cref="SelectionSession.Current"/>.
        /// Nothing is sent; the belief, the faces seen, the ratings and the steps carry over.</summary>
        Resumed,
    }

    /// <summary>
    /// One user's selection, kept across connections: the grid shown, the face chosen last, the decision, and which
    /// server session they belong to. A new connection is a new server session; <see cref="RestoreAsync"/> then puts the user
    /// back where they were:
    /// <list type="number">
    /// <item>nothing shown yet → nothing is sent (<see cref="RestoreOutcome.NothingShown"/>), unless the connection resumed a
    /// selection (a start whose reply was lost with the link): its grid becomes the current one (<see cref="RestoreOutcome.Resumed"/>);</item>
    /// <item>already decided → nothing is sent; <see cref="LastDecision"/> stays (<see cref="RestoreOutcome.Decided"/>);</item>
    /// <item>same server session → nothing is sent (<see cref="RestoreOutcome.SameSession"/>);</item>
    /// <item>v1.7: the new connection went on with this selection (<see cref="OmokageClient.ResumedGrid"/>, from the session
    /// <see cref="Current"/> belongs to: <see cref="OmokageClient.GoesOnFrom"/>) → nothing is sent; the server's grid becomes <see cref="Current"/>, and the belief,
    /// the faces seen, ratings and steps carry over (<see cref="RestoreOutcome.Resumed"/>).</item>
    /// </list>
    /// Otherwise (a server older than v1.7, a restarted one, a token expired) the server's selection is gone with the old
    /// session, and the selection is rebuilt as closely as a new one allows:
    /// <list type="number">
    /// <item>a face had been chosen → <c>start init=image</c> with that face's texture (same algorithm and policy), then
    /// <c>choose</c> it again: the grid shows it first with the policy's next faces (<see cref="RestoreOutcome.Rechosen"/>);</item>
    /// <item>nothing chosen and the grid was the first of a seeded random start → the same <c>start</c> again: the same nine
    /// faces (<see cref="RestoreOutcome.SameSeed"/>);</item>
    /// <item>otherwise → <c>start init=image</c> with the first face of the lost grid: that face and its nearest
    /// (<see cref="RestoreOutcome.NearestToFirst"/>).</item>
    /// </list>
    /// The evidence of earlier grids (older choices, skips, ratings) is not replayed there: the server counts steps from the
    /// restore.
    /// <para>v1.7 <see cref="BackAsync"/> undoes the last choose or skip: the server's grid before it becomes <see cref="Current"/>
    /// again, and <see cref="ChosenId"/> is what it was on that grid (the session keeps the face chosen at each step), so a
    /// restore or a decision after a back acts on the grid the user sees.</para>
    /// <para>v1.1 ratings: <see cref="RateAsync"/> keeps what the user rated in this selection (<see cref="RatingOf"/>,
    /// <see cref="Ratings"/>, <see cref="RatingsChanged"/>) as the server keeps it: a second rating of a face replaces the
    /// first, a <see cref="BackAsync"/> forgets the ratings given while a later grid was on screen, a new selection starts
    /// with none, and a rating the server refuses is taken back.</para>
    /// Not thread-safe: call it from one thread (Unity's main thread).
    /// </summary>
    public sealed class SelectionSession
    {
        OmokageClient _client;
        int _generation;
        bool _randomStart;
        int _starts;  // selections begun: an ideal face asked for in an earlier one is not this one's
        int _idealStep;  // the step of the grid LastIdeal was asked for on: a back below it undoes a pick its belief held
        int? _choosing;  // the face of the last choose sent (null once a skip or back is sent): a resumed grid may be its reply, lost with the link
        bool _starting;  // a start was the last selection request sent, its reply not applied: a resumed first grid may be its reply
        // the face chosen last as it was at each step (index step − 1; null: none), so that a back restores it; written for every
        // grid that becomes Current, cut above its step
        readonly List<int?> _chosenAt = new List<int?>();
        // v1.1: every rating of this selection still in force, in the order given, each with the step of the grid on screen
        // when it was given (a back forgets those above the step it returns to; a refused one is taken out). A face's rating
        // is its last one here; _ratings holds that, _ratingsScratch is where it is rebuilt (no allocation once warm)
        readonly List<RatingEntry> _ratingLog = new List<RatingEntry>();
        readonly Dictionary<int, int> _ratings = new Dictionary<int, int>();
        readonly Dictionary<int, int> _ratingsScratch = new Dictionary<int, int>();
        readonly IReadOnlyDictionary<int, int> _ratingsView;

        sealed class RatingEntry
        {
            public readonly int Id, Rating, Step;

            public RatingEntry(int id, int rating, int step)
            {
                Id = id;
                Rating = rating;
                Step = step;
            }
        }

        public SelectionSession(OmokageClient client)
        {
            if (client == null) throw new ArgumentNullException("client");
            _client = client;
            _ratingsView = new ReadOnlyDictionary<int, int>(_ratings);
        }

        /// <summary>The client requests go through. Another client (e.g. after the app re-created its connection) keeps the
        /// state: <see cref="NeedsRestore"/> then compares against the new client's session.</summary>
        public OmokageClient Client
        {
            get { return _client; }
            set
            {
                if (value == null) throw new ArgumentNullException("value");
                _client = value;
            }
        }

        /// <summary>Feature space of the selection (set by the last start).</summary>
        public string Algorithm { get; private set; }

        /// <summary>Policy asked for at the last start (null: the server's default).</summary>
        public string Policy { get; private set; }

        /// <summary>Seed of the last random start (null: unseeded, or an image start).</summary>
        public int? Seed { get; private set; }

        /// <summary>The grid shown (null before the first).</summary>
        public CandidatesMessage Current { get; private set; }

        /// <summary>The face chosen last (shown first in <see cref="Current"/>), or null.</summary>
        public int? ChosenId { get; private set; }

        /// <summary>The decision (null until one); kept across pauses and reconnections.</summary>
        public DecidedMessage LastDecision { get; private set; }

        /// <summary>The server session <see cref="Current"/> belongs to.</summary>
        public string SessionId { get; private set; }

        /// <summary>A grid is shown, not decided, and the client is now in another server session: restore it.</summary>
        public bool NeedsRestore
        {
            get
            {
                string now = _client.SessionId;
                return Current != null && LastDecision == null && now != null && now != SessionId;
            }
        }

        /// <summary>Whether a choose, skip, back or decide now would act on <see cref="Current"/> as the server has it: a grid is
        /// shown, not decided, and no restore is due (<see cref="NeedsRestore"/>). Right after a reconnection's welcome, before
        /// <see cref="RestoreAsync"/> ran, it is false: a request sent then reaches the new session, and the restore that
        /// follows makes its reply stale (v1.7: the server applies a pick the screen never shows). Not whether the client is
        /// connected. Allocation-free (a UI asks every frame).</summary>
        public bool CanChoose { get { return Current != null && LastDecision == null && !NeedsRestore; } }

        /// <summary>Whether the grid came from <c>study.next</c> (v1.2): a study trial, whose model, policy and start are the
        /// study's. Restoring it is asking <c>study.next</c> again.</summary>
        public bool IsStudy { get; private set; }

        /// <summary><c>study.next</c> (v1.2): a trial's grid becomes <see cref="Current"/> (a new or resumed trial); a
        /// <c>questionnaire</c> or <c>study.done</c> reply is returned and changes no grid.</summary>
        public async Task<ServerMessage> StudyNextAsync(byte[] image = null, CancellationToken ct = default(CancellationToken))
        {
            int generation = ++_generation;
            string session = _client.SessionId;
            ServerMessage reply = await _client.StudyNextAsync(image, ct);
            var grid = reply as CandidatesMessage;
            if (grid == null || generation != _generation) return reply;
            IsStudy = true;
            _starts++;
            LastIdeal = null;
            Algorithm = grid.Algorithm;
            Policy = grid.Policy;
            Seed = null;
            _randomStart = false;
            ChosenId = grid.Step > 1 && grid.Items.Count > 0 && grid.Items[0].Distance == 0.0 ? (int?)grid.Items[0].Id : null;
            LastDecision = null;
            _chosenAt.Clear();
            Record(grid);
            Current = grid;
            SessionId = session;
            ForgetRatings();  // a trial begun or resumed: a study offers no rating, and the session keeps none of its own
            var handler = GridChanged;
            if (handler != null) handler(grid);
            return reply;
        }

        /// <summary>Raised when a request's reply becomes the state (the latest request only).</summary>
        public event Action<CandidatesMessage> GridChanged;

        public Task<CandidatesMessage> StartRandomAsync(string algorithm, int? seed, string policy, CancellationToken ct = default(CancellationToken))
        {
            return Start(_client.StartRandomAsync(algorithm, seed, policy, ct), () => Began(algorithm, policy, seed, true));
        }

        public Task<CandidatesMessage> StartImageAsync(string algorithm, byte[] image, string policy, CancellationToken ct = default(CancellationToken))
        {
            return Start(_client.StartImageAsync(algorithm, image, policy, ct), () => Began(algorithm, policy, null, false));
        }

        /// <summary>v1.3: a selection that begins with the faces of the connection's latest <c>sketch.result</c>
        /// (<see cref="OmokageClient.StartSketchAsync"/>). The drawing belongs to the connection: after a reconnection the
        /// grid is restored like any other (from the face chosen last, or the first face), not from the drawing.</summary>
        public Task<CandidatesMessage> StartSketchAsync(string algorithm, string policy, CancellationToken ct = default(CancellationToken))
        {
            return Start(_client.StartSketchAsync(algorithm, policy, ct), () => Began(algorithm, policy, null, false));
        }

        async Task<CandidatesMessage> Start(Task<CandidatesMessage> request, Action began)
        {
            _starting = true;
            try
            {
                return await Apply(request, began);
            }
            catch (OmokageServerException)
            {
                _starting = false;  // refused: the server started nothing
                throw;
            }
        }

        /// <summary>The state of a selection that just started (random, image or sketch start).</summary>
        void Began(string algorithm, string policy, int? seed, bool randomStart)
        {
            _starts++;
            LastIdeal = null;
            Algorithm = algorithm;
            Policy = policy;
            Seed = seed;
            IsStudy = false;
            _randomStart = randomStart;
            ChosenId = null;
            LastDecision = null;
            _chosenAt.Clear();
            _starting = false;
            ForgetRatings();  // the server's new selection has none
        }

        public Task<CandidatesMessage> ChooseAsync(int id, CancellationToken ct = default(CancellationToken))
        {
            _choosing = id;
            _starting = false;
            return Apply(_client.ChooseAsync(id, ct), () => ChosenId = id);
        }

        public Task<CandidatesMessage> SkipAsync(CancellationToken ct = default(CancellationToken))
        {
            _choosing = null;
            _starting = false;
            return Apply(_client.SkipAsync(ct), () => ChosenId = null);
        }

        /// <summary>
        /// v1.7 <c>back</c> (<see cref="OmokageClient.BackAsync"/>): undoes the last choose or skip. The grid before it becomes
        /// <see cref="Current"/> again (the same faces in the same order, its step one less) and <see cref="GridChanged"/> is
        /// raised; <see cref="ChosenId"/> goes back to the face chosen last on that grid (null after a start or a skip). The
        /// request is sent as it is: on the first grid, after the decision or in a study trial the server answers
        /// <c>wrong_state</c> (<see cref="OmokageServerException"/>) and nothing changes here. <see cref="CanGoBack"/> says
        /// whether it would succeed. If the link is lost before the reply, the next connection's resumed grid is taken as the
        /// reply when the server took the back (<see cref="TryResume"/>).
        /// </summary>
        public Task<CandidatesMessage> BackAsync(CancellationToken ct = default(CancellationToken))
        {
            _choosing = null;
            _starting = false;
            return Apply(_client.BackAsync(ct), grid =>
            {
                ChosenId = ChosenAt(grid);
                // an ideal face asked for on a later grid came from a belief that held the pick just undone
                if (LastIdeal != null && _idealStep > grid.Step) LastIdeal = null;
                KeepRatingsUpTo(grid.Step);  // the server forgot those given on the grids it left
            });
        }

        /// <summary>v1.7: whether <see cref="BackAsync"/> can succeed: a grid after a choose or skip is shown (step 2 or more),
        /// the selection is not decided and not a study trial, no restore is due (<see cref="CanChoose"/>), the client is
        /// connected and the server speaks v1.7. Allocation-free (a button may ask every frame).</summary>
        public bool CanGoBack
        {
            get
            {
                CandidatesMessage grid = Current;
                if (grid == null || grid.Step < 2 || IsStudy || !CanChoose || !_client.IsConnected) return false;
                WelcomeMessage welcome = _client.Welcome;
                return welcome != null && welcome.Supports(7);
            }
        }

        /// <summary>v1.1: whether a rating control should be offered now (<see cref="RateAsync"/>): a grid is shown, not
        /// decided, not a study trial (a study measures picks: its trials show no rating), no restore is due
        /// (<see cref="CanChoose"/>), the client is connected and the server speaks v1.1 (a v1.0 server takes no rating).
        /// Allocation-free (a UI asks every frame).</summary>
        public bool CanRate
        {
            get
            {
                if (!CanChoose || IsStudy || !_client.IsConnected) return false;
                WelcomeMessage welcome = _client.Welcome;
                return welcome != null && welcome.Supports(1);
            }
        }

        /// <summary>v1.1: the rating 1 … 5 the user gave face <paramref name="id"/> in this selection, as the server now keeps
        /// it (see <see cref="RateAsync"/>); null when none. Allocation-free.</summary>
        public int? RatingOf(int id)
        {
            int rating;
            return _ratings.TryGetValue(id, out rating) ? (int?)rating : null;
        }

        /// <summary>v1.1: this selection's ratings, face id → 1 … 5 (a read-only view that follows them).</summary>
        public IReadOnlyDictionary<int, int> Ratings { get { return _ratingsView; } }

        /// <summary>v1.1: <see cref="Ratings"/> changed: a rating given (at once, before the server's reply), taken back (the
        /// server refused it), forgotten by a <see cref="BackAsync"/>, or the selection began anew. Raised on the thread the
        /// change happens on (the caller's, or the one a reply resumes on: Unity's main thread inside a MonoBehaviour).</summary>
        public event Action RatingsChanged;

        /// <summary>
        /// v1.1 <c>rate</c>: how close face <paramref name="id"/> (shown in this selection) is to what the user wants,
        /// 1 (not at all) … 5 (exactly it). Evidence for the server's belief; the grid stays and the next one takes it in.
        /// The rating is kept at once (<see cref="RatingOf"/>, <see cref="RatingsChanged"/>) as the server keeps it:
        /// <list type="bullet">
        /// <item>a second rating of the same face replaces the first; the same value again sends nothing (the result is null);</item>
        /// <item>a <see cref="BackAsync"/> forgets the ratings given while a later grid was on screen (a face rated again on a
        /// later grid gets back the rating it had on the grid that returns); one given on the grid that returns stays;</item>
        /// <item>a new selection (a start, a study trial, a restore that starts again) begins with none;</item>
        /// <item>a rating the server refuses (an <see cref="OmokageServerException"/>, e.g. <c>not_found</c> for a face never
        /// shown), or that fails otherwise, is taken back, and the exception is thrown.</item>
        /// </list>
        /// Throws <see cref="ArgumentOutOfRangeException"/> for a rating outside 1 … 5 and <see cref="InvalidOperationException"/>
        /// before a grid, after the decision and against a v1.0 server (it has no <c>rate</c>), with nothing sent.
        /// </summary>
        public async Task<RatedMessage> RateAsync(int id, int rating, CancellationToken ct = default(CancellationToken))
        {
            if (rating < 1 || rating > 5) throw new ArgumentOutOfRangeException("rating", rating, "a rating is 1 … 5");
            if (Current == null) throw new InvalidOperationException("a rating needs a selection: start one first");
            if (LastDecision != null) throw new InvalidOperationException("the selection was decided; start a new one");
            WelcomeMessage welcome = _client.Welcome;
            if (welcome != null && !welcome.Supports(1))
                throw new InvalidOperationException("the server speaks protocol v1.0, which has no ratings");
            if (RatingOf(id) == rating) return null;  // the server has it already
            var entry = new RatingEntry(id, rating, Current.Step);
            int starts = _starts;
            _ratingLog.Add(entry);
            RatingsUpdated();
            try
            {
                return await _client.RateAsync(id, rating, ct);
            }
            catch (Exception)
            {
                // taken back unless the selection it belongs to is gone, or a back forgot it already; a later rating of the
                // same face stays what the face has
                if (starts == _starts && _ratingLog.Remove(entry)) RatingsUpdated();
                throw;
            }
        }

        public async Task<DecidedMessage> DecideAsync(int id, CancellationToken ct = default(CancellationToken))
        {
            int generation = ++_generation;
            DecidedMessage decided = await _client.DecideAsync(id, ct);
            if (generation == _generation) LastDecision = decided;
            return decided;
        }

        /// <summary>v1.5: the last ideal face of this selection (<see cref="IdealAsync"/>); null before one, and again after a
        /// new start (a new selection has a new belief) or a v1.7 <see cref="BackAsync"/> below the grid it was asked for on
        /// (its belief held the pick taken back).</summary>
        public IdealResultMessage LastIdeal { get; private set; }

        /// <summary>v1.5: an ideal face arrived for this selection (<see cref="IdealAsync"/>; not for a reply that a newer start
        /// or a reconnection made stale).</summary>
        public event Action<IdealResultMessage> IdealReceived;

        /// <summary>
        /// v1.5 <c>ideal</c> (<see cref="OmokageClient.IdealAsync"/>): the face the selection's belief likes best near
        /// <paramref name="near"/> (a face shown in this selection; null: the face chosen last, or the most probable one on
        /// screen), generated, with the unseen faces nearest to it. The grid stays; the result becomes <see cref="LastIdeal"/>
        /// and raises <see cref="IdealReceived"/> unless a new selection started (or the server session changed) meanwhile.
        /// Throws <see cref="InvalidOperationException"/> before a grid or after the decision, where the server would answer
        /// <c>wrong_state</c>.
        /// </summary>
        public async Task<IdealResultMessage> IdealAsync(int? near = null, CancellationToken ct = default(CancellationToken))
        {
            if (Current == null) throw new InvalidOperationException("an ideal face needs a selection: start one first");
            if (LastDecision != null) throw new InvalidOperationException("the selection was decided; start a new one");
            int starts = _starts;
            int step = Current.Step;
            string session = _client.SessionId;
            IdealResultMessage ideal = await _client.IdealAsync(near, ct);
            if (starts != _starts || session != SessionId) return ideal;  // another selection's belief by now
            LastIdeal = ideal;
            _idealStep = step;
            var handler = IdealReceived;
            if (handler != null) handler(ideal);
            return ideal;
        }

        /// <summary>Puts the user back where they were after a new server session (see the class summary).</summary>
        public async Task<RestoreOutcome> RestoreAsync(CancellationToken ct = default(CancellationToken))
        {
            ResumeSnapshot now = _client.Resumption;  // one connection's session and grid, even if another reconnect lands meanwhile
            if (Current == null) return TryResume(now) ? RestoreOutcome.Resumed : RestoreOutcome.NothingShown;
            if (LastDecision != null) return RestoreOutcome.Decided;
            if (now.SessionId == SessionId) return RestoreOutcome.SameSession;
            if (TryResume(now)) return RestoreOutcome.Resumed;
            if (IsStudy)
            {
                await StudyNextAsync(null, ct);  // the server replays the trial's committed picks
                return RestoreOutcome.StudyResumed;
            }

            int? chosen = ChosenId;
            CandidatesMessage lost = Current;
            if (!chosen.HasValue && _randomStart && Seed.HasValue && lost.Step == 1)
            {
                await StartRandomAsync(Algorithm, Seed, Policy, ct);
                return RestoreOutcome.SameSeed;
            }
            if (lost.Items.Count == 0)
            {
                await StartRandomAsync(Algorithm, Seed, Policy, ct);
                return RestoreOutcome.Restarted;
            }
            CandidateItem anchor = lost.Items[0];
            CandidateItem chosenItem = null;
            foreach (var item in lost.Items)
                if (chosen.HasValue && item.Id == chosen.Value) chosenItem = item;
            if (chosenItem != null) anchor = chosenItem;
            else chosen = null;

            TextureFetchResult textures = await _client.FetchTexturesAsync(new[] { anchor.Texture }, ct);
            TextureData image;
            if (!textures.Textures.TryGetValue(anchor.Texture, out image))
                throw new OmokageProtocolException("cannot restore: the server no longer has texture " + anchor.Texture);
            CandidatesMessage near = await StartImageAsync(Algorithm, image.Data, Policy, ct);
            if (!chosen.HasValue) return RestoreOutcome.NearestToFirst;
            foreach (var item in near.Items)
            {
                if (item.Id != chosen.Value) continue;
                await ChooseAsync(chosen.Value, ct);
                return RestoreOutcome.Rechosen;
            }
            return RestoreOutcome.NearestToFirst;  // the model does not put the face among its own nearest: rare
        }

        /// <summary>
        /// v1.7: takes up the selection the client's connection resumed (<see cref="OmokageClient.ResumedGrid"/>) when it is
        /// this one: the session it went on from is the one <see cref="Current"/> belongs to (or nothing is shown yet: the start's
        /// reply was lost with the link). The server's grid becomes <see cref="Current"/> (it may be one step on, when a choose
        /// or skip reached the server and its reply was lost, or one step back, when a back did: <see cref="ChosenId"/> follows)
        /// and <see cref="GridChanged"/> is raised; nothing is sent. False
        /// when there is nothing to take up (also once a selection request went out on the connection: the server has moved
        /// on from the resumed grid); <see cref="RestoreAsync"/> calls it.
        /// </summary>
        public bool TryResume()
        {
            return TryResume(_client.Resumption);
        }

        /// <summary>The grid, the session and the sessions it went on from are read as one snapshot: read apart, a reconnection
        /// in between would pair one connection's grid with the next one's session (whose server has another grid).</summary>
        internal bool TryResume(ResumeSnapshot snapshot)
        {
            CandidatesMessage grid = snapshot.Grid;
            string now = snapshot.SessionId;
            if (grid == null || now == null || now == SessionId || LastDecision != null || IsStudy) return false;
            if (Current != null && !snapshot.GoesOnFrom(SessionId)) return false;  // another selection's
            _generation++;  // a reply still awaited from the lost link is stale
            if (Current == null)
            {
                _starts++;
                Algorithm = grid.Algorithm;
                Policy = grid.Policy;
                Seed = null;
                _randomStart = false;
                _chosenAt.Clear();
            }
            // a first grid that answers a start the server took (its reply lost with the link) is a new selection: no ratings
            if (Current == null || (_starting && grid.Step == 1)) _ratingLog.Clear();
            _starting = false;
            // the chosen face comes first after a choose, whatever the policy. One step on, a choose or skip reached the server
            // and its reply was lost: the face of that choose (a skip's grid starts with an unseen face). At the same step, the
            // face chosen last; one step back, a back reached the server: the face chosen on that grid, as it was then
            int? first = grid.Items.Count > 0 ? (int?)grid.Items[0].Id : null;
            int? chosen = Current != null && grid.Step == Current.Step + 1 ? _choosing : ChosenAt(grid);
            ChosenId = first.HasValue && chosen == first ? first : null;
            Record(grid);
            Current = grid;
            SessionId = now;
            KeepRatingsUpTo(grid.Step);  // the server kept the selection's ratings, less those a back it took forgot
            var handler = GridChanged;
            if (handler != null) handler(grid);
            return true;
        }

        Task<CandidatesMessage> Apply(Task<CandidatesMessage> request, Action onReply)
        {
            return Apply(request, grid => onReply());
        }

        async Task<CandidatesMessage> Apply(Task<CandidatesMessage> request, Action<CandidatesMessage> onReply)
        {
            int generation = ++_generation;
            string session = _client.SessionId;
            CandidatesMessage grid = await request;
            if (generation != _generation) return grid;  // a newer request wins
            onReply(grid);
            Record(grid);
            Current = grid;
            SessionId = session;
            var handler = GridChanged;
            if (handler != null) handler(grid);
            return grid;
        }

        /// <summary>The face chosen last on <paramref name="grid"/>'s step as the session recorded it, if that face still comes
        /// first on it (it does on the grid a back returns: the same faces in the same order); else null.</summary>
        int? ChosenAt(CandidatesMessage grid)
        {
            int index = grid.Step - 1;
            if (index < 0 || index >= _chosenAt.Count || grid.Items.Count == 0) return null;
            int? chosen = _chosenAt[index];
            return chosen.HasValue && chosen.Value == grid.Items[0].Id ? chosen : null;
        }

        /// <summary>Notes <see cref="ChosenId"/> as the face chosen last at <paramref name="grid"/>'s step; the steps above it
        /// are gone (a back, a restore that counts steps afresh).</summary>
        void Record(CandidatesMessage grid)
        {
            int index = Math.Max(0, grid.Step - 1);
            if (_chosenAt.Count > index) _chosenAt.RemoveRange(index, _chosenAt.Count - index);
            while (_chosenAt.Count < index) _chosenAt.Add(null);  // steps this session never saw (not expected)
            _chosenAt.Add(ChosenId);
        }

        /// <summary>A new selection: no ratings.</summary>
        void ForgetRatings()
        {
            _ratingLog.Clear();
            RatingsUpdated();
        }

        /// <summary>The ratings as the server keeps them once the grid at <paramref name="step"/> is shown: a back forgot the
        /// ones given while a later grid was on screen.</summary>
        void KeepRatingsUpTo(int step)
        {
            _ratingLog.RemoveAll(r => r.Step > step);
            RatingsUpdated();
        }

        /// <summary>Rebuilds <see cref="Ratings"/> from the log (each face's last rating) and raises
        /// <see cref="RatingsChanged"/> when it differs.</summary>
        void RatingsUpdated()
        {
            _ratingsScratch.Clear();
            foreach (RatingEntry entry in _ratingLog) _ratingsScratch[entry.Id] = entry.Rating;
            bool same = _ratingsScratch.Count == _ratings.Count;
            if (same)
            {
                foreach (var kv in _ratingsScratch)
                {
                    int rating;
                    if (!_ratings.TryGetValue(kv.Key, out rating) || rating != kv.Value) { same = false; break; }
                }
            }
            if (same) return;
            _ratings.Clear();
            foreach (var kv in _ratingsScratch) _ratings[kv.Key] = kv.Value;
            var handler = RatingsChanged;
            if (handler != null) handler();
        }
    }
}
