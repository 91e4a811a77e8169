"""Masking for MLM (tokens) and masked region modelling (regions).

Everything takes an explicit ``torch.Generator`` so a batch's masks depend only on
its seed: a resumed run draws exactly the masks an uninterrupted one would.
"""

from __future__ import annotations

import torch
from torch import Tensor

from vlp.data.batch import IGNORE_INDEX


def choose_positions(candidates: Tensor, prob: float, gen: torch.Generator) -> Tensor:
    """Pick each candidate with probability ``prob``; at least one per row that has any.

    Args:
        candidates: (B, N) bool, positions that may be chosen.
        prob: selection probability.
        gen: random generator.
    Returns:
        (B, N) bool selection, a subset of ``candidates``.
    """
    scores = torch.rand(candidates.shape, generator=gen)
    chosen = (scores < prob) & candidates
    # rows where chance picked nothing get their best-scoring candidate, so every
    # example contributes (as UNITER does); the lowest score keeps the draw unbiased.
    empty = ~chosen.any(dim=1) & candidates.any(dim=1)
    if bool(empty.any()):
        lowest = scores.masked_fill(~candidates, 2.0).argmin(dim=1)
        chosen[empty, lowest[empty]] = True
    return chosen


def mask_tokens(input_ids: Tensor, maskable: Tensor, prob: float, mask_id: int,
                vocab_size: int, gen: torch.Generator) -> tuple[Tensor, Tensor]:
    """BERT masking: choose ``prob`` of maskable tokens; 80 % → [MASK], 10 % → random, 10 % kept.

    Args:
        input_ids: (B, L) token ids.
        maskable: (B, L) bool, real non-special tokens of examples to mask.
        prob: share of tokens chosen (0.15).
        mask_id: id of ``[MASK]``.
        vocab_size: random replacements are drawn from ``[0, vocab_size)``.
        gen: random generator.
    Returns:
        (masked ids, labels) — labels hold the original id at chosen positions and
        ``IGNORE_INDEX`` elsewhere.
    """
    chosen = choose_positions(maskable, prob, gen)
    labels = torch.where(chosen, input_ids, torch.full_like(input_ids, IGNORE_INDEX))
    action = torch.rand(input_ids.shape, generator=gen)
    random_ids = torch.randint(vocab_size, input_ids.shape, generator=gen)
    out = input_ids.clone()
    out[chosen & (action < 0.8)] = mask_id
    swap = chosen & (action >= 0.8) & (action < 0.9)
    out[swap] = random_ids[swap]
    return out, labels


def split_modalities(
    active: Tensor, text: bool, image: bool, conditional: bool, gen: torch.Generator
) -> tuple[Tensor, Tensor]:
    """Decide per example whether to mask its text, its image, or both.

    Conditional masking (UNITER) masks one modality per example and keeps the other
    whole, so a word and the region it names are never hidden together; joint masking
    masks both at random.

    Args:
        active: (B,) bool, examples that are masked at all (positive pairs).
        text: whether any objective of this batch masks text.
        image: whether any objective of this batch masks regions.
        conditional: one modality per example when both are wanted.
        gen: random generator.
    Returns:
        (mask text, mask image), each (B,) bool.
    """
    mask_text = active & text
    mask_image = active & image
    if text and image and conditional:
        pick_text = torch.rand(active.shape, generator=gen) < 0.5
        mask_text = active & pick_text
        mask_image = active & ~pick_text
    return mask_text, mask_image
