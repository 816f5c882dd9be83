# Copyright (C) 2026 anomalib-medclip developers
# SPDX-License-Identifier: Apache-2.0
"""AdaCLIP's hybrid semantic fusion (HSF), batched and deterministic.

HSF picks the ``5 K`` patches with the highest anomaly probability, clusters their projected tokens (all layers
concatenated) into ``K`` groups, averages each group's tokens over its members and the layers, averages the group
centres and L2-normalises the result (the code's "upgraded" variant, not the paper's "most anomalous cluster").

The original runs scikit-learn's ``KMeans(n_init="auto")`` without a seed, one image at a time on the CPU. Here
:func:`batched_kmeans` runs k-means++ seeding plus Lloyd iterations for the whole batch on the model's device. The
seeding draws one fixed sequence of uniform numbers from ``seed`` and uses it for every image, so an image's clusters
do not depend on the rest of its batch, and results repeat run after run.

Example:
    >>> x = torch.cat([torch.zeros(1, 5, 2), torch.ones(1, 5, 2)], dim=1)
    >>> batched_kmeans(x, 2).unique().numel()
    2
"""

from __future__ import annotations

import random
from collections.abc import Sequence

import torch
import torch.nn.functional as F

__all__ = ["batched_kmeans", "hybrid_semantic_fusion"]


def _kmeans_plus_plus(x: torch.Tensor, k: int, uniforms: torch.Tensor) -> torch.Tensor:
    """k-means++ seeding of ``x`` ``(B, n, d)`` driven by ``uniforms`` ``(k,)``: initial centres ``(B, k, d)``."""
    batch, n, _ = x.shape
    rows = torch.arange(batch, device=x.device)
    first = (uniforms[0] * n).long().clamp(max=n - 1).expand(batch)
    centers = [x[rows, first]]
    closest = (x - centers[0][:, None]).pow(2).sum(-1)  # (B, n) squared distance to the nearest centre
    for j in range(1, k):
        cumulative = closest.cumsum(dim=1)
        target = uniforms[j] * cumulative[:, -1:]
        index = (cumulative < target).sum(dim=1).clamp(max=n - 1)  # searchsorted's left index; ONNX has no searchsorted
        centers.append(x[rows, index])
        closest = torch.minimum(closest, (x - centers[-1][:, None]).pow(2).sum(-1))
    return torch.stack(centers, dim=1)


def _nearest(x: torch.Tensor, centers: torch.Tensor) -> torch.Tensor:
    """Index of the nearest centre ``(B, n)`` from ``|c|^2 - 2 x.c`` (``|x|^2`` is the same for every centre).

    As ``torch.cdist`` computes it for large inputs; ONNX has no ``cdist``.
    """
    return (centers.pow(2).sum(-1)[:, None] - 2 * x @ centers.transpose(1, 2)).argmin(dim=-1)


@torch.no_grad()
def batched_kmeans(x: torch.Tensor, k: int, *, seed: int = 0, max_iter: int = 100) -> torch.Tensor:
    """Cluster labels ``(B, n)`` of ``x`` ``(B, n, d)`` into ``min(k, n)`` clusters, per image, in one batch.

    k-means++ seeding (uniform draws from ``seed``, shared by all images), then Lloyd iterations until no label
    changes (a fixed point is stable, so images that converged early are unaffected by further iterations). An
    emptied cluster keeps its last centre. An exported graph cannot stop on a data-dependent test: it runs all
    ``max_iter`` iterations, which gives the same labels for that reason.
    """
    n = x.shape[1]
    k = min(k, n)
    x = x.float()
    generator = random.Random(seed)  # plain Python numbers: constants in an exported graph (a torch generator is not)
    uniforms = torch.tensor([generator.random() for _ in range(k)], device=x.device)
    centers = _kmeans_plus_plus(x, k, uniforms)
    labels = _nearest(x, centers)
    exporting = torch.compiler.is_exporting() or torch.jit.is_tracing()  # a graph cannot stop on data: all iterations
    for _ in range(max_iter):
        one_hot = F.one_hot(labels, k).to(x.dtype)  # (B, n, k)
        counts = one_hot.sum(dim=1)  # (B, k)
        sums = one_hot.transpose(1, 2) @ x  # (B, k, d)
        centers = torch.where(counts[..., None] > 0, sums / counts.clamp_min(1)[..., None], centers)
        new = _nearest(x, centers)
        if not exporting and torch.equal(new, labels):
            break
        labels = new
    return labels


def hybrid_semantic_fusion(
    tokens: Sequence[torch.Tensor], logits: Sequence[torch.Tensor], k_clusters: int, *, seed: int = 0
) -> torch.Tensor:
    """HSF feature ``(B, D)`` from per-layer normalised patch tokens ``[(B, P, D)]`` and patch logits ``[(B, P, 2)]``.

    Gradients flow through the token averages (the cluster labels are constants), as in the original.
    """
    probs = torch.stack(list(logits)).mean(dim=0).softmax(dim=-1)[..., 1]  # (B, P)
    top = probs.topk(min(probs.shape[1], 5 * k_clusters), dim=1).indices  # (B, n)
    selected = [t.gather(1, top[..., None].expand(-1, -1, t.shape[-1])) for t in tokens]  # [(B, n, D)]
    labels = batched_kmeans(torch.cat(selected, dim=-1).detach(), k_clusters, seed=seed)  # (B, n)
    one_hot = F.one_hot(labels, min(k_clusters, top.shape[1])).to(selected[0].dtype)  # (B, n, k)
    counts = one_hot.sum(dim=1)  # (B, k)
    mean_tokens = torch.stack(selected).mean(dim=0)  # equal members in every layer: layer mean, then cluster mean
    centers = (one_hot.transpose(1, 2) @ mean_tokens) / counts.clamp_min(1)[..., None]  # (B, k, D)
    present = (counts > 0).to(centers.dtype)[..., None]
    fused = (centers * present).sum(dim=1) / present.sum(dim=1)
    return F.normalize(fused, dim=-1)
