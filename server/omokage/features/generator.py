"""`gen`: a generator that reconstructs faces better than PCA-30 and looks sharper; PCA's latent, a learned residual.

PCA-30's linear decode (`PCAFeatures.inverse_transform`) is the best *linear* map from 30 numbers back to pixels, and
it is blurry: everything the 30 components do not span (edges, hair strands, the line art) is averaged away. This model
keeps PCA's latent (its `transform` *is* the served `pca` model's, fitted with the same settings on the same catalog, so
a point of the PCA space, a sketch projection or a CMA-ES candidate, decodes here unchanged) and learns what the linear
decode gets wrong::

    x̂(z) = clip(μ + zC  +  upsample_S(net(z)),  0, 1)

`net` is a small U-Net that refines the PCA decode itself: its input is the PCA image area-downsampled to
`residual_size` (μ_R + zC_R, linear in z, computed inside the net); z also enters its bottleneck through a linear
layer (global information: which hair style, which eyes). Its convolutions run at `conv_size` (32) and below: a strided
stem takes the 128 px PCA image down to 32 px and a pixel shuffle brings the output back up, so a 128 px residual
costs about what a 64 px one does (a U-Net with convolutions at 64 px cost 4x per step on a CPU). The residual is
bilinearly upsampled to the catalog's size S. Convolutions on the PCA image learn *local* corrections (sharpen this
edge, darken that line), which generalise better to held-out faces than a decoder from z alone. The last layer starts
at zero, so training starts exactly at PCA; the epoch kept is the one with the lowest held-out error, PCA's own
included, so the decoder is never worse than PCA on the faces held out for that choice.

Why 128 px and these settings (benchmarks/results/generator.md, docs/generators.md): on the generated catalog (1,350
faces fitted, 150 held out) a perfect residual at 64 px would bring PCA's held-out RMSE from 0.108 to 0.070 and one at
128 px to 0.051; the trained 128 px residual reached 0.102 against 0.1025 at 64 px, and sharper (squared-Laplacian
energy at full size 0.108 against 0.106; PCA 0.104), for 17% more time per step on one core. At a learning rate of
2e-3 the held-out error jumped tenfold after a few epochs in 7 of the 11 settings tried; at 1e-3 it has not yet.

Loss (at `residual_size`, against the area-downsampled face): MSE plus `edge_weight` x L1 between the image gradients
of the reconstruction and of the face (a high-frequency term: MSE alone is minimised by the blurry conditional mean).
Flips are augmentation (a flipped face is projected by PCA again: its z is not the flip of z). `val_fraction` of the
faces are held out for the choice of epoch; training stops after `patience` epochs without a better one (the anime
crops of anime-holoen20 overfit after about 11 of them). Threads: `training_threads()` (the cores not busy), or
`n_threads`; `device="cuda"` trains on a GPU where torch has one.

Training needs torch. Serving does not: the whole decoder, PCA decode and upsampling included, is exported to ONNX
(dynamic batch axis; input `z` (B, k) float32, output `image` (B, S, S, 3) in [0, 1]) and `inverse_transform` runs it
with ONNX Runtime's CPU provider. `omokage.generators` serves the same file with TensorRT, or the same weights with
torch on a GPU. Saved as config.json + model.safetensors (PCA arrays, net weights) + decoder.onnx.
"""

from __future__ import annotations

import io
import math
import threading
import warnings
from typing import Any

import numpy as np

from omokage.features.base import FeatureModel, check_is_fitted, downsample_nchw
from omokage.features.linear import PCAFeatures

ONNX_FILE = "decoder.onnx"
ONNX_OPSET = 17
INPUT_NAME, OUTPUT_NAME = "z", "image"


