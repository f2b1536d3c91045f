using System;
using System.Collections.Generic;
using System.Threading.Tasks;
using Omokage.Client;
using UnityEngine;
using UnityEngine.Events;

namespace Omokage.Unity
{
    /// <summary>A UnityEvent with the product URL (decide).</summary>
    [Serializable]
    public class OmokageUrlEvent : UnityEvent<string> { }

    /// <summary>
    /// The 3×3 grid of candidate faces. It starts a selection when the connection is welcomed (again after each
    /// reconnection: a new connection is a new server session), shows each <c>candidates</c> grid (titles at
    /// once, textures as they arrive: cached ones immediately, the others with one <c>texture.get</c>, turned into
    /// <c>Texture2D</c> with <c>LoadImage</c>), chooses a tile (<see cref="Choose(CandidateTile)"/>) and decides
    /// (<see cref="Decide(CandidateTile)"/> / <see cref="DecideChosen"/>), which opens the product URL. With a v1.1
    /// server it starts with the inspector's <c>policy</c>, and <see cref="Skip"/> ("none of these") and
    /// <see cref="Rate"/> are available. Without tiles assigned it builds nine quads with TextMesh titles under its own
    /// transform.
    /// </summary>
    [AddComponentMenu("Omokage/Candidate Grid")]
    public class CandidateGrid : MonoBehaviour
    {
        [SerializeField] OmokageConnection connection;

        [Header("Selection")]
        [Tooltip("Feature space: one of welcome.algorithms (raw, pca, nmf, ae).")]
        [SerializeField] string algorithm = "pca";

        [Tooltip("How the server picks the faces: one of welcome.policies (e.g. cover, infogain, thompson, study, random). " +
                 "Empty: the server's default_policy. A name the server does not offer falls back to its default, with a warning.")]
        [SerializeField] string policy = "";

        [Tooltip("Start a random selection whenever the connection is welcomed.")]
        [SerializeField] bool startOnConnect = true;

        [Tooltip("Seed of the random start (negative: a different first grid each time).")]
        [SerializeField] int seed = -1;

        [Tooltip("Open decided.item.url with Application.OpenURL.")]
        [SerializeField] bool openUrlOnDecide = true;

        [Header("Tiles")]
        [Tooltip("Nine tiles, row-major. Left empty, they are built from code (or from the prefab).")]
        [SerializeField] CandidateTile[] tiles = new CandidateTile[0];

        [Tooltip("Optional prefab for built tiles.")]
        [SerializeField] CandidateTile tilePrefab;

        [Tooltip("Material for built tiles; use an unlit textured one (URP: Universal Render Pipeline/Unlit).")]
        [SerializeField] Material tileMaterial;

        [Tooltip("Font for built titles (default: Unity's built-in font).")]
        [SerializeField] Font titleFont;

        [SerializeField] float tileSize = 0.25f;
        [SerializeField] float tileSpacing = 0.04f;
        [SerializeField] float titleHeight = 0.05f;

        [Header("Image start")]
        [Tooltip("Shows the model's reconstruction after an image start (optional).")]
        [SerializeField] Renderer reconstructionRenderer;

        [Header("Events")]
        public OmokageUrlEvent onDecided = new OmokageUrlEvent();

        readonly Dictionary<string, Texture2D> _textures = new Dictionary<string, Texture2D>(StringComparer.Ordinal);
        OmokageConnection _subscribed;
        int _generation;
        Texture2D _reconstruction;

        /// <summary>The grid shown (null before the first).</summary>
        public CandidatesMessage Current { get; private set; }

        /// <summary>The last decision (null until one).</summary>
        public DecidedMessage LastDecision { get; private set; }

        /// <summary>The face chosen last (it is shown first in the current grid), or null.</summary>
        public int? ChosenId { get; private set; }

        /// <summary>A request is in flight: tiles ignore selection meanwhile.</summary>
        public bool Busy { get; private set; }

        /// <summary>Whether <see cref="DecideChosen"/> would do something.</summary>
        public bool CanDecide { get { return !Busy && Current != null && Current.Items.Count > 0 && LastDecision == null; } }

        public IList<CandidateTile> Tiles { get { return tiles; } }

        public string Algorithm { get { return algorithm; } set { algorithm = value; } }

        /// <summary>The policy requested at the next start (null or empty: the server's default). Takes effect at the
        /// next <see cref="StartSelection"/>.</summary>
        public string Policy { get { return policy; } set { policy = value; } }

