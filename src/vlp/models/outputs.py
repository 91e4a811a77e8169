"""Typed model outputs shared by every architecture."""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor


@dataclass
class VLOutput:
    """What a vision-language encoder gives to objectives and task heads.

    Attributes:
        text: (B, L, D) contextual text states.
        image: (B, R, Dv) contextual visual states (regions, grid cells or patches).
        text_mask: (B, L) True on real tokens.
        image_mask: (B, R) True on real visual tokens.
        pooled: (B, D) the pair representation used by ITM and classification heads
            (single-stream: pooled [CLS]; two-stream: pooled text ⊙ pooled image as in
            ViLBERT, or pooled text alone as in LXMERT).
        pooled_text: (B, D) pooled text alone, when the architecture has one.
        pooled_image: (B, D) pooled image alone, projected to the text width so the two
            can be multiplied, when the architecture has one.
        vd_indices: (B, R) the visual-dictionary entry of each visual token, −1 on padding;
            None when the model has no dictionary (SOHO's grid models have one).
        vd_masked: (B, R) True on the visual tokens masked for masked visual modelling
            (every token of the entry ``batch.vd_draw`` picked in its row); None likewise.
    """

    text: Tensor
    image: Tensor
    text_mask: Tensor
    image_mask: Tensor
    pooled: Tensor
    pooled_text: Tensor | None = None
    pooled_image: Tensor | None = None
    vd_indices: Tensor | None = None
    vd_masked: Tensor | None = None


@dataclass
class UnimodalOutput:
    """Text and image encoded apart (no cross-modal attention): what contrastive
    objectives and dual-encoder retrieval read.

    Attributes:
        text: (B, L, D) text states from a text-only pass.
        image: (B, R, Dv) visual states from an image-only pass.
        text_mask: (B, L) True on real tokens.
        image_mask: (B, R) True on real visual tokens.
    """

    text: Tensor
    image: Tensor
    text_mask: Tensor
    image_mask: Tensor