def residual_geometry(side: int, residual_size: int, conv_size: int) -> tuple[int, int]:
    """(residual resolution, pixel-shuffle factor f): the residual is `residual_size` (at most the catalog's size S),
    the U-Net's convolutions run at res/f ≤ `conv_size` and below, halving twice, so res is a multiple of 4f."""
    r = min(int(residual_size), int(side)) // 8 * 8
    if r < 8:
        raise ValueError(f"gen: images of {side}x{side} are too small (the residual needs at least 8x8)")
    f = max(1, r // max(4, int(conv_size)))
    return r // (4 * f) * (4 * f), f


def _build(n_components: int, side: int, res: int, width: int, components: np.ndarray, mean: np.ndarray,
           shuffle: int = 2):
    """The decoder as a torch module: z (B, k) → image (B, S, S, 3) in [0, 1]; `residual(z)` gives the training pair
    (PCA image at res, residual at res)."""
    import torch
    from torch import nn
    F = nn.functional

    k = n_components
    c1, c2, c3 = width, width * 2, width * 4
    f = shuffle
    cells = res // (4 * f)
    comps_low = downsample_nchw(np.asarray(components, np.float32), side, res).reshape(k, -1)
    mean_low = downsample_nchw(np.asarray(mean, np.float32)[None], side, res).reshape(-1)

    def conv(i, o, stride=1):
        return nn.Sequential(nn.Conv2d(i, o, 3, stride, 1), nn.LeakyReLU(0.1, inplace=True))

    def up(t):
        return F.interpolate(t, scale_factor=2.0, mode="nearest")

    class ResidualDecoder(nn.Module):
        def __init__(self):
            super().__init__()
            self.register_buffer("components", torch.from_numpy(np.ascontiguousarray(components, np.float32)))
            self.register_buffer("mean", torch.from_numpy(np.ascontiguousarray(mean, np.float32)))
            self.register_buffer("components_low", torch.from_numpy(np.ascontiguousarray(comps_low)))
            self.register_buffer("mean_low", torch.from_numpy(np.ascontiguousarray(mean_low)))
            # every convolution runs at res/f or below: the output comes back to res by a pixel shuffle
            self.e1 = nn.Sequential(nn.Conv2d(3, c1, 2 * f + 1, f, f), nn.LeakyReLU(0.1, inplace=True))
            self.e2 = conv(c1, c2, 2)                                  # res / 2f
            self.e3 = conv(c2, c3, 2)                                  # res / 4f
            self.fc = nn.Linear(k, c3 * cells * cells)
            self.m = nn.Sequential(conv(c3, c3), conv(c3, c3))
            self.d2 = nn.Sequential(conv(c3 + c2, c2), conv(c2, c2))   # res / 2f
            self.d1 = nn.Sequential(conv(c2 + c1, c1), conv(c1, c1))   # res / f
            self.out = nn.Conv2d(c1, 3 * f * f, 3, 1, 1)               # 3 x (f x f) sub-pixels
            nn.init.zeros_(self.out.weight)     # the residual starts at zero: training starts at PCA
            nn.init.zeros_(self.out.bias)

        def residual(self, z):
            low = (z @ self.components_low + self.mean_low).reshape(-1, 3, res, res)
            e1 = self.e1(low - 0.5)
            e2 = self.e2(e1)
            e3 = self.e3(e2) + self.fc(z).reshape(-1, c3, cells, cells)
            d = self.m(e3)
            d = self.d2(torch.cat([up(d), e2], 1))
            d = self.d1(torch.cat([up(d), e1], 1))
            return low, F.pixel_shuffle(self.out(d), f)

        def forward(self, z):
            base = (z @ self.components + self.mean).reshape(-1, side, side, 3)
            _, r = self.residual(z)
            if res != side:
                r = F.interpolate(r, size=(side, side), mode="bilinear", align_corners=False)
            return (base + r.permute(0, 2, 3, 1)).clamp(0.0, 1.0)

    torch.manual_seed(0)
    return ResidualDecoder()


def flip_rows(X: np.ndarray, side: int) -> np.ndarray:
    """Mirror (n, side*side*3) image rows left to right."""
    return np.ascontiguousarray(X.reshape(len(X), side, side, 3)[:, :, ::-1]).reshape(len(X), -1)


def _edge_l1(a, b):
    """Mean L1 distance between the horizontal and vertical finite differences of two (B, 3, H, W) batches."""
    d = a - b
    return (d[..., :, 1:] - d[..., :, :-1]).abs().mean() + (d[..., 1:, :] - d[..., :-1, :]).abs().mean()


class ResidualDecoder(FeatureModel):
    """PCA latent + learned residual decoder (see the module's docstring). `transform` is PCA's projection;
    `inverse_transform` the decoder, run by ONNX Runtime."""

    name = "gen"

    def __init__(self, n_components: int = 30, residual_size: int = 128, conv_size: int = 32, width: int = 32,
                 epochs: int = 30, batch_size: int = 32, learning_rate: float = 1e-3, weight_decay: float = 1e-4,
                 edge_weight: float = 0.05, latent_noise: float = 0.0, val_fraction: float = 0.1, patience: int = 8,
                 n_threads: int | None = None, serve_threads: int = 1, device: str = "cpu", random_state: int = 0,
                 progress: bool = True):
        self.n_components = n_components
        self.residual_size = residual_size
        self.conv_size = conv_size
        self.width = width
        self.epochs = epochs
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.weight_decay = weight_decay
        self.edge_weight = edge_weight
        self.latent_noise = latent_noise
        self.val_fraction = val_fraction
        self.patience = patience
        self.n_threads = n_threads
        self.serve_threads = serve_threads
        self.device = device
        self.random_state = random_state
        self.progress = progress

    # -- helpers ------------------------------------------------------------------------------------
    def _threads(self) -> int:
        from omokage.features.training import training_threads
        return max(1, int(self.n_threads)) if self.n_threads else training_threads()

    def _new_pca(self) -> PCAFeatures:
        """An unfitted PCA with the served `pca` model's settings (PCAFeatures' defaults, this model's n_components
        and random_state: what `omokage fit --models pca` fits)."""
        return PCAFeatures(n_components=self.n_components, random_state=self.random_state)

    def pca_model(self) -> PCAFeatures:
        """The fitted PCA whose latent this model decodes (equal to the served `pca` model fitted on the same catalog
        with the same seed)."""
        check_is_fitted(self)
        return self.pca_

    # -- training (torch) ---------------------------------------------------------------------------
    def fit(self, X, y=None):
        X = self._check_input(X)
        from omokage.features.linear import _side
        side = _side(X.shape[1])
        if len(X) < 4:
            raise ValueError("gen: needs at least 4 images (some are held out for early stopping)")
        res, shuffle = residual_geometry(side, self.residual_size, self.conv_size)
        pca = self._new_pca().fit(X)
        self.pca_ = pca
        self.input_side_ = side
        self.residual_side_ = res
        self.shuffle_ = shuffle
        self.n_features_in_ = X.shape[1]
        self._n_features_out = pca.n_features_out
        from omokage.features.training import torch_threads
        with torch_threads(self._threads()):
            net = self._train(X, side, res)
        self.net_ = net
        self.net_state_ = {k: v.detach().cpu().numpy().copy() for k, v in net.state_dict().items()
                           if not k.startswith(("components", "mean"))}
        self.onnx_model_ = self._export(net)
        self._session = None
        return self

    def _prepare(self, X: np.ndarray, side: int, res: int, chunk: int = 256):
        """PCA codes and area-downsampled targets of every face and of its mirror image."""
        k = self.pca_.n_features_out
        n = len(X)
        Z = np.empty((2, n, k), np.float32)
        T = np.empty((2, n, 3, res, res), np.float32)
        for s in range(0, n, chunk):
            x = X[s:s + chunk]
            xf = flip_rows(x, side)
            Z[0, s:s + chunk], Z[1, s:s + chunk] = self.pca_.transform(x), self.pca_.transform(xf)
            T[0, s:s + chunk], T[1, s:s + chunk] = downsample_nchw(x, side, res), downsample_nchw(xf, side, res)
        return Z, T

    def _train(self, X: np.ndarray, side: int, res: int):
        import torch
        from omokage.features.training import report_progress
        try:
            from tqdm.auto import tqdm
        except ImportError:         # training without tqdm (benchmarks/gpu/decoder_backends.py's machine)
            def tqdm(it, **_):
                return it
        torch.manual_seed(self.random_state)
        gen = torch.Generator().manual_seed(self.random_state)
        Z, T = self._prepare(X, side, res)
        dev = torch.device(self.device)
        Z, T = torch.from_numpy(Z).to(dev), torch.from_numpy(T).to(dev)
        n = len(X)
        rng = np.random.default_rng(self.random_state)
        order = rng.permutation(n)
        n_val = min(max(1, int(round(n * self.val_fraction))), n - 2) if self.val_fraction > 0 else 0
        val, train = torch.from_numpy(order[:n_val]).to(dev), torch.from_numpy(order[n_val:])
        self.validation_indices_ = np.sort(order[:n_val])
        net = _build(self.pca_.n_features_out, side, res, self.width, self.pca_.components_, self.pca_.mean_,
                     self.shuffle_).to(dev)
        params = [p for p in net.parameters() if p.requires_grad]
        opt = torch.optim.AdamW(params, lr=self.learning_rate, weight_decay=self.weight_decay)
        batch = max(2, min(self.batch_size, len(train)))
        per_epoch = math.ceil(len(train) / batch)
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=self.learning_rate,
                                                    total_steps=max(1, per_epoch * self.epochs), pct_start=0.2)
        warmup = math.ceil(0.2 * self.epochs)
        z_scale = torch.from_numpy(np.sqrt(self.pca_.explained_variance_).astype(np.float32)).to(dev)
        z_scale = z_scale * self.latent_noise             # noise on z: a fraction of each component's spread
        self.loss_history_, self.val_history_ = [], []
        best = self.val_pca_mse_ = self._val_mse(net, Z, T, val)
        best_state = {k: t.detach().clone() for k, t in net.state_dict().items()}   # the zero residual: PCA
        self.best_epoch_ = 0
        bar = tqdm(range(self.epochs), desc="gen: training", unit="epoch", disable=not self.progress)
        for epoch in bar:
            net.train()
            perm = train[torch.randperm(len(train), generator=gen)]
            flips = (torch.rand(len(perm), generator=gen) < 0.5).long()
            total = 0.0
            for b in range(per_epoch):
                idx, f = perm[b * batch:(b + 1) * batch].to(dev), flips[b * batch:(b + 1) * batch].to(dev)
                z, target = Z[f, idx], T[f, idx]
                if self.latent_noise > 0:
                    z = z + torch.randn(z.shape, generator=gen).to(dev) * z_scale
                low, r = net.residual(z)
                pred = low + r
                loss = torch.nn.functional.mse_loss(pred, target)
                if self.edge_weight > 0:
                    loss = loss + self.edge_weight * _edge_l1(pred, target)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(params, 1.0)
                opt.step()
                sched.step()
                total += loss.item() * len(idx)
            self.loss_history_.append(total / len(train))
            v = self._val_mse(net, Z, T, val)
            self.val_history_.append(v)
            if v <= best or n_val == 0:
                best, best_state = v, {k: t.detach().clone() for k, t in net.state_dict().items()}
                self.best_epoch_ = epoch + 1
            bar.set_postfix(loss=f"{self.loss_history_[-1]:.5f}", val_mse=f"{v:.5f}")
            report_progress("gen", (epoch + 1) / max(1, self.epochs))
            # counted from the end of the learning rate's warm-up (the first epochs move little from PCA)
            if n_val and self.patience and epoch + 1 - max(self.best_epoch_, warmup) >= self.patience:
                report_progress("gen", 1.0)    # no better epoch for `patience` epochs: overfitting from here on
                break
        net.load_state_dict(best_state)
        return net.cpu().eval()

    @staticmethod
    def _val_mse(net, Z, T, val) -> float:
        """MSE at the residual's resolution on the held-out faces (both orientations)."""
        import torch
        if len(val) == 0:
            return float("inf")
        net.eval()
        total, count = 0.0, 0
        with torch.inference_mode():
            for f in (0, 1):
                for s in range(0, len(val), 128):
                    idx = val[s:s + 128]
                    low, r = net.residual(Z[f, idx])
                    total += float(((low + r).clamp(0, 1) - T[f, idx]).square().sum())
                    count += T[f, idx].numel()
        return total / max(count, 1)

    def _export(self, net) -> bytes:
        import torch
        f = io.BytesIO()
        with warnings.catch_warnings():   # the TorchScript exporter is deprecated, but needs no onnxscript
            warnings.simplefilter("ignore")
            torch.onnx.export(net, (torch.zeros(1, self.pca_.n_features_out),), f, dynamo=False,
                              input_names=[INPUT_NAME], output_names=[OUTPUT_NAME], opset_version=ONNX_OPSET,
                              dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}})
        return f.getvalue()

    def torch_net(self):
        """The decoder as a torch module (rebuilt from the saved weights after a load): for the torch-cuda backend,
        fine-tuning and checks."""
        check_is_fitted(self)
        if getattr(self, "net_", None) is None:
            import torch
            net = _build(self.pca_.n_features_out, self.input_side_, self.residual_side_, self.width,
                         self.pca_.components_, self.pca_.mean_, self.shuffle_)
            state = {k: torch.from_numpy(np.array(v)) for k, v in self.net_state_.items()}
            missing, unexpected = net.load_state_dict(state, strict=False)
            if unexpected or any(not m.startswith(("components", "mean")) for m in missing):
                raise ValueError(f"gen: saved weights do not fit the decoder (missing {missing}, "
                                 f"unexpected {unexpected})")
            self.net_ = net.eval()
        return self.net_

    # -- serving (numpy + ONNX Runtime, no torch) ---------------------------------------------------
    _session_lock = threading.Lock()

    def onnx_session(self, threads: int | None = None):
        """The ONNX Runtime session (CPU provider) that `inverse_transform` uses, made once."""
        if getattr(self, "_session", None) is None:
            import onnxruntime as ort
            with self._session_lock:
                if getattr(self, "_session", None) is None:
                    opts = ort.SessionOptions()
                    opts.intra_op_num_threads = max(1, int(threads or self.serve_threads or 1))
                    opts.inter_op_num_threads = 1
                    self._session = ort.InferenceSession(self.onnx_model_, opts,
                                                         providers=["CPUExecutionProvider"])
        return self._session

    def transform(self, X):
        """PCA's projection: the same numbers as the served `pca` model fitted with the same settings."""
        check_is_fitted(self)
        return self.pca_.transform(X)

    def check_latent(self, Z) -> np.ndarray:
        """Z as a C-contiguous (n, k) float32 matrix of finite numbers, else a ValueError that says what is wrong."""
        check_is_fitted(self)
        return check_latent(Z, self.pca_.n_features_out, self.name)

    def inverse_transform(self, Z):
        """Faces for latent vectors: (n, k) → (n, S*S*3) in [0, 1], by the decoder in ONNX Runtime."""
        Z = self.check_latent(Z)
        session = self._session_or_new()
        out = [session.run(None, {INPUT_NAME: Z[s:s + 64]})[0] for s in range(0, len(Z), 64)]
        if not out:
            return np.zeros((0, self.n_features_in_), np.float32)
        return np.concatenate(out).reshape(len(Z), -1).astype(np.float32, copy=False)

    def _session_or_new(self):
        return self.onnx_session()

    def pca_inverse_transform(self, Z) -> np.ndarray:
        """PCA-30's linear decode of the same latent (the baseline; clipped to [0, 1])."""
        Z = self.check_latent(Z)
        return np.clip(self.pca_.inverse_transform(Z), 0.0, 1.0)

    # -- persistence --------------------------------------------------------------------------------
    def _fitted_arrays(self):
        return {**{f"pca.{k}": v for k, v in self.pca_._fitted_arrays().items()},
                **{f"net.{k}": v for k, v in self.net_state_.items()}}

    def _fitted_scalars(self) -> dict[str, Any]:
        return {"input_side": self.input_side_, "residual_side": self.residual_side_, "shuffle": self.shuffle_,
                "loss_history": [float(x) for x in self.loss_history_],
                "val_history": [_finite(x) for x in self.val_history_], "val_pca_mse": _finite(self.val_pca_mse_),
                "best_epoch": int(self.best_epoch_), "onnx_opset": ONNX_OPSET,
                "onnx_input": INPUT_NAME, "onnx_output": OUTPUT_NAME}

    def _extra_files(self) -> dict[str, bytes]:
        return {ONNX_FILE: self.onnx_model_}

    def _restore(self, arrays, scalars):
        pca = self._new_pca()
        pca._restore({k[len("pca."):]: v for k, v in arrays.items() if k.startswith("pca.")}, {})
        pca.n_features_in_ = self.n_features_in_
        pca._n_features_out = int(pca.components_.shape[0])
        self.pca_ = pca
        self.net_state_ = {k[len("net."):]: v for k, v in arrays.items() if k.startswith("net.")}
        self.net_ = None
        self.input_side_ = int(scalars["input_side"])
        self.residual_side_ = int(scalars["residual_side"])
        self.shuffle_ = int(scalars["shuffle"])
        self.loss_history_ = scalars.get("loss_history", [])
        self.val_history_ = scalars.get("val_history", [])
        self.val_pca_mse_ = scalars.get("val_pca_mse")
        self.best_epoch_ = scalars.get("best_epoch")
        self._session = None

    def _restore_files(self, files: dict[str, bytes]) -> None:
        self.onnx_model_ = files[ONNX_FILE]