        /// <summary>Whether <see cref="Skip"/> would do something: a grid is shown, nothing in flight, not decided, and the
        /// server speaks v1.1.</summary>
        public bool CanSkip
        {
            get
            {
                var client = connection != null ? connection.Client : null;
                var welcome = client != null ? client.Welcome : null;
                return !Busy && Current != null && Current.Items.Count > 0 && LastDecision == null &&
                       welcome != null && welcome.Supports(1);
            }
        }

        /// <summary>Material of built tiles; set before Awake (add the component to an inactive GameObject).</summary>
        public Material TileMaterial { get { return tileMaterial; } set { tileMaterial = value; } }

        /// <summary>Font of built titles; set before Awake.</summary>
        public Font TitleFont { get { return titleFont; } set { titleFont = value; } }

        public bool StartOnConnect { get { return startOnConnect; } set { startOnConnect = value; } }

        public bool OpenUrlOnDecide { get { return openUrlOnDecide; } set { openUrlOnDecide = value; } }

        public OmokageConnection Connection
        {
            get { return connection; }
            set
            {
                connection = value;
                if (isActiveAndEnabled) Subscribe();
            }
        }

        /// <summary>Each grid shown (main thread).</summary>
        public event Action<CandidatesMessage> CandidatesShown;

        /// <summary>The selection ended (main thread).</summary>
        public event Action<DecidedMessage> Decided;

        /// <summary>A request failed (main thread): <see cref="OmokageServerException"/> carries the error code.</summary>
        public event Action<Exception> RequestFailed;

        void Awake()
        {
            OmokageDispatcher.EnsureExists();
            if (tiles == null || tiles.Length == 0) BuildTiles();
            for (int i = 0; i < tiles.Length; i++)
            {
                if (tiles[i] == null) continue;
                tiles[i].Grid = this;
                tiles[i].Index = i;
                tiles[i].Show(null);
            }
        }

        void OnEnable() { Subscribe(); }

        void OnDisable() { Unsubscribe(); }

        void Subscribe()
        {
            if (_subscribed == connection) return;
            Unsubscribe();
            if (connection == null) return;
            connection.Connected += OnConnected;
            _subscribed = connection;
            if (startOnConnect && connection.IsConnected && Current == null) StartSelection();
        }

        void Unsubscribe()
        {
            if (_subscribed != null) _subscribed.Connected -= OnConnected;
            _subscribed = null;
        }

        void OnConnected(WelcomeMessage welcome)
        {
            if (startOnConnect) StartSelection();
        }

        // --- actions -----------------------------------------------------------------------------

        /// <summary>Starts a new random selection (abandons the current one).</summary>
        public void StartSelection()
        {
            int? s = seed >= 0 ? (int?)seed : null;
            Run(c => c.StartRandomAsync(algorithm, s, OfferedPolicy(c)), true);
        }

        /// <summary>Starts from an encoded image (JPEG/PNG): the nine nearest faces; the reconstruction is shown.</summary>
        public void StartFromImage(byte[] image)
        {
            if (image == null) throw new ArgumentNullException("image");
            Run(c => c.StartImageAsync(algorithm, image, OfferedPolicy(c)), true);
        }

        /// <summary>"None of these": the current faces are all further from what the user wants than the unseen ones;
        /// shows the next grid of unseen faces (no chosen face first). Needs a v1.1 server.</summary>
        public void Skip()
        {
            if (!CanSkip) return;
            ChosenId = null;
            Run(c => c.SkipAsync(), false);
        }

        /// <summary>Rates a face shown in this selection, 1 (not at all) … 5 (exactly what I want): evidence for the
        /// server's belief; the grid stays. Needs a v1.1 server. Failures go to <see cref="RequestFailed"/>.</summary>
        public async void Rate(int id, int rating)
        {
            var client = ReadyClient();
            if (client == null || client.Welcome == null || !client.Welcome.Supports(1)) return;
            try
            {
                await client.RateAsync(id, rating);
            }
            catch (Exception e)
            {
                if (this != null) Fail(e);
            }
        }

        /// <summary>The inspector's policy if the server offers it; else null (the server's default), with a warning.</summary>
        string OfferedPolicy(OmokageClient client)
        {
            if (string.IsNullOrEmpty(policy)) return null;
            var welcome = client.Welcome;
            if (welcome == null || !welcome.Supports(1)) return null;  // a v1.0 server has no policies
            foreach (string offered in welcome.Policies)
                if (offered == policy) return policy;
            Debug.LogWarning("[omokage] the server does not offer the policy '" + policy + "' (it offers " +
                             string.Join(", ", welcome.Policies) + "); using its default, " + welcome.DefaultPolicy);
            return null;
        }

