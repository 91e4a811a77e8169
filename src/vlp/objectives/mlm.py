"""Masked language modelling: predict masked tokens from the rest of the text and the image."""

from __future__ import annotations

from torch import Tensor, nn

from vlp.data.batch import IGNORE_INDEX, Batch
from vlp.layers.packing import gather_positions, real_index, true_count
from vlp.models.config import ModelConfig
from vlp.models.encoder import VLEncoder
from vlp.models.outputs import VLOutput
from vlp.objectives.base import Objective, ObjectiveOutput, Transform, classification, zero_loss


class MLMHead(nn.Module):
    """Transform then a decoder to the vocabulary, tied to the word embeddings."""

    def __init__(self, dim: int, vocab_size: int, word_embeddings: nn.Embedding | None = None,
                 eps: float = 1e-12) -> None:
        super().__init__()
        self.transform = Transform(dim, eps)
        self.decoder = nn.Linear(dim, vocab_size)
        if word_embeddings is not None:
            self.decoder.weight = word_embeddings.weight

    def forward(self, hidden: Tensor) -> Tensor:
        """(N, D) → (N, V)."""
        return self.decoder(self.transform(hidden))


class MLM(Objective[VLOutput]):
    """Cross-entropy on masked positions only: vocabulary logits are never computed
    for the ~85 % of positions that carry no label."""

    masks = "text"

    def __init__(self, head: MLMHead) -> None:
        super().__init__()
        self.head = head

    def forward(self, output: VLOutput, batch: Batch) -> ObjectiveOutput:
        """Loss over ``batch.mlm_labels != IGNORE_INDEX``."""
        if batch.mlm_labels is None:
            raise ValueError("MLM needs batch.mlm_labels")
        where = batch.mlm_labels != IGNORE_INDEX  # (B, L)
        count = true_count(where, batch.counts.get("mlm"))
        if count == 0:
            return ObjectiveOutput(zero_loss(output.text))
        index = real_index(where, count)  # (N_masked,) into the flattened (B·L)
        logits = self.head(gather_positions(output.text, index)).float()  # (N_masked, V)
        return classification(logits, gather_positions(batch.mlm_labels, index))


def build_mlm(cfg: ModelConfig, model: VLEncoder) -> MLM:
    """MLM with the decoder tied to ``model.word_embeddings``."""
    words = getattr(model, "word_embeddings", None)
    return MLM(MLMHead(cfg.hidden_size, cfg.vocab_size, words, cfg.layer_norm_eps))
