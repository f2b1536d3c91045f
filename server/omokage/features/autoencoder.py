"""A convolutional autoencoder with a 30-d latent, in PyTorch.

The study used a fully connected autoencoder that trained for 200,000 s on a GPU. A small
convolutional one trains in minutes on two CPU cores: images are area-downsampled to
`input_size` (64 by default: 128 costs four times as much per epoch on a CPU), encoded by four
stride-2 convolutions into `n_components` numbers, decoded by four transposed convolutions, then
upsampled back to the catalog's size.
Weights are saved as safetensors tensors (no pickle). A load imports no torch (~2.5 s of a server's start, while
the catalog's features are saved with the model): the torch module is built from the saved weights on the first
`transform` / `inverse_transform`, or by `warm()`, which the server calls on its pool once it listens.
"""

from __future__ import annotations

import math
import threading

import numpy as np

from omokage.features.base import FeatureModel, check_is_fitted


def _build(n_components: int, size: int, width: int):
    import torch
    from torch import nn

    feat = size // 16  # after four stride-2 convolutions
    c1, c2, c3, c4 = width, width * 2, width * 4, width * 4

    class ConvAE(nn.Module):
        def __init__(self):
            super().__init__()
            act = nn.LeakyReLU(0.1)
            self.encoder = nn.Sequential(
                nn.Conv2d(3, c1, 4, 2, 1), act,
                nn.Conv2d(c1, c2, 4, 2, 1), nn.BatchNorm2d(c2), act,
                nn.Conv2d(c2, c3, 4, 2, 1), nn.BatchNorm2d(c3), act,
                nn.Conv2d(c3, c4, 4, 2, 1), nn.BatchNorm2d(c4), act,
                nn.Flatten(), nn.Linear(c4 * feat * feat, n_components))
            self.decoder = nn.Sequential(
                nn.Linear(n_components, c4 * feat * feat), act,
                nn.Unflatten(1, (c4, feat, feat)),
                nn.ConvTranspose2d(c4, c3, 4, 2, 1), nn.BatchNorm2d(c3), act,
                nn.ConvTranspose2d(c3, c2, 4, 2, 1), nn.BatchNorm2d(c2), act,
                nn.ConvTranspose2d(c2, c1, 4, 2, 1), nn.BatchNorm2d(c1), act,
                nn.ConvTranspose2d(c1, 3, 4, 2, 1), nn.Sigmoid())

        def forward(self, x):
            return self.decoder(self.encoder(x))

    torch.manual_seed(0)
    return ConvAE()


