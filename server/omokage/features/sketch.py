"""The sketch model: a partial drawing → the PCA latent of the face it most likely shows, in closed form.

With PCA the generator is linear, x ≈ μ + zᵀW, and so are the catalog's sketch maps in z (fitted by least squares
over the catalog):

    ink(z) ≈ a_ink + zᵀB_ink,    colour(z) ≈ a_col + zᵀB_col

A drawing observes a few entries of these maps (the pixels near its lines, the pixels under its paint: `Observations`).
With the PCA prior z ~ N(0, diag(explained variance)) and each map's residual variance as the noise, the posterior mean
of z given the observed entries M is one small solve per update (Bayesian linear regression):

    (B_Mᵀ B_M / σ² + Λ⁻¹) z = B_Mᵀ (s_M − a_M) / σ²

so an empty canvas gives the average face, a few strokes move z only along what they constrain, and a finished
drawing pins it down. Cost per update: |M|·k² for the Gram matrix and a k × k solve (k = 30); updates of many
sessions are solved as one batch.

A `FeatureModel` (scikit-learn's shape): `transform` and `inverse_transform` are its PCA's (so it is self-contained
and its latent is the served `pca` model's on the same catalog); `project` is the sketch part. Saved without pickle
in models/sketch/VERSION/.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from omokage.features.base import FeatureModel, check_is_fitted
from omokage.features.linear import PCAFeatures, _side
from omokage.sketch.canvas import Observations
from omokage.sketch.lineart import sketch_maps


class SketchModel(FeatureModel):
    name = "sketch"

    def __init__(self, n_components: int = 30, resolution: int = 32, random_state: int = 0, chunk: int = 256,
                 calibration_faces: int = 64):
        self.n_components = n_components
        self.resolution = resolution
        self.random_state = random_state
        self.chunk = chunk
        self.calibration_faces = calibration_faces

    def fit(self, X, y=None, latent: PCAFeatures | None = None):
        """Fit on the catalog matrix X (n, S·S·3); `latent`, a PCA already fitted on X with the same settings, saves
        fitting it again."""
        X = self._check_input(X)
        side = _side(X.shape[1])
        if latent is None:
            latent = PCAFeatures(n_components=self.n_components, random_state=self.random_state).fit(X)
        Z = latent.transform(X).astype(np.float64)
        ink, colour = [], []
        for start in range(0, len(X), self.chunk):   # the maps of a few hundred faces at a time: bounded memory
            i, c = sketch_maps(X[start:start + self.chunk].reshape(-1, side, side, 3), self.resolution)
            ink.append(i)
            colour.append(c)
        ink, colour = np.concatenate(ink), np.concatenate(colour)
        self.latent_ = latent
        self.prior_var_ = np.maximum(latent.explained_variance_.astype(np.float64), 1e-8)
        # ridge towards the prior: a catalog smaller than k + a few faces still gives a well-posed fit
        gram = Z.T @ Z + np.diag(1e-3 * self.prior_var_.mean() * np.ones(len(self.prior_var_)))
        self.ink_mean_, self.ink_basis_, self.ink_noise_ = self._regress(Z, gram, ink)
        self.colour_mean_, self.colour_basis_, self.colour_noise_ = self._regress(Z, gram, colour)
        # the catalog's own maps, for ranking faces by how well each explains a drawing (`log_likelihood`)
        self.catalog_ink_, self.catalog_colour_ = ink, colour
        self.n_features_in_ = X.shape[1]
        self._n_features_out = latent.n_features_out
        self._calibrate(X.reshape(-1, side, side, 3))
        return self

    def _calibrate(self, faces: np.ndarray) -> None:
        """Fit the likelihood's two numbers on simulated drawings of a sample of catalog faces (their line art traced
        with a little wobble, cut to 20, 50 or 100% of the strokes, half of them with a few strokes of the face's
        colours), so they follow the catalog's style rather than constants:

        - the mismatch variance per observed entry of each map (ink, colour) between a drawing and its face;
        - a tempering factor: neighbouring entries are not independent (the maps are blurred, strokes are long), so
          the plain Gaussian is far too sure of itself; the factor that maximises the log-probability of the drawn
          face among the catalog's is kept (a proper scoring rule: calibrated, not merely ranked)."""
        from omokage.sketch.canvas import SketchCanvas
        from omokage.sketch.simulate import cut, line_strokes, paint_strokes
        rng = np.random.default_rng(self.random_state)
        chosen = rng.choice(len(faces), min(self.calibration_faces, len(faces)), replace=False)
        drawings = []
        for n, i in enumerate(chosen):
            img = (faces[i] * 255).round().astype(np.uint8)
            strokes = cut(line_strokes(img, jitter=0.005, rng=rng), (0.2, 0.5, 1.0)[n % 3])
            if n % 2:
                strokes += paint_strokes(img, rng=rng)
            canvas = SketchCanvas(self.resolution)
            for stroke in strokes:
                canvas.add(stroke)
            drawings.append(canvas.observations())
        ink_err = np.concatenate([d.ink - self.catalog_ink_[i, d.ink_idx] for d, i in zip(drawings, chosen)])
        colour_err = np.concatenate([d.colour - self.catalog_colour_[i, d.colour_idx] for d, i in zip(drawings, chosen)])
        self.ink_mismatch_ = max(float(np.mean(ink_err ** 2)), 1e-4) if len(ink_err) else 0.05
        self.colour_mismatch_ = max(float(np.mean(colour_err ** 2)), 1e-4) if len(colour_err) else 0.01
        self.temper_ = 1.0
        L = self.log_likelihood(drawings).astype(np.float64)
        best, best_score = 1.0, -np.inf
        for beta in np.logspace(-4, 0, 41):
            S = beta * L
            S -= S.max(axis=1, keepdims=True)
            logp = S[np.arange(len(chosen)), chosen] - np.log(np.exp(S).sum(axis=1))
            if logp.mean() > best_score:
                best, best_score = float(beta), float(logp.mean())
        self.temper_ = best

    @staticmethod
    def _regress(Z, gram, Y):
        mean = Y.mean(axis=0, dtype=np.float64)
        basis = np.linalg.solve(gram, Z.T @ (Y - mean))                 # (k, m)
        resid = Y - mean - Z @ basis
        noise = max(float(np.mean(resid ** 2)), 1e-6)                  # per-entry residual variance
        return mean.astype(np.float32), basis.astype(np.float32), noise

    # -- the PCA part: a self-contained feature model ------------------------------------------------------------
    def transform(self, X):
        check_is_fitted(self)
        return self.latent_.transform(X)

    def inverse_transform(self, Z):
        check_is_fitted(self)
        return self.latent_.inverse_transform(Z)

    # -- the sketch part -------------------------------------------------------------------------------------------
    def project(self, drawings: Sequence[Observations]) -> np.ndarray:
        """Posterior mean latent (len(drawings), k) of each drawing; an empty drawing gives the average face (0)."""
        check_is_fitted(self)
        k = len(self.prior_var_)
        grams = np.empty((len(drawings), k, k))
        rhs = np.empty((len(drawings), k))
        prior = np.diag(1.0 / self.prior_var_)
        for n, obs in enumerate(drawings):
            if obs.resolution != self.resolution:
                raise ValueError(f"a drawing at resolution {obs.resolution} for a sketch model at {self.resolution}")
            Bi = self.ink_basis_[:, obs.ink_idx]
            Bc = self.colour_basis_[:, obs.colour_idx]
            grams[n] = (Bi @ Bi.T) / self.ink_noise_ + (Bc @ Bc.T) / self.colour_noise_ + prior
            rhs[n] = (Bi @ (obs.ink - self.ink_mean_[obs.ink_idx])) / self.ink_noise_ \
                + (Bc @ (obs.colour - self.colour_mean_[obs.colour_idx])) / self.colour_noise_
        return np.linalg.solve(grams, rhs[..., None])[..., 0].astype(np.float32)

    def log_likelihood(self, drawings: Sequence[Observations]) -> np.ndarray:
        """(len(drawings), n_items): log-likelihood of each drawing had the user drawn catalog face i: a Gaussian on
        the observed entries with the calibrated mismatch as variance, tempered by the calibrated factor (see
        `_calibrate`).

        Computed for a whole batch as matrix products over the full maps (Σ_M (o − e)² = Σ o² − 2 e·o + e²·m, with
        o and m zero off the drawing): a few GEMMs instead of a gather per drawing."""
        check_is_fitted(self)
        r2 = self.resolution ** 2
        B = len(drawings)
        o_ink = np.zeros((r2, B), np.float32)
        m_ink = np.zeros((r2, B), np.float32)
        o_col = np.zeros((3 * r2, B), np.float32)
        m_col = np.zeros((3 * r2, B), np.float32)
        const = np.zeros(B)
        for b, obs in enumerate(drawings):
            o_ink[obs.ink_idx, b] = obs.ink
            m_ink[obs.ink_idx, b] = 1.0
            o_col[obs.colour_idx, b] = obs.colour
            m_col[obs.colour_idx, b] = 1.0
            const[b] = (float(obs.ink @ obs.ink) / self.ink_mismatch_
                        + float(obs.colour @ obs.colour) / self.colour_mismatch_)
        sq = self._squares()
        ink = (sq[0] @ m_ink - 2 * (self.catalog_ink_ @ o_ink)) / self.ink_mismatch_
        col = (sq[1] @ m_col - 2 * (self.catalog_colour_ @ o_col)) / self.colour_mismatch_
        return (-0.5 * self.temper_ * ((ink + col).T + const[:, None])).astype(np.float32)

    def transposed_maps(self) -> tuple[np.ndarray, np.ndarray]:
        """The catalog's ink and colour maps as (entries, faces), made once: a live drawing's update reads the rows of
        the entries that changed, contiguous in this layout."""
        t = getattr(self, "_maps_t", None)
        if t is None:
            t = self._maps_t = (np.ascontiguousarray(self.catalog_ink_.T), np.ascontiguousarray(self.catalog_colour_.T))
        return t

    def transposed_bases(self) -> tuple[np.ndarray, np.ndarray]:
        """The ink and colour bases as (entries, k) float64, made once: a live update reads the rows of the entries
        that changed."""
        t = getattr(self, "_bases_t", None)
        if t is None:
            t = self._bases_t = tuple(np.ascontiguousarray(b.T, dtype=np.float64)
                                      for b in (self.ink_basis_, self.colour_basis_))
        return t

    def _squares(self):
        sq = getattr(self, "_sq", None)
        if sq is None:
            sq = self._sq = (np.square(self.catalog_ink_), np.square(self.catalog_colour_))
        return sq

    def maps(self, Z) -> tuple[np.ndarray, np.ndarray]:
        """The ink and colour maps the model predicts for latents Z (for plots and tests)."""
        Z = np.asarray(Z, dtype=np.float32)
        return (np.clip(self.ink_mean_ + Z @ self.ink_basis_, 0, 1), np.clip(self.colour_mean_ + Z @ self.colour_basis_, 0, 1))

    # -- persistence -----------------------------------------------------------------------------------------------
    def _fitted_arrays(self):
        arrays = {f"latent.{k}": v for k, v in self.latent_._fitted_arrays().items()}
        arrays.update(ink_mean=self.ink_mean_, ink_basis=self.ink_basis_, colour_mean=self.colour_mean_,
                      colour_basis=self.colour_basis_, prior_var=self.prior_var_.astype(np.float64),
                      catalog_ink=self.catalog_ink_, catalog_colour=self.catalog_colour_)
        return arrays

    def _fitted_scalars(self):
        return {"ink_noise": self.ink_noise_, "colour_noise": self.colour_noise_,
                "ink_mismatch": self.ink_mismatch_, "colour_mismatch": self.colour_mismatch_, "temper": self.temper_}

    def _restore(self, arrays, scalars):
        latent = PCAFeatures(n_components=self.n_components, random_state=self.random_state)
        latent._restore({k[len("latent."):]: v for k, v in arrays.items() if k.startswith("latent.")}, {})
        latent.n_features_in_ = int(latent.mean_.shape[0])
        latent._n_features_out = int(latent.components_.shape[0])
        self.latent_ = latent
        self.ink_mean_, self.ink_basis_ = arrays["ink_mean"], arrays["ink_basis"]
        self.colour_mean_, self.colour_basis_ = arrays["colour_mean"], arrays["colour_basis"]
        self.prior_var_ = arrays["prior_var"].astype(np.float64)
        self.ink_noise_, self.colour_noise_ = float(scalars["ink_noise"]), float(scalars["colour_noise"])
        self.ink_mismatch_, self.colour_mismatch_ = float(scalars["ink_mismatch"]), float(scalars["colour_mismatch"])
        self.temper_ = float(scalars["temper"])
        self.catalog_ink_, self.catalog_colour_ = arrays["catalog_ink"], arrays["catalog_colour"]


