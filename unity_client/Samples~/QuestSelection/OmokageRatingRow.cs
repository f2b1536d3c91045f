using Omokage.Client.Components;
using UnityEngine;

namespace Omokage.Client.Samples
{
    /// <summary>
    /// The sample's rating row (protocol v1.1 <c>rate</c>) under the grid's buttons: "How close is it?" over five stars that
    /// rate the user's pick (the face chosen last, first on the grid; the face <b>this one</b> decides on), in the web page's
    /// words (<see cref="CandidateGrid.RatingLabel"/>, <see cref="CandidateGrid.RatingWords"/>). A star is pressed like every
    /// button: the controller's ray and the trigger, or the head's gaze (dwell arms it) and the trigger; dwell alone never
    /// rates. Pointing at a star says what it means ("3 of 5: Somewhat"); the stars up to the rating light up. The grid keeps
    /// the ratings (<see cref="CandidateGrid.RatingOf"/>): rating the pick again replaces its rating, <b>back</b> brings back
    /// the rating the pick had on that grid, a new selection starts with none, a refused rating goes out again (the status
    /// line says why). Shown only while there is a pick to rate and the grid offers ratings
    /// (<see cref="CandidateGrid.OffersRating"/>: not against a v1.0 server, not in a study), not after the decision.
    /// Nothing is allocated per frame: the texts are made once, and a renderer or a text is touched only when what it shows
    /// changes.
    /// </summary>
    public class OmokageRatingRow : MonoBehaviour
    {
        const int Stars = 5;
        const int NoFace = int.MinValue;
        static readonly Color Lit = new Color(1f, 0.78f, 0.2f, 1f);
        static readonly Color Unlit = new Color(0.22f, 0.22f, 0.26f, 1f);

        // made once: what a hovered star says, and what the caption says of the pick's rating
        static readonly string[] StarTexts = Texts("{0} of 5: {1}");
        static readonly string[] RatedTexts = Texts("You rated it {0} of 5: {1}.");
        static readonly string[] JustRatedTexts = Texts("Rated {0} of 5 ({2}): the next faces take it into account.");

        CandidateGrid _grid;
        OmokagePointer _controller;
        OmokagePointer _gaze;
        GameObject _content;
        TextMesh _subject;
        TextMesh _caption;
        readonly OmokageStarButton[] _stars = new OmokageStarButton[Stars];
        readonly Material[] _fills = new Material[Stars];
        bool _visible = true;  // the first Update hides it
        int _face = NoFace;
        int _lit = -1;
        int _ratedHere;  // the rating pressed here for the face shown (its caption says the next faces take it in)
        string _captionText;

        /// <summary>The face the stars rate now (the pick), or null while the row is hidden.</summary>
        public int? Face { get { return _face == NoFace ? null : (int?)_face; } }

        /// <summary>Whether a star can be pressed now: there is a pick to rate and <see cref="CandidateGrid.CanRate"/>.</summary>
        public bool CanRate { get { return _face != NoFace && _grid.CanRate; } }

        /// <summary>Builds the row under <paramref name="parent"/>, hidden until there is a pick to rate. The pointers are
        /// read to say what the star pointed at means (either may be null).</summary>
        public static OmokageRatingRow Build(CandidateGrid grid, OmokagePointer controller, OmokagePointer gaze, Transform parent,
                                             Vector3 localPosition)
        {
            var root = new GameObject("Omokage Rating Row");
            root.transform.SetParent(parent, false);
            root.transform.localPosition = localPosition;
            var row = root.AddComponent<OmokageRatingRow>();
            row._grid = grid;
            row._controller = controller;
            row._gaze = gaze;

            row._content = new GameObject("Content");
            row._content.transform.SetParent(root.transform, false);
            // left of the stars, the question and whose face it is about; the stars centred; under them, what they say
            var label = OmokageActionButton.AddLabel(row._content.transform, CandidateGrid.RatingLabel, new Vector3(-0.22f, 0.012f, 0f));
            label.anchor = TextAnchor.MiddleRight;
            label.fontSize = 44;
            row._subject = OmokageActionButton.AddLabel(row._content.transform, "", new Vector3(-0.22f, -0.022f, 0f));
            row._subject.anchor = TextAnchor.MiddleRight;
            row._subject.characterSize = 0.003f;
            row._caption = OmokageActionButton.AddLabel(row._content.transform, "", new Vector3(0f, -0.06f, 0f));
            row._caption.characterSize = 0.0035f;

            const float pitch = 0.075f, side = 0.06f;
            for (int i = 0; i < Stars; i++)
            {
                var star = new GameObject("Star " + (i + 1));
                star.transform.SetParent(row._content.transform, false);
                star.transform.localPosition = new Vector3((i - 2) * pitch, 0f, 0f);

                var cube = GameObject.CreatePrimitive(PrimitiveType.Cube);  // its collider takes the pointers' rays
                cube.name = "Button";
                cube.transform.SetParent(star.transform, false);
                cube.transform.localScale = new Vector3(side, side, 0.02f);
                var button = star.AddComponent<OmokageStarButton>();
                button.Configure(grid, row, i + 1);
                button.ButtonRenderer = cube.GetComponent<Renderer>();  // tinted by hover, armed, disabled
                row._stars[i] = button;

                var fill = GameObject.CreatePrimitive(PrimitiveType.Quad);  // lit up to the rating; a diamond in front
                fill.name = "Fill";
                fill.transform.SetParent(star.transform, false);
                fill.transform.localPosition = new Vector3(0f, 0f, -0.011f);
                fill.transform.localRotation = Quaternion.Euler(0f, 0f, 45f);
                fill.transform.localScale = new Vector3(side * 0.5f, side * 0.5f, 1f);
                Destroy(fill.GetComponent<Collider>());  // the fill must not take the ray from the button behind it
                row._fills[i] = fill.GetComponent<Renderer>().material;  // its own material, made once
            }
            return row;
        }

