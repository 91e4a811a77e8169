"""Co-attention between a text and an image stream (ViLBERT's Co-TRM, LXMERT's X-layer).

The two streams exchange information only through cross-attention: each stream's
queries attend to the other stream's keys and values, masked by the other stream's
padding, and the streams are never concatenated.
"""

from __future__ import annotations

from torch import Tensor, nn

from vlp.layers.attention import MultiHeadAttention
from vlp.layers.dropout import Dropout
from vlp.layers.packing import Packing
from vlp.layers.transformer import TransformerLayer


class CrossAttentionLayer(nn.Module):
    """Cross-attention with a residual and a LayerNorm after it, and no MLP.

    LXMERT's cross-attention sublayer. ViLBERT's carries its own MLP: that one is a
    :class:`TransformerLayer` with ``cross_dim``.

    Args:
        dim: width of the query stream.
        num_heads: attention heads.
        context_dim: width of the key/value stream.
        dropout: dropout on attention probabilities and on the attention output.
        eps: LayerNorm epsilon.
    """

    def __init__(self, dim: int, num_heads: int, context_dim: int, dropout: float = 0.1,
                 eps: float = 1e-12) -> None:
        super().__init__()
        self.attn = MultiHeadAttention(dim, num_heads, dropout, kv_dim=context_dim)
        self.drop = Dropout(dropout)
        self.norm = nn.LayerNorm(dim, eps=eps)

    def forward(self, x: Tensor, key_mask: Tensor | None, context: Tensor,
                packing: Packing | None = None, context_packing: Packing | None = None
                ) -> Tensor:
        """x (B, N, D) attends to context (B, M, Dc); key_mask (B, M) True on real keys.
        With the packings, both come packed: x (T, D), context (T', Dc)."""
        return self.norm(x + self.drop(self.attn(x, key_mask, context, packing,
                                                 context_packing)))


class CoAttentionBlock(nn.Module):
    """One exchange between the streams, then each stream's own self-attention layer.

    ``text' = text_layer(text_cross(text ← image))`` and
    ``image' = image_layer(image_cross(image ← text))``; both cross-attentions read the
    streams as they entered the block.

    Args:
        text_cross: text queries attend to image keys and values; called as
            ``(x, key_mask, context)`` (a :class:`CrossAttentionLayer`, or a
            :class:`TransformerLayer` with ``cross_dim`` for ViLBERT's Co-TRM).
        image_cross: image queries attend to text keys and values; None uses
            ``text_cross`` for both directions (LXMERT shares one cross-attention module,
            which needs both streams to have the same width).
        text_layer: the text stream's self-attention layer after the exchange.
        image_layer: the image stream's self-attention layer after the exchange.
    """

    def __init__(self, text_cross: nn.Module, image_cross: nn.Module | None,
                 text_layer: TransformerLayer, image_layer: TransformerLayer) -> None:
        super().__init__()
        self.text_cross = text_cross
        self.image_cross = image_cross
        self.text_layer = text_layer
        self.image_layer = image_layer

    def forward(self, text: Tensor, text_mask: Tensor, image: Tensor, image_mask: Tensor
                ) -> tuple[Tensor, Tensor]:
        """text (B, L, D), image (B, R, Dv), masks True on real positions → both updated."""
        image_cross = self.image_cross if self.image_cross is not None else self.text_cross
        t = self.text_cross(text, image_mask, image)  # (B, L, D): Q text, K/V image
        v = image_cross(image, text_mask, text)  # (B, R, Dv): Q image, K/V text
        return self.text_layer(t, text_mask), self.image_layer(v, image_mask)

    def forward_packed(self, text: Tensor, text_packing: Packing, image: Tensor,
                       image_packing: Packing) -> tuple[Tensor, Tensor]:
        """:meth:`forward` on the streams' real positions: text (T, D), image (T', Dv)."""
        image_cross = self.image_cross if self.image_cross is not None else self.text_cross
        t = self.text_cross(text, None, image, text_packing, image_packing)  # (T, D)
        v = image_cross(image, None, text, image_packing, text_packing)  # (T', Dv)
        return (self.text_layer(t, packing=text_packing),
                self.image_layer(v, packing=image_packing))