class LiveDrawing:
    """One drawing's likelihood over the catalog and its latent, kept up to date as it changes.

    `SketchModel.log_likelihood` and `project` cost every observed entry times every face on each call. A live
    drawing changes by a few entries per message (a piece of a stroke touches a few dozen pixels of the 32 x 32
    maps), so this keeps the running sums instead — per face, Σ over observed entries of (o − e)² / σ², and the
    latent's Gram matrix and right-hand side — and updates them with the entries that changed since the last
    update (drawn, erased by an undo or a clear, or changed value). The results are the batch methods' exactly, up
    to float rounding; every `REFRESH` updates the sums are rebuilt from scratch so that rounding cannot pile up.

    Touched by one thread at a time (the server's sketch worker; a connection has at most one update out)."""

    REFRESH = 512

    def __init__(self, model: SketchModel):
        check_is_fitted(model)
        self.model = model
        r2 = model.resolution ** 2
        self._ink_t, self._colour_t = model.transposed_maps()
        self._ink_b, self._colour_b = model.transposed_bases()
        self._empty = (np.zeros(r2, np.float32), np.zeros(r2, bool), np.zeros(3 * r2, np.float32),
                       np.zeros(3 * r2, bool))
        self.reset()

    def reset(self) -> None:
        """Forget every entry: the next update recomputes the drawing from scratch. The sums are made on that update
        (a state that is never updated here, as when a worker process keeps the live sums, costs nothing)."""
        self.sq_err = None
        self.updates = 0

    def _start(self) -> None:
        m = self.model
        self.ink, self.ink_on, self.colour, self.colour_on = (a.copy() for a in self._empty)
        self.sq_err = np.zeros(self._ink_t.shape[1], np.float64)
        self.gram = np.diag(1.0 / m.prior_var_)
        self.rhs = np.zeros(len(m.prior_var_))

    def update(self, drawing: Observations) -> tuple[np.ndarray, np.ndarray]:
        """Bring the sums to `drawing`; returns (log-likelihood over the catalog (n,), the latent's system: solve
        `np.linalg.solve(gram, rhs)` for the posterior-mean latent (k,))."""
        m = self.model
        if drawing.resolution != m.resolution:
            raise ValueError(f"a drawing at resolution {drawing.resolution} for a sketch model at {m.resolution}")
        self.updates += 1
        if self.updates > self.REFRESH:
            self.reset()
            self.updates = 1
        if self.sq_err is None:
            self._start()
        ink, ink_on, colour, colour_on = (a.copy() for a in self._empty)
        ink[drawing.ink_idx], ink_on[drawing.ink_idx] = drawing.ink, True
        colour[drawing.colour_idx], colour_on[drawing.colour_idx] = drawing.colour, True
        self._apply(self._ink_t, self._ink_b, m.ink_mean_, m.ink_mismatch_, m.ink_noise_,
                    self.ink, self.ink_on, ink, ink_on)
        self._apply(self._colour_t, self._colour_b, m.colour_mean_, m.colour_mismatch_, m.colour_noise_,
                    self.colour, self.colour_on, colour, colour_on)
        self.ink, self.ink_on, self.colour, self.colour_on = ink, ink_on, colour, colour_on
        return (-0.5 * m.temper_ * self.sq_err).astype(np.float32), self.latent_system()

    def latent_system(self) -> tuple[np.ndarray, np.ndarray]:
        """(Gram matrix, right-hand side) of the latent's k x k system; the latent is their solve (batched by the
        caller for many drawings: one call instead of one per drawing)."""
        if self.sq_err is None:
            self._start()
        return self.gram, self.rhs

    def _apply(self, maps_t, basis, mean, mismatch, noise, old, old_on, new, new_on) -> None:
        idx = np.flatnonzero((old_on != new_on) | (old != new))
        if not idx.size:
            return
        e = maps_t[idx]                                                    # (|Δ|, n): contiguous rows
        w_new, w_old = new_on[idx].astype(np.float32), old_on[idx].astype(np.float32)
        # Σ_Δ [w'(o' − e)² − w(o − e)²] = Σ (w'o'² − wo²) − 2 (w'o' − wo)·e + (w' − w)·e²: two matrix-vector products
        # (the e² one only over entries that entered or left the drawing), not an elementwise pass over |Δ| x n
        a = w_new * new[idx] - w_old * old[idx]
        c = float(np.dot(w_new, np.square(new[idx])) - np.dot(w_old, np.square(old[idx])))
        delta = c - 2.0 * (a @ e).astype(np.float64)
        moved = np.flatnonzero(w_new != w_old)
        if moved.size:
            delta += ((w_new - w_old)[moved] @ np.square(e[moved])).astype(np.float64)
        self.sq_err += delta / mismatch
        b = basis[idx]                                                     # (|Δ|, k) float64: contiguous rows
        # the Gram matrix counts which entries are observed, not their values: only those that entered or left
        if moved.size:
            bm = b[moved]
            self.gram += (bm.T * (w_new - w_old)[moved]) @ bm / noise
        self.rhs += (w_new * (new[idx] - mean[idx]) - w_old * (old[idx] - mean[idx])) @ b / noise
