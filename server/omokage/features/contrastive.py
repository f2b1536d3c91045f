"""A self-supervised contrastive embedding (SimCLR), trained on the catalog alone and served by ONNX Runtime.

Raw pixels, PCA, NMF and the autoencoder all put two faces close when their *pixels* are close: the same character
drawn a little to the left, or with the head tilted, is far away. This model learns a space in which two random
augmentations of the same face land together and different faces apart (SimCLR, Chen et al. 2020: a small CNN
encoder, a projection head, the NT-Xent / InfoNCE loss over the other views of a batch). The augmentations decide
what the space ignores, so they only change what does not identify a face to a person: random resized crops, small
rotations and shifts, horizontal flips, brightness / contrast / saturation jitter, slight blur and grey-level noise.
Hue is never changed: hair and eye colour are identity.

Features are the projection head's output, L2-normalised and multiplied by sqrt(n_components): Euclidean distance
there is a monotone function of the cosine similarity that the loss trained (‖a − b‖² = 2k(1 − cos)), and the
coordinates' root-mean-square is 1 (the k-NN index and the preference model use Euclidean distances). The
projection output rather than the pre-head representation (256-d): it is 30-d without a second reduction, and on
anime-holoen20 its 1-NN character accuracy (70.3%) beat the representation's, raw (69.1%) or reduced to 30 by PCA
(68.4%); see benchmarks/results/embedding-identity.md.

Training needs torch. Images are area-downsampled to `input_size` first: 48 px by default, which scored as 64 px did
on anime-holoen20 (70.3% vs 70.1%) for less than half the cost of a training step. Serving does not need torch: the
trained encoder is exported to ONNX and `transform` runs it with ONNX Runtime's CPU provider, before and after
loading. `inverse_transform` is a ridge-regression read-out from the features to pixels fitted on the
catalog: a blurry *preview* of what a point in the space looks like, not a generator.

Saved as config.json + model.safetensors (torch weights, kept for fine-tuning, and the read-out) + model.onnx.
"""

from __future__ import annotations

import io
import math
import threading
import warnings
from typing import Any

import numpy as np

from omokage.features.base import FeatureModel, check_is_fitted, downsample_nchw

ONNX_FILE = "model.onnx"
ONNX_OPSET = 17


def _build(n_components: int, width: int, scale: float):
    """Encoder (a stride-2 stem and three stride-2 3x3 conv blocks, global average pooling: 64 px → 4 x 4 x 8·width
    → 8·width), projection head (an MLP), then L2 normalisation x scale. The stem's stride keeps every convolution at
    32 x 32 or less: a stride-1 stem at 64 x 64 tripled the cost of a training step on a CPU."""
    import torch
    from torch import nn

    c = [width, width * 2, width * 4, width * 8]

    def block(i, o, stride=2):
        return [nn.Conv2d(i, o, 3, stride, 1, bias=False), nn.BatchNorm2d(o), nn.ReLU(inplace=True)]

    class Embedding(nn.Module):
        def __init__(self):
            super().__init__()
            layers = block(3, c[0])
            for i, o in zip(c[:-1], c[1:]):
                layers += block(i, o)
            self.encoder = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten())
            self.head = nn.Sequential(nn.Linear(c[-1], c[-1]), nn.ReLU(inplace=True), nn.Linear(c[-1], n_components))

        def project(self, x):           # unnormalised projection, for the loss
            return self.head(self.encoder(x - 0.5))

        def forward(self, x):           # the served features
            return nn.functional.normalize(self.project(x), dim=1) * scale

    torch.manual_seed(0)
    return Embedding()


def augment(src, size: int, gen, min_area: float = 0.55, max_degrees: float = 12.0):
    """A random view of every image in `src` (n, 3, h, w) at size x size: resized crop + rotation + flip in one
    grid_sample, then brightness / contrast / saturation jitter (hue kept), slight blur and grey-level noise."""
    import torch
    import torch.nn.functional as F
    n = src.shape[0]

    def u(lo, hi):
        return lo + (hi - lo) * torch.rand(n, generator=gen)

    area, log_ratio = u(min_area, 1.0), u(math.log(0.8), math.log(1.25))
    sx = torch.sqrt(area * torch.exp(log_ratio)).clamp(max=1.0)
    sy = torch.sqrt(area / torch.exp(log_ratio)).clamp(max=1.0)
    angle = u(-max_degrees, max_degrees) * (math.pi / 180)
    flip = torch.where(torch.rand(n, generator=gen) < 0.5, -1.0, 1.0)
    tx, ty = u(-1, 1) * (1 - sx), u(-1, 1) * (1 - sy)
    cos, sin = torch.cos(angle), torch.sin(angle)
    theta = torch.stack([torch.stack([cos * sx * flip, -sin * sy, tx], 1),
                         torch.stack([sin * sx * flip, cos * sy, ty], 1)], 1)
    grid = F.affine_grid(theta, (n, 3, size, size), align_corners=False)
    x = F.grid_sample(src, grid, mode="bilinear", padding_mode="reflection", align_corners=False)

    grey = x.mean(1, keepdim=True)
    sat = u(0.8, 1.2).view(n, 1, 1, 1)
    x = grey + (x - grey) * sat                               # saturation: scales chroma, keeps hue
    mean = grey.mean((2, 3), keepdim=True)
    x = (x - mean) * u(0.75, 1.25).view(n, 1, 1, 1) + mean    # contrast
    x = x * u(0.8, 1.2).view(n, 1, 1, 1)                      # brightness
    blur = torch.rand(n, generator=gen) < 0.3
    if blur.any():
        k = torch.tensor([0.25, 0.5, 0.25])
        k = (k[:, None] * k[None, :]).expand(3, 1, 3, 3)
        x[blur] = F.conv2d(F.pad(x[blur], (1, 1, 1, 1), mode="replicate"), k, groups=3)
    noise = torch.randn(n, 1, size, size, generator=gen) * u(0.0, 0.03).view(n, 1, 1, 1)
    return (x + noise).clamp(0, 1)                            # grey-level noise: the same on R, G and B