class ConvAutoencoder(FeatureModel):
    name = "ae"

    def __init__(self, n_components: int = 30, input_size: int = 64, width: int = 24, epochs: int = 30,
                 batch_size: int = 32, learning_rate: float = 2e-3, random_state: int = 0, progress: bool = True):
        self.n_components = n_components
        self.input_size = input_size
        self.width = width
        self.epochs = epochs
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.random_state = random_state
        self.progress = progress

    # -- tensors in and out ---------------------------------------------------------------------
    def _to_input(self, X):
        import torch
        side = int(round(math.sqrt(X.shape[1] / 3)))
        t = torch.from_numpy(np.ascontiguousarray(X)).reshape(-1, side, side, 3).permute(0, 3, 1, 2)
        if side != self.input_size:
            t = torch.nn.functional.interpolate(t, size=(self.input_size, self.input_size), mode="area")
        return t.contiguous()

    def _to_output(self, t):
        import torch
        side = self.input_side_
        if side != self.input_size:
            t = torch.nn.functional.interpolate(t, size=(side, side), mode="bilinear", align_corners=False)
        return t.clamp(0, 1).permute(0, 2, 3, 1).reshape(t.shape[0], -1).numpy()

    def fit(self, X, y=None):
        import torch
        X = self._check_input(X)
        if self.input_size % 16:
            raise ValueError("ae: input_size must be a multiple of 16")
        self.input_side_ = int(round(math.sqrt(X.shape[1] / 3)))
        self.n_features_in_ = X.shape[1]
        self._n_features_out = self.n_components
        torch.manual_seed(self.random_state)
        net = _build(self.n_components, self.input_size, self.width)
        data = self._to_input(X)
        gen = torch.Generator().manual_seed(self.random_state)
        opt = torch.optim.AdamW(net.parameters(), lr=self.learning_rate, weight_decay=1e-5)
        steps = max(1, math.ceil(len(data) / self.batch_size)) * self.epochs
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=self.learning_rate, total_steps=steps)
        from tqdm.auto import tqdm

        from omokage.features.training import training_threads, torch_threads
        with torch_threads(training_threads()):
            self._train(net, data, gen, opt, sched, tqdm)
        net.eval()
        self.net_ = net
        self.net_state_ = None      # the weights are the module's (a load keeps them here until the module is built)
        return self

    def _train(self, net, data, gen, opt, sched, tqdm) -> None:
        import torch

        from omokage.features.training import report_progress
        bar = tqdm(range(self.epochs), desc="ae: training", unit="epoch", disable=not self.progress)
        self.loss_history_ = []
        net.train()
        for epoch in bar:
            perm = torch.randperm(len(data), generator=gen)
            total = 0.0
            for start in range(0, len(data), self.batch_size):
                batch = data[perm[start:start + self.batch_size]]
                if len(batch) < 2:
                    continue  # BatchNorm needs two samples
                # flips are a free augmentation: a mirrored face is still a face
                if torch.rand(1, generator=gen).item() < 0.5:
                    batch = batch.flip(3)
                loss = torch.nn.functional.mse_loss(net(batch), batch)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
                total += loss.item() * len(batch)
            self.loss_history_.append(total / len(data))
            bar.set_postfix(mse=f"{self.loss_history_[-1]:.5f}")
            report_progress("ae", (epoch + 1) / self.epochs)

    # -- the torch module, built on first use after a load ----------------------------------------
    _net_lock = threading.Lock()

    def torch_net(self):
        """The trained torch module. After a load it is built from the saved weights on first use, importing torch:
        once, under a lock, so that first queries on several threads wait for one build rather than race."""
        check_is_fitted(self)
        net = getattr(self, "net_", None)
        if net is None:
            with self._net_lock:
                net = getattr(self, "net_", None)
                if net is None:
                    import torch
                    net = _build(self.n_components, self.input_size, self.width)
                    net.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in self.net_state_.items()})
                    net.eval()
                    self.net_ = net     # published once whole: a reader sees None or the finished module
        return net

    def warm(self) -> None:
        self.torch_net()

    def transform(self, X):
        check_is_fitted(self)
        X = self._check_input(X)
        net = self.torch_net()
        import torch
        out = []
        with torch.inference_mode():
            for start in range(0, len(X), 256):
                out.append(net.encoder(self._to_input(X[start:start + 256])).numpy())
        return np.concatenate(out).astype(np.float32) if out else np.zeros((0, self.n_components), np.float32)

    def inverse_transform(self, Z):
        check_is_fitted(self)
        net = self.torch_net()
        import torch
        Z = torch.from_numpy(np.ascontiguousarray(Z, dtype=np.float32))
        out = []
        with torch.inference_mode():
            for start in range(0, len(Z), 256):
                out.append(self._to_output(net.decoder(Z[start:start + 256])))
        return np.concatenate(out) if out else np.zeros((0, self.n_features_in_), np.float32)

    def _fitted_arrays(self):
        net = getattr(self, "net_", None)
        if net is None:             # loaded and not used since: the saved weights, as loaded (no torch)
            return dict(self.net_state_)
        return {k: v.detach().cpu().numpy() for k, v in net.state_dict().items()}

    def _fitted_scalars(self):
        return {"input_side": self.input_side_, "loss_history": [float(x) for x in self.loss_history_]}

    def _restore(self, arrays, scalars):
        self.net_state_ = arrays    # the module is built from these on first use (torch_net)
        self.net_ = None
        self.input_side_ = int(scalars["input_side"])
        self.loss_history_ = scalars.get("loss_history", [])
