"""Hilbert-Schmidt Independence Criterion (HSIC) with RBF kernels, the statistic ReBias regularises with.

For paired samples ``x_i, y_i`` (i = 1..m) with kernel matrices ``K_ij = k(x_i, x_j)``, ``L_ij = l(y_i, y_j)``:

* biased estimator (Gretton et al., ALT 2005): ``HSIC_0 = tr(K H L H) / (m - 1)^2`` with ``H = I - 11^T / m``;
* unbiased estimator (Song et al., JMLR 2012), the one ReBias uses: with ``K~``, ``L~`` the kernel matrices with
  their diagonals set to zero,
  ``HSIC_1 = [tr(K~ L~) + 1^T K~ 1 1^T L~ 1 / ((m-1)(m-2)) - 2/(m-2) 1^T K~ L~ 1] / (m (m-3))``.

Both are 0 in expectation when ``x`` and ``y`` are independent. RBF kernel: ``k(a, b) = exp(-|a-b|^2 / (2 s^2))``.
(The official ReBias code, clovaai/rebias ``criterions/hsic.py``, subtracts the diagonal as a row vector rather
than zeroing it; for an RBF kernel, whose diagonal is all ones, that shifts every entry by a constant, which the
unbiased estimator is invariant to, so the two agree.)
"""

from __future__ import annotations

import torch


def rbf_kernel(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """``exp(-|x_i - x_j|^2 / (2 sigma^2))`` for the rows of ``x`` (flattened per sample)."""
    x = x.reshape(x.shape[0], -1)
    sq = (x * x).sum(dim=1)
    dist = (sq[:, None] + sq[None, :] - 2.0 * (x @ x.T)).clamp_min(0.0)
    return torch.exp(-dist / (2.0 * sigma**2))


def hsic_biased(k: torch.Tensor, l: torch.Tensor) -> torch.Tensor:
    """Biased HSIC estimate from two kernel matrices."""
    m = k.shape[0]
    kc = k - k.mean(dim=0, keepdim=True)
    lc = l - l.mean(dim=0, keepdim=True)
    return torch.trace(kc @ lc) / (m - 1) ** 2


def hsic_unbiased(k: torch.Tensor, l: torch.Tensor) -> torch.Tensor:
    """Unbiased HSIC estimate from two kernel matrices (needs at least 4 samples)."""
    m = k.shape[0]
    if m < 4:
        raise ValueError(f"the unbiased HSIC estimator needs at least 4 samples, got {m}")
    eye = torch.eye(m, dtype=torch.bool, device=k.device)
    kt = k.masked_fill(eye, 0.0)
    lt = l.masked_fill(eye, 0.0)
    term1 = (kt * lt.T).sum()
    term2 = kt.sum() * lt.sum() / ((m - 1) * (m - 2))
    term3 = 2.0 * (kt.sum(dim=0) @ lt.sum(dim=0)) / (m - 2)
    return (term1 + term2 - term3) / (m * (m - 3))


def rbf_hsic(x: torch.Tensor, y: torch.Tensor, sigma_x: float = 1.0, sigma_y: float | None = None,
             estimator: str = "unbiased") -> torch.Tensor:
    """HSIC between the samples ``x`` and ``y`` (rows paired) with RBF kernels of widths ``sigma_x``/``sigma_y``."""
    k = rbf_kernel(x.float(), sigma_x)
    l = rbf_kernel(y.float(), sigma_x if sigma_y is None else sigma_y)
    if estimator == "unbiased":
        return hsic_unbiased(k, l)
    if estimator == "biased":
        return hsic_biased(k, l)
    raise ValueError(f"unknown HSIC estimator {estimator!r}; valid: unbiased, biased")


def median_sigma(x: torch.Tensor) -> float:
    """The median pairwise distance of the rows of ``x`` (ReBias's adaptive kernel width, "median")."""
    x = x.reshape(x.shape[0], -1).float()
    dist = torch.cdist(x, x)
    upper = dist[torch.triu(torch.ones_like(dist, dtype=torch.bool), diagonal=1)]
    return float(upper.median()) if upper.numel() else 1.0
