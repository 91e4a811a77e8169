"""Image-text contrastive learning (ALIGN, CLIP; ALBEF's "align before fuse")."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vlp.data.batch import Batch
from vlp.layers.packing import real_index
from vlp.models.config import ModelConfig
from vlp.models.encoder import VLEncoder
from vlp.models.outputs import UnimodalOutput
from vlp.objectives.base import Objective, ObjectiveOutput, zero_loss


def masked_mean(x: Tensor, mask: Tensor) -> Tensor:
    """Mean of ``x`` (B, N, D) over positions where ``mask`` (B, N) is True → (B, D)."""
    weights = mask.to(x.dtype)[..., None]
    return (x * weights).sum(1) / weights.sum(1).clamp(min=1.0)


class ITC(Objective[UnimodalOutput]):
    """Symmetric InfoNCE between text and image embeddings of the batch.

    Text and image are encoded apart (``inputs = "unimodal"``), mean-pooled, projected
    and L2-normalised; each text's positive is its own image and every other image of
    the batch is a negative (and the other way round). Pairs sharing an image id are all
    positives, so a batch holding two captions of one image is not penalised.

    Args:
        text_dim: width of the text states.
        image_dim: width of the visual states.
        embed_dim: width of the shared embedding space.
        temperature: initial softmax temperature (learned, as in CLIP; capped at 1/100).
    """

    inputs = "unimodal"

    def __init__(self, text_dim: int, image_dim: int, embed_dim: int = 256,
                 temperature: float = 0.07) -> None:
        super().__init__()
        self.text_proj = nn.Linear(text_dim, embed_dim)
        self.image_proj = nn.Linear(image_dim, embed_dim)
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1.0 / temperature)))

    def embed(self, output: UnimodalOutput) -> tuple[Tensor, Tensor]:
        """L2-normalised text (B, E) and image (B, E) embeddings."""
        text = self.text_proj(masked_mean(output.text, output.text_mask))
        image = self.image_proj(masked_mean(output.image, output.image_mask))
        return F.normalize(text.float(), dim=-1), F.normalize(image.float(), dim=-1)

    def forward(self, output: UnimodalOutput, batch: Batch) -> ObjectiveOutput:
        """Mean of the text→image and image→text cross-entropies, over the batch's true
        pairs (a batch shared with ITM holds mismatched rows, which are left out)."""
        text, image = self.embed(output)
        ids = (batch.image_ids if batch.image_ids is not None
               else torch.arange(batch.size, device=text.device))
        if batch.itm_labels is not None:
            rows = real_index(batch.itm_labels == 1, batch.counts.get("itm_true"))
            text, image, ids = text[rows], image[rows], ids[rows]
        n = len(ids)
        if n == 0:
            graph = self.logit_scale + text.sum() + image.sum()  # every parameter, gradient 0
            return ObjectiveOutput(zero_loss(graph), torch.zeros((), device=text.device), 0)
        scale = self.logit_scale.exp().clamp(max=100.0)
        logits = scale * text @ image.T  # (N texts, N images)
        same = ids[:, None] == ids[None, :]  # (N, N) every matching pair
        targets = same.float() / same.sum(1, keepdim=True)
        loss = (F.cross_entropy(logits, targets) + F.cross_entropy(logits.T, targets.T)) / 2
        correct = same[torch.arange(n, device=ids.device), logits.argmax(1)].sum()
        return ObjectiveOutput(loss, correct, n)


def build_itc(cfg: ModelConfig, model: VLEncoder) -> ITC:
    """ITC on the model's text and visual widths."""
    return ITC(cfg.hidden_size, cfg.image_width)
