"""Raw pixels, PCA and NMF: the study's three non-neural feature models."""

from __future__ import annotations

from typing import Any

import numpy as np

from omokage.features.base import FeatureModel, check_is_fitted, downsample_nchw
from omokage.imageio import bilinear_matrix


def _side(n_pixels: int) -> int:
    side = int(round((n_pixels / 3) ** 0.5))
    if side * side * 3 != n_pixels:
        raise ValueError(f"expected square RGB images flattened to H*W*3 values, got {n_pixels} values per row")
    return side


class RawPixels(FeatureModel):
    """Pixels themselves, area-downsampled to `resolution` x `resolution` (None keeps full size).

    At 64 x 64 the Euclidean ranking of faces is almost that of 200 x 200 (the small-scale detail
    that downsampling removes contributes little to L2 distance), while distances cost 10x less.
    """

    name = "raw"

    def __init__(self, resolution: int | None = 64):
        self.resolution = resolution

    def fit(self, X, y=None):
        X = self._check_input(X)
        self.n_features_in_ = X.shape[1]
        self.input_side_ = _side(X.shape[1])
        out = self.resolution or self.input_side_
        self._n_features_out = out * out * 3
        return self

    def transform(self, X):
        check_is_fitted(self)
        X = self._check_input(X)
        s, r = self.input_side_, (self.resolution or self.input_side_)
        if r == s:
            return X.copy()
        # area downsampling in numpy (serving needs no torch); the same as torch's interpolate(mode="area")
        return downsample_nchw(X, s, r).transpose(0, 2, 3, 1).reshape(len(X), -1)

    def inverse_transform(self, Z):
        check_is_fitted(self)
        Z = np.asarray(Z, dtype=np.float32)
        s, r = self.input_side_, (self.resolution or self.input_side_)
        if r == s:
            return Z.copy()
        # bilinear upsampling in numpy (an upload's reconstruction imports no torch): torch's interpolate(
        # mode="bilinear", align_corners=False), one axis at a time
        n, B = len(Z), bilinear_matrix(r, s)
        up = B @ Z.reshape(n, r, r * 3)                                          # (n, s, r*3): rows upsampled
        up = B @ up.reshape(n, s, r, 3).transpose(0, 2, 1, 3).reshape(n, r, s * 3)   # (n, x, y*3): columns
        return np.clip(up.reshape(n, s, s, 3).transpose(0, 2, 1, 3).reshape(n, -1), 0.0, 1.0)

    def _fitted_arrays(self):
        return {"input_side": np.array([self.input_side_], dtype=np.int64)}

    def _restore(self, arrays, scalars):
        self.input_side_ = int(arrays["input_side"][0])


def _orthonormalize(A: np.ndarray) -> np.ndarray:
    """Orthonormal basis of a tall, skinny matrix's columns by CholeskyQR2 (two rounds, Gram in float64).

    numpy's Householder QR of a 120,000 x 40 matrix takes ~1.5 s here; this takes ~20 ms.
    """
    for _ in range(2):
        gram = A.T.astype(np.float64) @ A.astype(np.float64)
        gram += np.eye(len(gram)) * (1e-10 * np.trace(gram) / len(gram) + 1e-30)  # rank-deficient input
        R = np.linalg.cholesky(gram).T
        A = A @ np.linalg.inv(R).astype(np.float32)
    return A


