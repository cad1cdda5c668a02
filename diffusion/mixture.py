"""An exact denoiser: data from a Gaussian mixture, whose optimal ε(x_t, t) has a closed form.

Data x_0 ~ Σ_k w_k N(μ_k, Σ_k) in D dimensions. Then q(x_t) = Σ_k w_k N(sqrt(ᾱ_t) μ_k, C_k) with
C_k = ᾱ_t Σ_k + (1 - ᾱ_t) I, and the minimum-MSE noise prediction is
    ε*(x_t, t) = -sqrt(1 - ᾱ_t) ∇ log q(x_t) = sqrt(1 - ᾱ_t) Σ_k r_k(x_t) C_k⁻¹ (x_t - sqrt(ᾱ_t) μ_k),
with responsibilities r_k(x_t) ∝ w_k N(x_t; sqrt(ᾱ_t) μ_k, C_k). Samplers are tested and benchmarked
with it: x has shape [N, D, 1, 1] so it looks like a batch of images.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .forward import v_from_eps, x0_from_eps
from .schedule import Schedule


@dataclass(frozen=True, eq=False)
class GaussianMixture:
    weights: np.ndarray  # [K], sums to 1
    means: np.ndarray  # [K, D]
    covs: np.ndarray  # [K, D, D], symmetric positive definite

    @property
    def mean(self) -> np.ndarray:
        return self.weights @ self.means

    @property
    def cov(self) -> np.ndarray:
        second = np.einsum("k,kij->ij", self.weights, self.covs + np.einsum("ki,kj->kij", self.means, self.means))
        return second - np.outer(self.mean, self.mean)

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """n points [n, D]."""
        k = rng.choice(len(self.weights), size=n, p=self.weights)
        chol = np.linalg.cholesky(self.covs)
        z = rng.standard_normal((n, self.means.shape[1]))
        return self.means[k] + np.einsum("nij,nj->ni", chol[k], z)

    def responsibilities(self, x: np.ndarray, alpha_bar: float = 1.0) -> np.ndarray:
        """r_k(x) [N, K] under q_t (alpha_bar = ᾱ_t; 1 = the data distribution itself)."""
        return self._posterior(x, alpha_bar)[0]

    def _posterior(self, x, alpha_bar):
        d = self.means.shape[1]
        covs = alpha_bar * self.covs + (1 - alpha_bar) * np.eye(d)
        prec = np.linalg.inv(covs)
        diff = x[:, None, :] - np.sqrt(alpha_bar) * self.means[None]  # [N, K, D]
        white = np.einsum("kij,nkj->nki", prec, diff)  # C_k⁻¹ (x - m_k)
        logdet = np.linalg.slogdet(covs)[1]
        logp = np.log(self.weights) - 0.5 * (np.einsum("nki,nki->nk", diff, white) + logdet)
        logp -= logp.max(axis=1, keepdims=True)
        r = np.exp(logp)
        return r / r.sum(axis=1, keepdims=True), white

    def eps(self, x: np.ndarray, alpha_bar: float) -> np.ndarray:
        """ε*(x_t) for x [N, D] at noise level ᾱ_t."""
        r, white = self._posterior(x, alpha_bar)
        return np.sqrt(1 - alpha_bar) * np.einsum("nk,nki->ni", r, white)


def mixture_denoiser(mixture: GaussianMixture, schedule: Schedule, prediction_type: str = "epsilon"):
    """The exact network ``model(x [N,D,1,1], t [N]) -> output`` for ``prediction_type``."""

    def model(x, t):
        t = np.asarray(t)
        if not (t == t[0]).all():
            raise ValueError("mixture_denoiser expects one timestep per call")
        t0 = int(t[0])
        flat = np.asarray(x, dtype=np.float64).reshape(x.shape[0], -1)
        eps = mixture.eps(flat, schedule.alphas_cumprod[t0]).reshape(x.shape)
        if prediction_type == "epsilon":
            out = eps
        elif prediction_type == "v_prediction":
            out = v_from_eps(schedule, x, t0, eps)
        else:
            out = x0_from_eps(schedule, x, t0, eps)
        return out.astype(np.float32)

    return model


def mixture_error(mixture: GaussianMixture, x: np.ndarray) -> dict:
    """Errors of samples x [N, D, ...] against the mixture, each with its standard error.

    weights: mean over samples of r_k(x) (unbiased for w_k under the data); mean; cov (entries).
    Returns {"weights": (err, se), "mean": (err, se), "cov": (err, se)} with arrays of abs errors.
    """
    x = np.asarray(x, dtype=np.float64).reshape(len(x), -1)
    n = len(x)
    r = mixture.responsibilities(x)
    centred = x - mixture.mean
    prods = np.einsum("ni,nj->nij", centred, centred)
    return {
        "weights": (np.abs(r.mean(0) - mixture.weights), r.std(0) / np.sqrt(n)),
        "mean": (np.abs(x.mean(0) - mixture.mean), x.std(0) / np.sqrt(n)),
        "cov": (np.abs(prods.mean(0) - mixture.cov), prods.std(0) / np.sqrt(n)),
    }


def example_mixture() -> GaussianMixture:
    """Three 2-D components with unequal weights and shapes (tests and benchmarks/bench_samplers.py).

    Component standard deviations (~0.25..0.35) are wide compared with the noise left at the last
    step of a 20-step DPM-Solver++ (σ ≈ 0.17 on the linear schedule), whose final jump to σ = 0 returns
    E[x_0 | x_t] and so shrinks structure finer than that; with this mixture the 20-step sampler is
    within sampling error at N = 4000 (narrower components show that bias).
    """
    return GaussianMixture(
        weights=np.array([0.5, 0.3, 0.2]),
        means=np.array([[-1.0, -0.6], [1.0, 0.2], [0.0, 1.2]]),
        covs=np.array([[[0.08, 0.03], [0.03, 0.1]], [[0.12, -0.04], [-0.04, 0.08]], [[0.06, 0.0], [0.0, 0.06]]]),
    )
