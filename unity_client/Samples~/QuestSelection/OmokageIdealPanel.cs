using System;
using System.Collections.Generic;
using System.Threading.Tasks;
using Omokage.Client.Components;
using UnityEngine;

namespace Omokage.Client.Samples
{
    /// <summary>
    /// The sample's "what you seem to want" panel beside the grid (protocol v1.5 ideal face): shown by the grid's
    /// <see cref="CandidateGrid.IdealShown"/> (the sample's button calls <see cref="CandidateGrid.ShowIdeal"/>), it shows the
    /// face the server generated from what the selection has learnt (<see cref="CandidateGrid.IdealTexture"/>) and under it the
    /// unseen catalog faces nearest to it (<see cref="IdealResultMessage.Items"/>, textures fetched by hash like a grid's). It
    /// only shows: the grid stays as it is, and the user goes on choosing there. A new selection (a first grid) hides it.
    /// Built once; its materials and the nine face textures are made on the first ideal face and reused for every later one.
    /// </summary>
    public class OmokageIdealPanel : MonoBehaviour
    {
        const int Faces = 9;

        CandidateGrid _grid;
        TextMesh _heading;
        Renderer _preview;
        Material _previewMaterial;
        readonly GameObject[] _faces = new GameObject[Faces];
        readonly Renderer[] _faceRenderers = new Renderer[Faces];
        readonly Material[] _faceMaterials = new Material[Faces];
        readonly Texture2D[] _faceTextures = new Texture2D[Faces];
        readonly TextMesh[] _faceTitles = new TextMesh[Faces];
        int _shown;  // bumped for each ideal face: a slower fetch for an older one does not overwrite a newer one

        /// <summary>The ideal face shown (null before one).</summary>
        public IdealResultMessage Shown { get; private set; }

        /// <summary>Whether the panel is shown.</summary>
        public bool IsOpen { get { return gameObject.activeSelf; } }

        /// <summary>The nearest faces' textures could not be fetched (main thread).</summary>
        public event Action<OmokageError> Failed;

        /// <summary>Builds the panel under <paramref name="parent"/>, hidden until the grid shows an ideal face.</summary>
        public static OmokageIdealPanel Build(CandidateGrid grid, Material material, Transform parent, Vector3 localPosition,
                                              Quaternion localRotation)
        {
            var root = new GameObject("Omokage Ideal Face");
            root.SetActive(false);
            root.transform.SetParent(parent, false);
            root.transform.localPosition = localPosition;
            root.transform.localRotation = localRotation;
            var panel = root.AddComponent<OmokageIdealPanel>();
            panel._grid = grid;

            panel._heading = OmokageActionButton.AddLabel(root.transform, "what you seem to want", new Vector3(0f, 0.42f, 0f));
            panel._preview = Quad(root.transform, "Ideal Face", new Vector3(0f, 0.22f, 0f), 0.3f, material);
            OmokageActionButton.AddLabel(root.transform, "nearest faces you have not seen", new Vector3(0f, 0.03f, 0f));

            const float pitchX = 0.14f, pitchY = 0.16f, side = 0.11f;
            for (int i = 0; i < Faces; i++)
            {
                int row = i / 3, col = i % 3;
                var face = new GameObject("Face " + i);
                face.transform.SetParent(root.transform, false);
                face.transform.localPosition = new Vector3((col - 1) * pitchX, -0.06f - row * pitchY - side * 0.5f, 0f);
                panel._faces[i] = face;
                panel._faceRenderers[i] = Quad(face.transform, "Image", Vector3.zero, side, material);
                var title = OmokageActionButton.AddLabel(face.transform, "", new Vector3(0f, -side * 0.5f - 0.012f, 0f));
                title.characterSize = 0.0025f;
                panel._faceTitles[i] = title;
            }

            OmokageActionButton.Build(root.transform, "close", new Vector3(0f, -0.6f, 0f), new Vector3(0.2f, 0.07f, 0.03f), panel.Hide);
            grid.IdealShown += panel.OnIdealShown;
            grid.CandidatesShown += panel.OnCandidatesShown;
            return panel;
        }