        public void Choose(CandidateTile tile)
        {
            if (tile != null && tile.Item != null) Choose(tile.Item.Id);
        }

        /// <summary>Chooses a face of the current grid: the next grid shows it first with its nearest unseen neighbours.</summary>
        public void Choose(int id)
        {
            if (Busy) return;
            ChosenId = id;
            Run(c => c.ChooseAsync(id), false);
        }

        public void Decide(CandidateTile tile)
        {
            if (tile != null && tile.Item != null) Decide(tile.Item.Id);
        }

        /// <summary>Decides on the face chosen last (or the first face of a fresh grid).</summary>
        public void DecideChosen()
        {
            if (!CanDecide) return;
            Decide(ChosenId.HasValue ? ChosenId.Value : Current.Items[0].Id);
        }

        /// <summary>Ends the selection on a face of the current grid and (by default) opens its product page.</summary>
        public async void Decide(int id)
        {
            var client = ReadyClient();
            if (client == null || Busy) return;
            SetBusy(true);
            int generation = ++_generation;
            try
            {
                DecidedMessage decided = await client.DecideAsync(id);
                if (this == null || generation != _generation) return;
                LastDecision = decided;
                var handler = Decided;
                if (handler != null) handler(decided);
                onDecided.Invoke(decided.Item.Url);
                if (openUrlOnDecide && !string.IsNullOrEmpty(decided.Item.Url)) Application.OpenURL(decided.Item.Url);
            }
            catch (Exception e)
            {
                if (this != null) Fail(e);
            }
            finally
            {
                if (this != null && generation == _generation) SetBusy(false);
            }
        }

        OmokageClient ReadyClient()
        {
            var client = connection != null ? connection.Client : null;
            if (client == null || !client.IsConnected)
            {
                Debug.LogWarning("[omokage] not connected yet");
                return null;
            }
            return client;
        }

        // `await` inside a MonoBehaviour resumes on Unity's main thread (UnitySynchronizationContext), so the code
        // after each await may touch Unity objects. A newer request bumps _generation and wins over older ones.
        async void Run(Func<OmokageClient, Task<CandidatesMessage>> request, bool restart)
        {
            var client = ReadyClient();
            if (client == null || (Busy && !restart)) return;
            if (restart)
            {
                ChosenId = null;
                LastDecision = null;
            }
            SetBusy(true);
            int generation = ++_generation;
            try
            {
                CandidatesMessage grid = await request(client);
                if (this == null || generation != _generation) return;
                Show(grid);
                SetBusy(false);
                await LoadTextures(client, grid, generation);
            }
            catch (Exception e)
            {
                if (this != null && generation == _generation) Fail(e);
            }
            finally
            {
                if (this != null && generation == _generation) SetBusy(false);
            }
        }

        void Show(CandidatesMessage grid)
        {
            Current = grid;
            for (int i = 0; i < tiles.Length; i++)
            {
                if (tiles[i] == null) continue;
                CandidateItem item = i < grid.Items.Count ? grid.Items[i] : null;
                tiles[i].Show(item);
                Texture2D cached;
                if (item != null && _textures.TryGetValue(item.Texture, out cached)) tiles[i].SetTexture(cached);
            }
            ShowReconstruction(grid.Reconstruction);
            var handler = CandidatesShown;
            if (handler != null) handler(grid);
        }

        async Task LoadTextures(OmokageClient client, CandidatesMessage grid, int generation)
        {
            var hashes = new List<string>();
            foreach (var item in grid.Items) hashes.Add(item.Texture);
            TextureFetchResult result = await client.FetchTexturesAsync(hashes);
            if (this == null || generation != _generation) return;
            var keep = new HashSet<string>(hashes, StringComparer.Ordinal);
            for (int i = 0; i < tiles.Length; i++)
            {
                var tile = tiles[i];
                if (tile == null || tile.Item == null) continue;
                TextureData data;
                if (result.Textures.TryGetValue(tile.Item.Texture, out data)) tile.SetTexture(ToTexture(data));
            }
            // keep GPU memory flat over a long session: drop textures the grid no longer shows
            var drop = new List<string>();
            foreach (var kv in _textures)
                if (!keep.Contains(kv.Key)) drop.Add(kv.Key);
            foreach (var hash in drop)
            {
                Destroy(_textures[hash]);
                _textures.Remove(hash);
            }
            if (result.NotFound.Count > 0)
                Debug.LogWarning("[omokage] the server does not know " + result.NotFound.Count + " texture(s)");
        }