        static string[] Texts(string format)
        {
            var texts = new string[Stars];
            for (int i = 0; i < Stars; i++)
                texts[i] = string.Format(format, i + 1, CandidateGrid.RatingWords[i], CandidateGrid.RatingWords[i].ToLowerInvariant());
            return texts;
        }

        void Update()
        {
            if (_grid == null) return;
            int? chosen = _grid.ChosenId;
            bool visible = chosen.HasValue && _grid.Current != null && _grid.OffersRating && _grid.LastDecision == null &&
                           !_grid.PreviewingSketch && !_grid.WentElsewhere;
            int face = visible ? chosen.Value : NoFace;
            if (face != _face)
            {
                _face = face;
                _ratedHere = 0;
                if (visible) _subject.text = "your pick: " + PickTitle(face);  // once per pick
            }
            if (visible != _visible)
            {
                _visible = visible;
                _content.SetActive(visible);
            }
            if (!visible) return;

            int? given = _grid.RatingOf(face);
            int rating = given.HasValue ? given.Value : 0;
            if (rating != _lit)
            {
                _lit = rating;
                for (int i = 0; i < Stars; i++) _fills[i].color = i < rating ? Lit : Unlit;
            }
            int hovered = CanRate ? HoveredStar() : 0;
            string caption = hovered > 0 ? StarTexts[hovered - 1]
                : rating == 0 ? ""
                : rating == _ratedHere ? JustRatedTexts[rating - 1] : RatedTexts[rating - 1];
            if (!ReferenceEquals(caption, _captionText))
            {
                _captionText = caption;
                _caption.text = caption;
            }
        }

        /// <summary>A star's press: rates the pick (a refusal reaches the grid's <c>Failed</c>, and the rating is taken
        /// back).</summary>
        internal void Rate(int stars)
        {
            if (!CanRate) return;
            _ratedHere = stars;
            _grid.Rate(_face, stars);
        }

        /// <summary>The star (1 … 5) the controller's ray, else the head's gaze, points at; 0 for none.</summary>
        int HoveredStar()
        {
            int star = StarOf(_controller);
            return star > 0 ? star : StarOf(_gaze);
        }

        int StarOf(OmokagePointer pointer)
        {
            if (pointer == null) return 0;
            var star = pointer.Hovered as OmokageStarButton;
            return star != null && star.Row == this ? star.Stars : 0;
        }

        string PickTitle(int face)
        {
            var grid = _grid.Current;
            for (int i = 0; i < grid.Items.Count; i++)
                if (grid.Items[i].Id == face) return grid.Items[i].Title;
            return "face " + face;
        }
    }

    /// <summary>One star of <see cref="OmokageRatingRow"/>: pressed (never by dwell alone) it rates the pick with its number
    /// of stars; selectable while the row can rate. A new grid disarms it.</summary>
    public class OmokageStarButton : OmokageGridButton
    {
        public OmokageStarButton()
            : base(new Color(0.4f, 0.4f, 0.45f, 1f), new Color(0.75f, 0.7f, 0.45f, 1f), new Color(0.3f, 0.3f, 0.3f, 1f)) { }

        /// <summary>The row it belongs to.</summary>
        public OmokageRatingRow Row { get; private set; }

        /// <summary>The rating its press gives, 1 … 5.</summary>
        public int Stars { get; private set; }

        internal void Configure(CandidateGrid candidateGrid, OmokageRatingRow row, int stars)
        {
            grid = candidateGrid;
            Row = row;
            Stars = stars;
        }

        public override bool IsSelectable { get { return Row != null && Row.CanRate; } }

        protected override void Press() { Row.Rate(Stars); }
    }
}
