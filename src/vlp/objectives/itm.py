"""Image-text matching: does this text belong to this image?"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

from vlp.data.batch import Batch
from vlp.errors import VlpError
from vlp.models.config import ModelConfig
from vlp.models.encoder import VLEncoder
from vlp.models.outputs import VLOutput
from vlp.objectives.base import Objective, ObjectiveOutput, classification, fp32_logits
from vlp.objectives.itc import ITC

if TYPE_CHECKING:
    from vlp.objectives.loss_model import LossModel


class ITM(Objective[VLOutput]):
    """Binary classification of the pooled pair representation; negatives are made by
    the data side swapping the image (equivalently the text) of an example.

    With ``hard_negatives`` (``objectives.itm_hard_negatives``), :meth:`prepare` replaces
    the random negative images by images drawn by the run's ITC similarity (ALBEF).
    """

    pairs = True

    def __init__(self, head: nn.Module) -> None:
        super().__init__()
        self.head = head
        self.hard_negatives = False

    def configure(self, settings: object) -> None:
        """``itm_hard_negatives`` of the objectives config."""
        self.hard_negatives = bool(getattr(settings, "itm_hard_negatives", False))

    @property
    def prepares(self) -> bool:
        return self.hard_negatives

    def prepare(self, batch: Batch, model: LossModel, seed: int) -> Batch:
        """With hard negatives: mismatched rows get images drawn by ITC similarity (the
        draw's own stream, ``seed + 2``)."""
        if not self.hard_negatives:
            return batch
        if "itc" not in model.objectives:
            raise VlpError("objectives.itm_hard_negatives draws ITM negatives by ITC "
                           "similarity: objectives.weights needs both itm and itc")
        itc = model.objective("itc")
        if not isinstance(itc, ITC):
            raise VlpError("objectives.itm_hard_negatives: the objective named itc is "
                           f"{type(itc).__name__}, not vlp's ITC")
        text, image = itc.embed(model.encoder.encode_unimodal(batch))
        scale = float(itc.logit_scale.detach().exp().clamp(max=100.0))
        return itc_hard_negatives(batch, text * scale, image,
                                  torch.Generator().manual_seed(seed + 2))

    def scores(self, output: VLOutput, batch: Batch) -> Tensor:
        """(B, 2) logits: no match, match."""
        return fp32_logits(self.head, output.pooled)

    def forward(self, output: VLOutput, batch: Batch) -> ObjectiveOutput:
        """Cross-entropy against ``batch.itm_labels``."""
        if batch.itm_labels is None:
            raise ValueError("ITM needs batch.itm_labels")
        logits = self.scores(output, batch)  # (B, 2)
        return classification(logits, batch.itm_labels)


@torch.no_grad()
def itc_hard_negatives(batch: Batch, text: Tensor, image: Tensor,
                       gen: torch.Generator) -> Batch:
    """ALBEF's hard negatives for ITM, from contrastive similarity.

    Each mismatched row (``itm_labels`` 0) gets, in place of the random image the data side
    gave it, the image of one of the batch's true pairs whose image is not its own. That
    image is drawn with probability ``softmax(text_i · image_j)`` over the candidates, so
    a similar-looking image is likely but false negatives (near-duplicates) are not forced.
    Rows with no candidate keep their image.

    Args:
        batch: a pair batch; ``image_ids`` name each row's own image.
        text: (B, E) text embeddings, scaled (e.g. by the ITC temperature).
        image: (B, E) embeddings of the images the rows hold.
        gen: the draw's generator (CPU).
    """
    if batch.itm_labels is None or batch.image_ids is None:
        raise ValueError("hard negatives need batch.itm_labels and batch.image_ids")
    labels, own = batch.itm_labels.cpu(), batch.image_ids.cpu()
    # candidate j for row i: a true pair (so row j shows its own image) of another image
    allowed = (labels == 1)[None, :] & (own[None, :] != own[:, None])  # (B, B)
    rows = ((labels == 0) & allowed.any(1)).nonzero().flatten()
    index = torch.arange(batch.size)
    if len(rows):
        with torch.autocast(text.device.type, enabled=False):  # the draw in fp32
            sim = (text.float() @ image.float().T).cpu()[rows]  # (N, B)
        weights = sim.masked_fill(~allowed[rows], float("-inf")).softmax(-1)
        index[rows] = torch.multinomial(weights, 1, generator=gen).flatten()
    mined = batch.pair(torch.arange(batch.size), index)
    mined.image_ids = batch.image_ids  # each pair's own image, as the data side names it
    if mined.region_masked is not None:  # a foreign image has no targets to predict
        mined.region_masked[(labels == 0).to(mined.region_masked.device)] = False
    return mined


def build_itm(cfg: ModelConfig, model: VLEncoder) -> ITM:
    """ITM head: a linear layer on the pooled representation."""
    return ITM(nn.Linear(cfg.hidden_size, 2))