def nt_xent(z1, z2, temperature: float):
    """NT-Xent (InfoNCE over 2n views): each view's positive is the other view of its image."""
    import torch
    import torch.nn.functional as F
    z = F.normalize(torch.cat([z1, z2]), dim=1)
    sim = (z @ z.T) / temperature
    n = len(z1)
    sim = sim.masked_fill(torch.eye(2 * n, dtype=torch.bool), float("-inf"))
    target = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)])
    return F.cross_entropy(sim, target)


class ContrastiveEmbedding(FeatureModel):
    name = "contrastive"

    def __init__(self, n_components: int = 30, input_size: int = 48, width: int = 32, epochs: int = 40,
                 batch_size: int = 128, temperature: float = 0.2, learning_rate: float = 2e-3,
                 weight_decay: float = 1e-4, min_crop_area: float = 0.55, max_rotation: float = 12.0,
                 ridge_alpha: float = 1e-2, n_threads: int | None = None, random_state: int = 0,
                 progress: bool = True):
        self.n_components = n_components
        self.input_size = input_size
        self.width = width
        self.epochs = epochs
        self.batch_size = batch_size
        self.temperature = temperature
        self.learning_rate = learning_rate
        self.weight_decay = weight_decay
        self.min_crop_area = min_crop_area
        self.max_rotation = max_rotation
        self.ridge_alpha = ridge_alpha
        self.n_threads = n_threads
        self.random_state = random_state
        self.progress = progress

    @property
    def scale(self) -> float:
        return math.sqrt(self.n_components)

    def _threads(self) -> int:
        from omokage.features.training import training_threads
        return max(1, self.n_threads) if self.n_threads else training_threads(limit=4)

    def _side(self, X: np.ndarray) -> int:
        from omokage.features.linear import _side
        return _side(X.shape[1])

    # -- training (torch) -------------------------------------------------------------------------
    def fit(self, X, y=None):
        import torch
        X = self._check_input(X)
        if len(X) < 2:
            raise ValueError("contrastive: needs at least 2 images (each batch contrasts a face with the others)")
        side = self._side(X)
        self.input_side_ = side
        self.n_features_in_ = X.shape[1]
        self._n_features_out = self.n_components
        threads = torch.get_num_threads()
        torch.set_num_threads(self._threads())
        try:
            net = self._train(X, side)
        finally:
            torch.set_num_threads(threads)
        self.net_ = net
        self.net_state_ = {k: v.detach().cpu().numpy().copy() for k, v in net.state_dict().items()}
        self.onnx_model_ = self._export(net)
        self._session = None
        Z = self.transform(X)
        self._fit_readout(X, Z)
        return self

    def _train(self, X: np.ndarray, side: int):
        import torch
        from tqdm.auto import tqdm
        torch.manual_seed(self.random_state)
        gen = torch.Generator().manual_seed(self.random_state)
        # the crops' source: 1.5x the training size, so a 55%-area crop is still sampled at full resolution
        src_size = min(side, int(round(self.input_size * 1.5)))
        src = torch.cat([torch.from_numpy(downsample_nchw(X[s:s + 256], side, src_size))
                         for s in range(0, len(X), 256)])
        net = _build(self.n_components, self.width, self.scale)
        opt = torch.optim.AdamW(net.parameters(), lr=self.learning_rate, weight_decay=self.weight_decay)
        batch = min(self.batch_size, len(src))
        per_epoch = len(src) // batch               # drop the last partial batch: fewer negatives, noisier loss
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=self.learning_rate,
                                                    total_steps=max(1, per_epoch * self.epochs))
        bar = tqdm(range(self.epochs), desc="contrastive: training", unit="epoch", disable=not self.progress)
        self.loss_history_ = []
        net.train()
        from omokage.features.training import report_progress
        for epoch in bar:
            perm = torch.randperm(len(src), generator=gen)
            total = 0.0
            for b in range(per_epoch):
                imgs = src[perm[b * batch:(b + 1) * batch]]
                v1 = augment(imgs, self.input_size, gen, self.min_crop_area, self.max_rotation)
                v2 = augment(imgs, self.input_size, gen, self.min_crop_area, self.max_rotation)
                z = net.project(torch.cat([v1, v2]))
                loss = nt_xent(z[:len(imgs)], z[len(imgs):], self.temperature)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
                total += loss.item()
            self.loss_history_.append(total / max(per_epoch, 1))
            bar.set_postfix(loss=f"{self.loss_history_[-1]:.4f}")
            report_progress("contrastive", (epoch + 1) / self.epochs)
        net.eval()
        return net

    def _export(self, net) -> bytes:
        import torch
        f = io.BytesIO()
        with warnings.catch_warnings():   # the TorchScript exporter is deprecated, but needs no onnxscript
            warnings.simplefilter("ignore")
            torch.onnx.export(net, (torch.zeros(1, 3, self.input_size, self.input_size),), f, dynamo=False,
                              input_names=["pixels"], output_names=["features"], opset_version=ONNX_OPSET,
                              dynamic_axes={"pixels": {0: "n"}, "features": {0: "n"}})
        return f.getvalue()

    def _fit_readout(self, X: np.ndarray, Z: np.ndarray) -> None:
        """Ridge regression from features to pixels: W = (ZcᵀZc + αI)⁻¹ ZcᵀX (= ZcᵀXc, as Zc is centred)."""
        z_mean = Z.mean(axis=0, dtype=np.float64)
        Zc = (Z - z_mean).astype(np.float32)
        G = Zc.T.astype(np.float64) @ Zc.astype(np.float64)
        alpha = self.ridge_alpha * np.trace(G) / len(G)
        W = np.linalg.solve(G + alpha * np.eye(len(G)), (Zc.T @ X).astype(np.float64))
        self.readout_weight_ = W.astype(np.float32)
        self.readout_bias_ = (X.mean(axis=0, dtype=np.float64) - z_mean @ W).astype(np.float32)

    def torch_net(self):
        """The trained torch module (rebuilt from the saved weights after a load): for fine-tuning and checks."""
        check_is_fitted(self)
        if getattr(self, "net_", None) is None:
            import torch
            net = _build(self.n_components, self.width, self.scale)
            net.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in self.net_state_.items()})
            self.net_ = net.eval()
        return self.net_

    # -- serving (ONNX Runtime, no torch) ---------------------------------------------------------
    _session_lock = threading.Lock()

    def _ort(self):
        if getattr(self, "_session", None) is None:
            import onnxruntime as ort
            with self._session_lock:
                if getattr(self, "_session", None) is None:
                    opts = ort.SessionOptions()
                    opts.intra_op_num_threads = self._threads()
                    opts.inter_op_num_threads = 1
                    self._session = ort.InferenceSession(self.onnx_model_, opts, providers=["CPUExecutionProvider"])
        return self._session

    def warm(self) -> None:
        self._ort()

    def preprocess(self, X: np.ndarray) -> np.ndarray:
        """(n, H*W*3) rows → the network's (n, 3, input_size, input_size) input."""
        return downsample_nchw(X, self.input_side_, self.input_size)

    def transform(self, X):
        check_is_fitted(self)
        X = self._check_input(X)
        if X.shape[1] != self.n_features_in_:
            raise ValueError(f"contrastive: expected rows of {self.n_features_in_} values "
                             f"({self.input_side_}x{self.input_side_}x3), got {X.shape[1]}")
        session = self._ort()
        out = [session.run(None, {"pixels": self.preprocess(X[s:s + 256])})[0] for s in range(0, len(X), 256)]
        return np.concatenate(out).astype(np.float32) if out else np.zeros((0, self.n_components), np.float32)

    def inverse_transform(self, Z):
        """A preview, not a generator: the ridge read-out's least-squares pixels for a feature vector (blurry)."""
        check_is_fitted(self)
        Z = np.asarray(Z, dtype=np.float32)
        if Z.ndim != 2 or Z.shape[1] != self.n_components:
            raise ValueError(f"contrastive: expected (n, {self.n_components}) features, got shape {Z.shape}")
        return np.clip(Z @ self.readout_weight_ + self.readout_bias_, 0.0, 1.0)

    # -- persistence --------------------------------------------------------------------------------
    def _fitted_arrays(self):
        return {**{f"net.{k}": v for k, v in self.net_state_.items()},
                "readout_weight": self.readout_weight_, "readout_bias": self.readout_bias_}

    def _fitted_scalars(self) -> dict[str, Any]:
        return {"input_side": self.input_side_, "loss_history": [float(x) for x in self.loss_history_],
                "scale": self.scale, "onnx_opset": ONNX_OPSET}

    def _extra_files(self) -> dict[str, bytes]:
        return {ONNX_FILE: self.onnx_model_}

    def _restore(self, arrays, scalars):
        self.net_state_ = {k[len("net."):]: v for k, v in arrays.items() if k.startswith("net.")}
        self.net_ = None
        self.readout_weight_ = arrays["readout_weight"]
        self.readout_bias_ = arrays["readout_bias"]
        self.input_side_ = int(scalars["input_side"])
        self.loss_history_ = scalars.get("loss_history", [])
        self._session = None

    def _restore_files(self, files: dict[str, bytes]) -> None:
        self.onnx_model_ = files[ONNX_FILE]