class PCAFeatures(FeatureModel):
    """PCA to `n_components` (30 in the study) by randomized SVD (Halko et al. 2011) in float32.

    The data are centred implicitly (X_c Ω = X Ω − 1 μᵀΩ) rather than by copying the 700 MB matrix,
    and `iterated_power=2` power iterations reach the explained variance of an exact SVD to about
    1e-3 (tests/test_features.py). Six passes over X in all.
    """

    name = "pca"

    def __init__(self, n_components: int = 30, iterated_power: int = 2, n_oversamples: int = 10,
                 random_state: int = 0):
        self.n_components = n_components
        self.iterated_power = iterated_power
        self.n_oversamples = n_oversamples
        self.random_state = random_state

    def fit(self, X, y=None):
        X = self._check_input(X)
        n, d = X.shape
        k = min(self.n_components, n, d)
        width = min(k + self.n_oversamples, n, d)
        mean = X.mean(axis=0, dtype=np.float64).astype(np.float32)

        def centred_times(M):      # X_c @ M  (n x width)
            return X @ M - (mean @ M)[None, :]

        def centred_t_times(M):    # X_cᵀ @ M (d x width)
            return X.T @ M - np.outer(mean, M.sum(axis=0))

        rng = np.random.default_rng(self.random_state)
        Q = _orthonormalize(centred_times(rng.standard_normal((d, width), dtype=np.float32)))
        for _ in range(self.iterated_power):
            Q = _orthonormalize(centred_times(_orthonormalize(centred_t_times(Q))))
        Bt = centred_t_times(Q)                        # d x width, = (Qᵀ X_c)ᵀ
        # SVD of the short, wide B through its width x width Gram matrix (LAPACK's SVD of a
        # 40 x 120,000 matrix takes seconds here; this takes milliseconds)
        evals, U_b = np.linalg.eigh(Bt.T.astype(np.float64) @ Bt.astype(np.float64))
        order = np.argsort(evals)[::-1][:k]
        S = np.sqrt(np.maximum(evals[order], 0.0))
        Vt = ((Bt @ U_b[:, order].astype(np.float32)) / np.maximum(S, 1e-12).astype(np.float32)).T
        # sign convention of sklearn's svd_flip: the largest loading of each component is positive
        signs = np.sign(Vt[np.arange(k), np.abs(Vt).argmax(axis=1)])
        signs[signs == 0] = 1
        self.components_ = (Vt * signs[:, None]).astype(np.float32)
        self.mean_ = mean
        self.explained_variance_ = (S[:k] ** 2 / max(n - 1, 1)).astype(np.float32)
        sum_sq = float(np.einsum("ij,ij->i", X, X).sum(dtype=np.float64))
        total = (sum_sq - n * float(mean.astype(np.float64) @ mean)) / max(n - 1, 1)
        self.explained_variance_ratio_ = (self.explained_variance_ / total).astype(np.float32)
        self.n_features_in_ = d
        self._n_features_out = k
        return self

    def transform(self, X):
        check_is_fitted(self)
        X = self._check_input(X)
        # (X − μ)Cᵀ without materialising X − μ (a 700 MB copy for a 1,462-face catalog)
        return X @ self.components_.T - self.mean_ @ self.components_.T

    def inverse_transform(self, Z):
        check_is_fitted(self)
        return np.asarray(Z, dtype=np.float32) @ self.components_ + self.mean_

    def _fitted_arrays(self):
        return {"components": self.components_, "mean": self.mean_, "explained_variance": self.explained_variance_,
                "explained_variance_ratio": self.explained_variance_ratio_}

    def _restore(self, arrays, scalars):
        self.components_ = arrays["components"]
        self.mean_ = arrays["mean"]
        self.explained_variance_ = arrays["explained_variance"]
        self.explained_variance_ratio_ = arrays["explained_variance_ratio"]