        // a quad without a collider: it only shows
        static Renderer Quad(Transform parent, string name, Vector3 localPosition, float side, Material material)
        {
            var quad = GameObject.CreatePrimitive(PrimitiveType.Quad);
            quad.name = name;
            quad.transform.SetParent(parent, false);
            quad.transform.localPosition = localPosition;
            quad.transform.localScale = new Vector3(side, side, 1f);
            Destroy(quad.GetComponent<Collider>());
            var renderer = quad.GetComponent<Renderer>();
            if (material != null) renderer.sharedMaterial = material;
            return renderer;
        }

        // its own material instance, for its texture (made once, on first use)
        static Material Instance(ref Material instance, Renderer renderer)
        {
            if (instance == null)
            {
                instance = renderer.material;
                instance.color = Color.white;
            }
            return instance;
        }

        /// <summary>Hides the panel (the next ideal face shows it again).</summary>
        public void Hide() { gameObject.SetActive(false); }

        void OnIdealShown(IdealResultMessage ideal, Texture2D texture)
        {
            Shown = ideal;
            Instance(ref _previewMaterial, _preview).mainTexture = texture;  // the grid's IdealTexture: one texture, reloaded for each ideal face
            var current = _grid.Current;
            _heading.text = current != null ? "what you seem to want, after " + current.Step + " grids" : "what you seem to want";
            for (int i = 0; i < Faces; i++)
            {
                bool has = i < ideal.Items.Count;
                _faces[i].SetActive(has);
                _faceTitles[i].text = has ? ideal.Items[i].Title : "";
                Instance(ref _faceMaterials[i], _faceRenderers[i]).mainTexture = null;  // until its texture arrives
            }
            gameObject.SetActive(true);
            int shown = ++_shown;
            TaskObserver.Observe(LoadFaces(ideal, shown), e => { if (this != null) Fail(OmokageError.From(e)); });
        }

        async Task LoadFaces(IdealResultMessage ideal, int shown)
        {
            var client = _grid.Connection != null ? _grid.Connection.Client : null;
            if (client == null) return;
            var hashes = new List<string>(ideal.Items.Count);
            foreach (var item in ideal.Items) hashes.Add(item.Texture);
            TextureFetchResult result = await client.FetchTexturesAsync(hashes);  // from the client's cache when it has them
            if (this == null || shown != _shown) return;
            for (int i = 0; i < Faces && i < ideal.Items.Count; i++)
            {
                TextureData data;
                if (!result.Textures.TryGetValue(ideal.Items[i].Texture, out data)) continue;
                if (_faceTextures[i] == null)
                {
                    _faceTextures[i] = new Texture2D(2, 2, TextureFormat.RGBA32, false);  // resized by LoadImage
                    _faceTextures[i].name = "omokage ideal neighbour " + i;
                }
                if (_faceTextures[i].LoadImage(data.Data, false)) _faceMaterials[i].mainTexture = _faceTextures[i];
                else Debug.LogWarning("[omokage sample] could not decode the face " + ideal.Items[i].Id + " (" + data.Format + ")");
            }
        }

        void OnCandidatesShown(CandidatesMessage grid)
        {
            if (grid.Step == 1) Hide();  // a new selection: the ideal face was the old one's
        }

        void Fail(OmokageError error)
        {
            var handler = Failed;
            if (handler != null) handler(error);
        }

        void OnDestroy()
        {
            if (_grid != null)
            {
                _grid.IdealShown -= OnIdealShown;
                _grid.CandidatesShown -= OnCandidatesShown;
            }
            if (_previewMaterial != null) Destroy(_previewMaterial);
            for (int i = 0; i < Faces; i++)
            {
                if (_faceMaterials[i] != null) Destroy(_faceMaterials[i]);
                if (_faceTextures[i] != null) Destroy(_faceTextures[i]);
            }
        }
    }
}
