"""The interface every vision-language encoder implements, and objectives type against.

An encoder reads a :class:`~vlp.data.batch.Batch` (token ids and visual inputs) and gives

- a **joint pass** — ``encoder(batch)`` → :class:`VLOutput`: contextual text and visual
  states after the modalities met, and the pooled pair (ITM, classification heads);
- **unimodal passes** — :meth:`VLEncoder.encode_unimodal` → :class:`UnimodalOutput`:
  text and image encoded apart (contrastive objectives, dual-encoder retrieval);
- its **token embedding table** (:attr:`VLEncoder.word_embeddings`, tied to MLM) and a
  way to start its text side from BERT (:meth:`VLEncoder.load_text_weights`).

Single-stream, two-stream and (to come) dual-encoder and pixel models subclass it, so an
objective or task head written against :class:`VLEncoder` serves every architecture.
"""

from __future__ import annotations

from torch import Tensor, nn

from vlp.data.batch import Batch
from vlp.errors import VlpError
from vlp.models.outputs import UnimodalOutput, VLOutput


class VLEncoder(nn.Module):
    """Base class of vision-language encoders (see the module docstring)."""

    def forward(self, batch: Batch) -> VLOutput:  # pragma: no cover - abstract
        """Joint encoding of the batch's text and image."""
        raise NotImplementedError

    def __call__(self, batch: Batch) -> VLOutput:
        out: VLOutput = super().__call__(batch)
        return out

    def encode_unimodal(self, batch: Batch) -> UnimodalOutput:
        """Text and image each encoded alone (no cross-modal attention)."""
        raise VlpError(f"{type(self).__name__} cannot encode text and image apart, which a "
                       "contrastive objective (itc) or ranking by embeddings needs")

    @property
    def word_embeddings(self) -> nn.Embedding:  # pragma: no cover
        """The token embedding table (tied to the MLM decoder)."""
        raise NotImplementedError

    def load_text_weights(self, state: dict[str, Tensor], source: str = "text weights"
                          ) -> list[str]:
        """Start the text side from BERT weights under this encoder's names; returns the
        parameters left as they were."""
        raise VlpError(f"train.init_text: {type(self).__name__} cannot start its text side "
                       f"from BERT ({source})")