class NMFFeatures(FeatureModel):
    """Non-negative matrix factorisation X ≈ W H with W, H ≥ 0, `n_components` parts.

    Solved with HALS (hierarchical alternating least squares, Cichocki & Phan 2009) in float32,
    initialised by NNDSVDa. sklearn's NMF computes in float64 and took 83 s for 30 iterations on
    1,462 x 120,000 here; HALS needs the same two big products per sweep (XᵀW, XHᵀ) in float32 and
    converges in fewer sweeps: 40 sweeps reach the error sklearn reaches in 60 (`omokage bench fit`).
    `transform` solves for W with H fixed (same HALS updates).
    """

    name = "nmf"

    def __init__(self, n_components: int = 30, max_iter: int = 40, tol: float = 1e-4,
                 transform_iter: int = 100, random_state: int = 0):
        self.n_components = n_components
        self.max_iter = max_iter
        self.tol = tol
        self.transform_iter = transform_iter
        self.random_state = random_state

    # -- HALS updates ------------------------------------------------------------------------
    @staticmethod
    def _update_w(W: np.ndarray, XHt: np.ndarray, HHt: np.ndarray) -> None:
        """One sweep over W's columns: W[:, j] = max(0, W[:, j] + (XHᵀ[:, j] - W HHᵀ[:, j]) / HHᵀ[j, j])."""
        eps = np.float32(1e-10)
        for j in range(W.shape[1]):
            W[:, j] = np.maximum(eps, W[:, j] + (XHt[:, j] - W @ HHt[:, j]) / max(HHt[j, j], eps))

    def fit(self, X, y=None):
        self.fit_transform(X)
        return self

    def fit_transform(self, X, y=None):
        X = self._check_input(X)
        if X.min() < 0:
            raise ValueError("nmf: input must be non-negative")
        n, d = X.shape
        k = min(self.n_components, n, d)
        W, H = self._nndsvda(X, k)
        norm_x = float(np.einsum("ij,ij->", X, X, dtype=np.float64))
        prev = np.inf
        self.n_iter_ = 0
        Ht = np.asfortranarray(H.T)  # column sweeps over Hᵀ read contiguous memory
        err = norm_x
        for it in range(self.max_iter):
            # W-step with H fixed
            self._update_w(W, X @ Ht, Ht.T @ Ht)
            # H-step with W fixed (the transposed problem, sweeping Hᵀ's columns)
            XtW, WtW = X.T @ W, W.T @ W
            self._update_w(Ht, XtW, WtW)
            self.n_iter_ = it + 1
            # ‖X − WH‖² = ‖X‖² − 2⟨XᵀW, Hᵀ⟩ + ⟨WᵀW, HHᵀ⟩, from products the sweep already made
            err = norm_x - 2 * float(np.einsum("ij,ij->", XtW, Ht, dtype=np.float64)) \
                + float(np.einsum("ij,ij->", WtW, Ht.T @ Ht, dtype=np.float64))
            if prev - err < self.tol * prev:
                break
            prev = err
        self.components_ = np.ascontiguousarray(Ht.T, dtype=np.float32)
        self.reconstruction_err_ = float(np.sqrt(max(err, 0.0)))
        self.n_features_in_ = d
        self._n_features_out = k
        return W

    def _nndsvda(self, X, k):
        """NNDSVD with zeros filled by the mean (Boutsidis & Gallopoulos 2008), as sklearn's 'nndsvda'."""
        from sklearn.utils.extmath import randomized_svd   # a fit's, not a served model's: sklearn imports in ~2 s
        U, S, V = randomized_svd(X, k, n_iter=2, random_state=self.random_state)
        W = np.zeros((X.shape[0], k), dtype=np.float32)
        H = np.zeros((k, X.shape[1]), dtype=np.float32)
        W[:, 0] = np.sqrt(S[0]) * np.abs(U[:, 0])
        H[0, :] = np.sqrt(S[0]) * np.abs(V[0, :])
        for j in range(1, k):
            x, y = U[:, j], V[j, :]
            xp, xn = np.maximum(x, 0), np.maximum(-x, 0)
            yp, yn = np.maximum(y, 0), np.maximum(-y, 0)
            xpn, ypn, xnn, ynn = map(np.linalg.norm, (xp, yp, xn, yn))
            mp, mn = xpn * ypn, xnn * ynn
            if mp > mn:
                u, v, sigma = xp / (xpn or 1), yp / (ypn or 1), mp
            else:
                u, v, sigma = xn / (xnn or 1), yn / (ynn or 1), mn
            lbd = np.sqrt(S[j] * sigma)
            W[:, j] = lbd * u
            H[j, :] = lbd * v
        avg = np.float32(X.mean())
        W[W == 0] = avg / 100
        H[H == 0] = avg / 100
        return W, H

    def transform(self, X):
        check_is_fitted(self)
        X = self._check_input(X)
        if X.min() < 0:
            raise ValueError("nmf: input must be non-negative")
        H = self.components_
        HHt = H @ H.T
        XHt = X @ H.T
        # warm start: least squares clipped at zero, then HALS sweeps with H fixed
        W = np.maximum(np.linalg.lstsq(HHt, XHt.T, rcond=None)[0].T, 1e-6).astype(np.float32)
        for _ in range(self.transform_iter):
            self._update_w(W, XHt, HHt)
        return W

    def inverse_transform(self, Z):
        check_is_fitted(self)
        return np.asarray(Z, dtype=np.float32) @ self.components_

    def _fitted_arrays(self):
        return {"components": self.components_}

    def _fitted_scalars(self) -> dict[str, Any]:
        return {"reconstruction_err": self.reconstruction_err_, "n_iter": self.n_iter_}

    def _restore(self, arrays, scalars):
        self.components_ = arrays["components"]
        self.reconstruction_err_ = scalars.get("reconstruction_err")
        self.n_iter_ = scalars.get("n_iter")