        Texture2D ToTexture(TextureData data)
        {
            Texture2D texture;
            if (_textures.TryGetValue(data.Hash, out texture)) return texture;
            texture = Decode(data);
            _textures[data.Hash] = texture;
            return texture;
        }

        static Texture2D Decode(TextureData data)
        {
            var texture = new Texture2D(2, 2, TextureFormat.RGBA32, false);
            texture.name = "omokage " + data.Hash.Substring(0, 12);
            texture.wrapMode = TextureWrapMode.Clamp;
            texture.filterMode = FilterMode.Bilinear;
            if (!texture.LoadImage(data.Data, true))  // JPEG or PNG; resizes the texture; no CPU copy kept
                Debug.LogWarning("[omokage] could not decode texture " + data.Hash + " (" + data.Format + ")");
            return texture;
        }

        void ShowReconstruction(TextureData data)
        {
            if (_reconstruction != null)
            {
                Destroy(_reconstruction);
                _reconstruction = null;
            }
            if (data == null || reconstructionRenderer == null) return;
            _reconstruction = Decode(data);
            reconstructionRenderer.material.mainTexture = _reconstruction;
        }

        void SetBusy(bool busy)
        {
            Busy = busy;
            for (int i = 0; i < tiles.Length; i++)
                if (tiles[i] != null) tiles[i].Tint();
        }

        void Fail(Exception e)
        {
            var server = e as OmokageServerException;
            if (server != null) Debug.LogWarning("[omokage] " + server.Code + ": " + server.ServerMessage);
            else Debug.LogWarning("[omokage] request failed: " + e.Message);
            var handler = RequestFailed;
            if (handler != null) handler(e);
        }

        // --- building tiles from code --------------------------------------------------------------

        void BuildTiles()
        {
            var font = titleFont != null ? titleFont : BuiltinFont();
            tiles = new CandidateTile[9];
            float pitchX = tileSize + tileSpacing;
            float pitchY = tileSize + tileSpacing + titleHeight;
            for (int i = 0; i < 9; i++)
            {
                int row = i / 3, col = i % 3;
                CandidateTile tile;
                if (tilePrefab != null)
                {
                    tile = Instantiate(tilePrefab, transform);
                }
                else
                {
                    var root = new GameObject("Tile " + i);
                    root.transform.SetParent(transform, false);
                    var quad = GameObject.CreatePrimitive(PrimitiveType.Quad);  // comes with a MeshCollider for raycasts
                    quad.name = "Image";
                    quad.transform.SetParent(root.transform, false);
                    quad.transform.localScale = new Vector3(tileSize, tileSize, 1f);
                    var renderer = quad.GetComponent<Renderer>();
                    if (tileMaterial != null) renderer.sharedMaterial = tileMaterial;

                    var label = new GameObject("Title");
                    label.transform.SetParent(root.transform, false);
                    label.transform.localPosition = new Vector3(0f, -tileSize * 0.5f - 0.01f, 0f);
                    var text = label.AddComponent<TextMesh>();
                    text.anchor = TextAnchor.UpperCenter;
                    text.alignment = TextAlignment.Center;
                    text.fontSize = 48;
                    text.characterSize = titleHeight / 10f;
                    text.color = Color.white;
                    if (font != null)
                    {
                        text.font = font;
                        var labelRenderer = label.GetComponent<MeshRenderer>();
                        if (labelRenderer != null) labelRenderer.sharedMaterial = font.material;
                    }
                    tile = root.AddComponent<CandidateTile>();
                    tile.Configure(renderer, text);
                }
                tile.transform.localPosition = new Vector3((col - 1) * pitchX, (1 - row) * pitchY, 0f);
                tiles[i] = tile;
            }
        }

        static Font BuiltinFont()
        {
            // Unity 2022.2+ ships LegacyRuntime.ttf; older versions Arial.ttf
            foreach (var name in new[] { "LegacyRuntime.ttf", "Arial.ttf" })
            {
                try
                {
                    var font = Resources.GetBuiltinResource<Font>(name);
                    if (font != null) return font;
                }
                catch (ArgumentException) { }
            }
            return null;
        }

        void OnDestroy()
        {
            Unsubscribe();
            foreach (var texture in _textures.Values) Destroy(texture);
            _textures.Clear();
            if (_reconstruction != null) Destroy(_reconstruction);
        }
    }
}