def _finite(x) -> float | None:
    """x as a float for config.json, None where it is not finite (no held-out faces: no validation error)."""
    return float(x) if x is not None and math.isfinite(x) else None


def check_latent(Z, width: int, who: str = "gen") -> np.ndarray:
    """Z as a C-contiguous (n, width) float32 matrix of finite numbers, else a ValueError that says what is wrong."""
    Z = np.asarray(Z)
    if Z.ndim == 1:
        raise ValueError(f"{who}: expected a (batch, {width}) matrix of latent vectors, got a vector of shape "
                         f"{Z.shape}; pass z[None] for one")
    if Z.ndim != 2 or Z.shape[1] != width:
        raise ValueError(f"{who}: expected a (batch, {width}) matrix of latent vectors, got shape {Z.shape}")
    if not np.issubdtype(Z.dtype, np.number) or np.issubdtype(Z.dtype, np.complexfloating):
        raise ValueError(f"{who}: latent vectors must be real numbers, got dtype {Z.dtype}")
    Z = np.ascontiguousarray(Z, dtype=np.float32)
    if not np.isfinite(Z).all():
        bad = int((~np.isfinite(Z)).any(axis=1).sum())
        raise ValueError(f"{who}: {bad} latent vector(s) contain NaN or infinity")
    return Z
