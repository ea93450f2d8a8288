"""Seeded, batched Lloyd k-means in torch: the codebook of the embedded audio codec.

Why our own and not sklearn's MiniBatchKMeans: full-batch Lloyd over chunked matmuls uses both cores through
torch's BLAS, converges in ~20 passes for a few thousand codes, and is bit-for-bit repeatable for a seed. Empty
clusters are re-seeded from the points worst served by the current codebook, so no code is wasted.

Shapes: `N` points, `K` codes, `D` feature dims.
"""

from __future__ import annotations

import torch

#: Lloyd stops once fewer than this fraction of points change code in a pass (the last passes of a
#: large codebook shuffle a handful of boundary points and cost as much as the first).
TOLERANCE = 1e-3
#: Rows per distance block: bounds the `(chunk, K)` distance matrix to ~130 MB at K = 4096 in float64.
CHUNK = 4096


def nearest(x_ND: torch.Tensor, centroids_KD: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Index of the nearest centroid per row and the squared distance to it (computed in `x`'s dtype)."""
    c = centroids_KD.to(x_ND.dtype)
    c_sq_K = (c * c).sum(1)
    labels, dists = [], []
    for start in range(0, x_ND.shape[0], CHUNK):
        x = x_ND[start : start + CHUNK]
        d_NK = c_sq_K - 2.0 * (x @ c.T)
        best, idx = d_NK.min(1)
        labels.append(idx)
        dists.append(best + (x * x).sum(1))
    if not labels:
        return torch.zeros(0, dtype=torch.long), torch.zeros(0, dtype=x_ND.dtype)
    return torch.cat(labels), torch.cat(dists).clamp_min(0)


def fit_kmeans(x_ND: torch.Tensor, k: int, n_iter: int, seed: int) -> torch.Tensor:
    """`(K, D)` float32 centroids of `x` after at most `n_iter` Lloyd passes (stops early when nearly stable)."""
    n = x_ND.shape[0]
    if n < k:
        raise ValueError(f"k-means needs at least as many vectors as codes: {n} vectors for {k} codes")
    gen = torch.Generator().manual_seed(seed)
    x = x_ND.to(torch.float32)
    centroids = x[torch.randperm(n, generator=gen)[:k]].clone()
    labels = torch.full((n,), -1, dtype=torch.long)
    for _ in range(n_iter):
        new_labels, dists = nearest(x, centroids)
        changed = int((new_labels != labels).sum())
        labels = new_labels
        if changed <= TOLERANCE * n:
            break
        counts = torch.bincount(labels, minlength=k)
        sums = torch.zeros_like(centroids).index_add_(0, labels, x)
        filled = counts > 0
        centroids[filled] = sums[filled] / counts[filled, None].to(x.dtype)
        empty = (~filled).nonzero().squeeze(1)
        if empty.numel():
            # The worst-served points become new codes; they are far from every centroid, so the next pass
            # gives each of them its own neighbourhood.
            worst = dists.argsort(descending=True)[: empty.numel()]
            centroids[empty] = x[worst]
    return centroids.contiguous()
