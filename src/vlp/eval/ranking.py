"""Image-text retrieval recall, both directions (COCO / Flickr30k protocol).

Each text belongs to one image; an image usually has several texts (5 in COCO and
Flickr30k). Text → image: a text is right at K when its image is among the K best-scored
images. Image → text: an image is right at K when *any* of its texts is among the K
best-scored texts. Values are percentages, as in the UNITER and ALBEF tables.

Ties are counted against the query: a wrong candidate scored exactly as high as the best
right one ranks ahead of it. A model that scores everything the same therefore gets recall 0
(only a query with fewer than K wrong candidates, where even the worst rank is within K,
counts as found), never an accidental 100.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from vlp.errors import VlpError
from vlp.eval import as_numpy

ArrayLike = Tensor | np.ndarray | Sequence[float] | Sequence[Sequence[float]]


def _checked(scores: ArrayLike, text_to_image: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    s = as_numpy(scores).astype(np.float64)
    owner = as_numpy(text_to_image)
    if s.ndim != 2:
        raise VlpError(f"recall_at_k: scores must be (num_images, num_texts), found shape "
                       f"{tuple(s.shape)}")
    num_images, num_texts = s.shape
    if num_images == 0 or num_texts == 0:
        raise VlpError(f"recall_at_k: no images or no texts (scores of shape {tuple(s.shape)})")
    if np.isnan(s).any():
        raise VlpError("recall_at_k: scores hold NaN (expected finite similarities)")
    if owner.shape != (num_texts,):
        raise VlpError(f"recall_at_k: text_to_image must be ({num_texts},) to match scores "
                       f"{tuple(s.shape)} (num_images, num_texts), found shape "
                       f"{tuple(owner.shape)}")
    if owner.dtype.kind not in "iu":
        raise VlpError(f"recall_at_k: text_to_image must hold integer image indices, found "
                       f"{owner.dtype}")
    if owner.min() < 0 or owner.max() >= num_images:
        bad = int(owner[(owner < 0) | (owner >= num_images)][0])
        raise VlpError(f"recall_at_k: text_to_image holds {bad}, not an image index "
                       f"(0 to {num_images - 1})")
    orphan = np.setdiff1d(np.arange(num_images), owner)
    if orphan.size:
        raise VlpError(f"recall_at_k: image {int(orphan[0])} has no text (every image needs "
                       "at least one for image→text recall)")
    return s, owner.astype(np.int64)


def _text_ranks(s: np.ndarray, owner: np.ndarray) -> np.ndarray:
    # per text: how many wrong images score at least as high as its own image
    right = s[owner, np.arange(s.shape[1])]  # (T,)
    return (s >= right[None, :]).sum(axis=0) - 1  # (T,), minus the right image itself


def _image_ranks(s: np.ndarray, owner: np.ndarray) -> np.ndarray:
    # per image: how many wrong texts score at least as high as its best right text
    own = owner[None, :] == np.arange(s.shape[0])[:, None]  # (I, T)
    best = np.where(own, s, -np.inf).max(axis=1)  # (I,)
    return ((s >= best[:, None]) & ~own).sum(axis=1)  # (I,)


def recall_at_k(scores: ArrayLike, text_to_image: ArrayLike,
                ks: Sequence[int] = (1, 5, 10)) -> dict[str, float]:
    """Recall@K of retrieval in both directions, in percent.

    Args:
        scores: similarity matrix of shape ``(num_images, num_texts)``; higher is better.
        text_to_image: ``(num_texts,)`` integer index of each text's image (a row of
            ``scores``).
        ks: the cut-offs.

    Returns:
        ``t2i_r{K}`` (text → image) and ``i2t_r{K}`` (image → text) for each K,
        ``r_mean`` (the mean of all of them, ALBEF's ``r_mean``) and ``rsum`` (their sum,
        UNITER's / VSE's ``rsum``).

    Raises:
        VlpError: shapes disagree or are empty, a score is NaN, an index is out of range,
            an image has no text, or a K is below 1.
    """
    if not ks or min(ks) < 1:
        raise VlpError(f"recall_at_k: every K must be at least 1, found {tuple(ks)}")
    s, owner = _checked(scores, text_to_image)
    text_ranks = _text_ranks(s, owner)
    image_ranks = _image_ranks(s, owner)
    out: dict[str, float] = {}
    for k in ks:
        out[f"t2i_r{k}"] = 100.0 * float(np.mean(text_ranks < k))
    for k in ks:
        out[f"i2t_r{k}"] = 100.0 * float(np.mean(image_ranks < k))
    values = list(out.values())
    out["r_mean"] = sum(values) / len(values)
    out["rsum"] = sum(values)
    return out


def scores_from_embeddings(image_emb: Tensor, text_emb: Tensor) -> Tensor:
    """Cosine similarity of every image with every text, ``(num_images, num_texts)``.

    Args:
        image_emb: ``(I, D)`` image embeddings.
        text_emb: ``(T, D)`` text embeddings.
    """
    image_emb = torch.nn.functional.normalize(image_emb.float(), dim=-1)
    text_emb = torch.nn.functional.normalize(text_emb.float(), dim=-1)
    return image_emb @ text_emb.T  # (I, T)
