"""Masked visual modelling on a visual dictionary (SOHO's MVM).

In each row the batch marks for it (``batch.vd_draw`` ≥ 0) the grid input picks one
dictionary entry present in the image and replaces every token mapped to it by the [MASK]
embedding: neighbouring cells often share an entry, so masking one cell alone would let the
model copy the answer from the next. This objective predicts the entry's index from each
masked token's contextual state, by cross-entropy over the k entries, and scores no other
position (``VLOutput.vd_masked``, ``VLOutput.vd_indices``). In a batch of mismatched pairs
(``itm_labels``) only the true pairs are scored; the others are masked alike, so that ITM
cannot tell them apart by their [MASK] tokens.

SOHO's released code scores a state against the entries themselves (cosine similarity);
here a classifier head (transform → linear to k) does, as MLM's and MRC's heads do: the
entries keep moving by their moving average, and cosine logits in [−1, 1] cannot make a
confident prediction.
"""

from __future__ import annotations

from torch import nn

from vlp.data.batch import Batch
from vlp.errors import VlpError
from vlp.models.config import ModelConfig
from vlp.models.encoder import VLEncoder
from vlp.models.outputs import VLOutput
from vlp.objectives.base import (
    Objective,
    ObjectiveOutput,
    classification,
    classifier,
    zero_loss,
)


class MVM(Objective[VLOutput]):
    """Cross-entropy over the dictionary's entries at the masked visual tokens only.

    Args:
        head: visual states (N, D) → (N, k) logits.
    """

    masks = "image"

    def __init__(self, head: nn.Module) -> None:
        super().__init__()
        self.head = head

    def forward(self, output: VLOutput, batch: Batch) -> ObjectiveOutput:
        """Loss over ``output.vd_masked`` (no row masked: a zero loss)."""
        if output.vd_masked is None or output.vd_indices is None:
            raise ValueError("MVM needs a model with a visual dictionary (VLOutput.vd_masked)")
        where = output.vd_masked & output.image_mask  # (B, R)
        if batch.itm_labels is not None:  # a foreign text says nothing of the masked entry
            where = where & (batch.itm_labels == 1)[:, None]
        if not bool(where.any()):
            return ObjectiveOutput(zero_loss(output.image))
        logits = self.head(output.image[where]).float()  # (N_masked, k)
        return classification(logits, output.vd_indices[where])


def build_mvm(cfg: ModelConfig, model: VLEncoder) -> MVM:
    """MVM's head: transform → linear to the ``cfg.vd_size`` entries.

    Raises:
        VlpError: the model has no visual dictionary.
    """
    if cfg.visual != "grid" or cfg.vd_size <= 0:
        raise VlpError("objective mvm predicts visual-dictionary entries, but the model has "
                       "no visual dictionary (it needs model.visual: grid and model.vd_size "
                       f"> 0; got visual: {cfg.visual}, vd_size: {cfg.vd_size})")
    return MVM(classifier(cfg.image_width, cfg.vd_size, cfg.layer_norm_eps))
