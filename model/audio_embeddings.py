"""Start the audio-code embedding rows from the codec's code vectors instead of noise.

Why: a freshly initialised model sees 1024 unrelated random vectors for the audio codes and must learn from a
few minutes of data which codes sound alike. The embedded codec already knows: each code is a k-means centroid of
stacked log-mel frames. Placing each code's row at its (centred) centroid, up to a rotation and one global scale,
makes acoustically close codes close in the embedding from step 0 — for the input side (what the model hears)
and, with tied embeddings, for the output side too (a wrong guess tends to be a code that sounds alike).

The map is distance-preserving up to scale: centre the centroids, take the orthonormal PCA basis (all components
when the centroid dimension fits the hidden size, the leading `hidden` ones otherwise), rotate into the hidden space
by a seeded random orthogonal matrix (so no coordinate of the residual stream is special), and scale to the RMS row
norm of the rows being replaced (so the initialisation's magnitude is kept). Text rows are left alone.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from model.vocab import TokenSpec

if TYPE_CHECKING:  # transformers takes seconds to import; only the annotation needs it
    from transformers import PreTrainedModel


def code_vector_embeddings(vectors_KD: torch.Tensor, hidden: int, target_rms: float,
                           generator: torch.Generator) -> torch.Tensor:
    """`[K, hidden]` rows whose pairwise distances are those of `vectors_KD` (or of its top-`hidden` PCA part)
    times one scale, with RMS row norm `target_rms`."""
    if vectors_KD.ndim != 2 or vectors_KD.shape[0] < 2:
        raise ValueError(f"need a [K >= 2, D] matrix of code vectors, got shape {tuple(vectors_KD.shape)}")
    x_KD = vectors_KD.double() - vectors_KD.double().mean(0)
    _, _, vh_DD = torch.linalg.svd(x_KD, full_matrices=False)
    r = min(vh_DD.shape[0], hidden)
    coords_Kr = x_KD @ vh_DD[:r].T
    rotation_HH, _ = torch.linalg.qr(torch.randn(hidden, hidden, generator=generator, dtype=torch.float64))
    rows_KH = coords_Kr @ rotation_HH[:r]
    rms = rows_KH.pow(2).sum(1).mean().sqrt()
    if rms == 0:
        raise ValueError("all code vectors are identical; they carry nothing to initialise from")
    return (rows_KH * (target_rms / rms)).float()


@torch.no_grad()
def init_audio_embeddings(model: PreTrainedModel, spec: TokenSpec, vectors_KD: torch.Tensor, seed: int) -> None:
    """Overwrite the audio-code rows of the input embedding (and of an untied output head) in place."""
    if vectors_KD.shape[0] != spec.audio_size:
        raise ValueError(f"{vectors_KD.shape[0]} code vectors for a vocabulary of {spec.audio_size} audio codes")
    rows = slice(spec.audio_start, spec.audio_start + spec.audio_size)
    generator = torch.Generator().manual_seed(seed)
    tables = [model.get_input_embeddings().weight]
    head = model.get_output_embeddings()
    if head is not None and head.weight.data_ptr() != tables[0].data_ptr():
        tables.append(head.weight)
    for table in tables:
        target_rms = float(table[rows].double().pow(2).sum(1).mean().sqrt())
        table[rows] = code_vector_embeddings(vectors_KD, table.shape[1], target_rms, generator).to(table.dtype)
