"""Retrieval metrics: Recall@K (exact, computed in query chunks) and NMI.

Ranking convention (used by every function here, and by the brute-force check in the tests): the gallery
is ordered by decreasing similarity, ties broken by increasing gallery index. A query *hits* at K when one
of the first K gallery items (the query itself excluded in same-set evaluation) has the query's label.

Because every item ranked before the first positive is a negative, the first positive's 0-based rank is
simply the number of gallery items that precede it in that order. So Recall@K needs no sort and no top-k
(whose tie order torch does not specify): per query we find the best positive (highest similarity, lowest
index among equals) and count the items ordered before it. Only a ``chunk_size x N`` block of similarities
exists at any time, which keeps Stanford Online Products (60,502 test images) within a few hundred MB.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

#: the Recall@K cut-offs of the standard protocols (Oh Song et al. 2016; Liu et al. 2016)
STANDARD_KS: dict[str, tuple[int, ...]] = {
    "cub200": (1, 2, 4, 8),
    "cars196": (1, 2, 4, 8),
    "sop": (1, 10, 100, 1000),
    "inshop": (1, 10, 20, 30, 40, 50),
    "digits_retrieval": (1, 2, 4, 8),
}


def _check_inputs(emb: torch.Tensor, labels: torch.Tensor, what: str) -> None:
    if emb.ndim != 2:
        raise ValueError(f"{what} embeddings must be 2-D (N, D); got shape {tuple(emb.shape)}")
    if labels.ndim != 1 or labels.shape[0] != emb.shape[0]:
        raise ValueError(
            f"{what} labels must be 1-D with one label per embedding ({emb.shape[0]}); "
            f"got shape {tuple(labels.shape)}"
        )


def first_positive_rank(
    query: torch.Tensor,
    query_labels: torch.Tensor,
    gallery: torch.Tensor | None = None,
    gallery_labels: torch.Tensor | None = None,
    *,
    chunk_size: int = 1024,
) -> torch.Tensor:
    """Return, per query, the 0-based rank of its first same-label gallery item (``-1`` if it has none).

    Similarity is the dot product (cosine similarity for L2-normalised embeddings). With ``gallery=None``
    the query set is its own gallery and each query is excluded from its own ranking (leave-one-out, the
    CUB/Cars/SOP protocol). Exact for any ``chunk_size``: only the query dimension is chunked.
    Non-finite embeddings raise ``ValueError``: NaN compares false with everything, which would put a NaN
    best positive at rank 0.
    """
    same_set = gallery is None
    if same_set:
        gallery, gallery_labels = query, query_labels
    elif gallery_labels is None:
        raise ValueError("gallery_labels is required when a gallery is given")
    _check_inputs(query, query_labels, "query")
    _check_inputs(gallery, gallery_labels, "gallery")
    for what, emb in (("query", query), ("gallery", gallery)):
        bad = int((~torch.isfinite(emb)).any(dim=1).sum())
        if bad:
            raise ValueError(f"{bad} {what} embeddings are non-finite (NaN/inf); ranks are undefined")
    if query.shape[1] != gallery.shape[1]:
        raise ValueError(f"query dim {query.shape[1]} != gallery dim {gallery.shape[1]}")
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")

    device = query.device
    gallery = gallery.to(device=device, dtype=query.dtype)
    query_labels = query_labels.to(device)
    gallery_labels = gallery_labels.to(device)
    n_gallery = gallery.shape[0]
    gallery_index = torch.arange(n_gallery, device=device)
    ranks = torch.empty(query.shape[0], dtype=torch.long, device=device)

    for start in range(0, query.shape[0], chunk_size):
        stop = min(start + chunk_size, query.shape[0])
        sim = query[start:stop] @ gallery.T  # (c, N): the only float buffer of that size besides pos_sim
        positive = query_labels[start:stop, None] == gallery_labels[None, :]
        if same_set:
            # the query itself: never a positive, and at -inf it never ranks before a (finite) best positive
            rows = torch.arange(stop - start, device=device)
            positive[rows, rows + start] = False
            sim[rows, rows + start] = float("-inf")
        has_positive = positive.any(dim=1)

        # best positive: highest similarity, then lowest index (argmax returns the first maximal entry)
        pos_sim = sim.masked_fill(~positive, float("-inf"))
        best_sim = pos_sim.max(dim=1, keepdim=True).values
        best_idx = (positive & (pos_sim == best_sim)).to(torch.uint8).argmax(dim=1, keepdim=True)
        del pos_sim

        before = (sim > best_sim) | ((sim == best_sim) & (gallery_index < best_idx))
        count = before.sum(dim=1)
        ranks[start:stop] = torch.where(has_positive, count, torch.full_like(count, -1))
    return ranks


def recall_at_k(
    query: torch.Tensor,
    query_labels: torch.Tensor,
    gallery: torch.Tensor | None = None,
    gallery_labels: torch.Tensor | None = None,
    *,
    ks: Sequence[int] = (1, 2, 4, 8),
    chunk_size: int = 1024,
) -> dict[int, float]:
    """Recall@K for every K in ``ks`` (fractions in [0, 1]), exact, chunked over queries.

    Queries without any positive in the gallery count as misses (they cannot retrieve a match); none of the
    four standard benchmarks has such queries. See :func:`first_positive_rank` for the ranking convention.
    Non-finite (NaN/inf) embeddings, e.g. of a diverged model, give NaN for every K.
    """
    if not ks or any(int(k) < 1 for k in ks):
        raise ValueError(f"ks must be positive integers, got {list(ks)}")
    if query.shape[0] == 0:
        raise ValueError("recall_at_k needs at least one query")
    if not all(bool(torch.isfinite(e).all()) for e in (query, gallery) if e is not None):
        return {int(k): float("nan") for k in ks}
    ranks = first_positive_rank(query, query_labels, gallery, gallery_labels, chunk_size=chunk_size)
    found = ranks >= 0
    n = ranks.numel()
    return {int(k): int((found & (ranks < int(k))).sum().item()) / n for k in ks}


def nmi(embeddings: torch.Tensor | np.ndarray, labels: torch.Tensor | np.ndarray, *, seed: int = 0) -> float:
    """Normalised mutual information between k-means clusters (k = number of classes) and the labels.

    k-means and the score come from scikit-learn; ``n_init=1`` with a fixed seed keeps it deterministic
    (the metric-learning literature runs a single k-means). Non-finite embeddings give NaN.
    """
    from sklearn.cluster import KMeans
    from sklearn.metrics import normalized_mutual_info_score

    x = embeddings.detach().float().cpu().numpy() if isinstance(embeddings, torch.Tensor) else np.asarray(embeddings)
    if not np.all(np.isfinite(x)):
        return float("nan")
    y = labels.detach().cpu().numpy() if isinstance(labels, torch.Tensor) else np.asarray(labels)
    n_clusters = int(np.unique(y).size)
    if n_clusters < 2 or x.shape[0] < n_clusters:
        raise ValueError(f"NMI needs >= 2 classes and at least one sample per cluster; got {n_clusters} classes, "
                         f"{x.shape[0]} samples")
    clusters = KMeans(n_clusters=n_clusters, n_init=1, random_state=seed).fit_predict(x)
    return float(normalized_mutual_info_score(y, clusters))


__all__ = ["STANDARD_KS", "first_positive_rank", "nmi", "recall_at_k"]
