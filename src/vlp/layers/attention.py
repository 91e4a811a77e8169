"""Multi-head attention on ``torch.nn.functional.scaled_dot_product_attention``."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn


class MultiHeadAttention(nn.Module):
    """Self- or cross-attention with fused projections and SDPA.

    Self-attention projects queries, keys and values with one fused matrix;
    cross-attention (``kv_dim`` given) projects the query from ``x`` and keys and
    values from ``context`` with a second fused matrix.

    Args:
        dim: width of the query stream.
        num_heads: attention heads; must divide ``dim``.
        dropout: dropout on attention probabilities (training only).
        kv_dim: width of the context stream for cross-attention; None for self-attention.
    """

    def __init__(self, dim: int, num_heads: int, dropout: float = 0.0,
                 kv_dim: int | None = None) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"hidden size {dim} is not divisible by {num_heads} heads")
        self.num_heads = num_heads
        self.dropout = dropout
        self.cross = kv_dim is not None
        if self.cross:
            self.q = nn.Linear(dim, dim)
            self.kv = nn.Linear(kv_dim or dim, 2 * dim)
        else:
            self.qkv = nn.Linear(dim, 3 * dim)
        self.out = nn.Linear(dim, dim)

    def _heads(self, x: Tensor) -> Tensor:
        b, n, d = x.shape
        return x.view(b, n, self.num_heads, d // self.num_heads).transpose(1, 2)  # (B, H, N, Dh)

    def forward(self, x: Tensor, key_mask: Tensor | None = None,
                context: Tensor | None = None) -> Tensor:
        """Attend from ``x`` (B, N, D) to itself or to ``context`` (B, M, Dkv).

        Args:
            x: query stream (B, N, D).
            key_mask: (B, M) bool, True where the key is a real token (not padding).
            context: key/value stream for cross-attention.
        """
        if self.cross:
            if context is None:
                raise ValueError("cross-attention needs a context")
            q = self.q(x)
            k, v = self.kv(context).chunk(2, dim=-1)
        else:
            q, k, v = self.qkv(x).chunk(3, dim=-1)
        q, k, v = self._heads(q), self._heads(k), self._heads(v)  # (B, H, N|M, Dh)
        mask = None if key_mask is None else key_mask[:, None, None, :]  # (B, 1, 1, M)
        y = F.scaled_dot_product_attention(
            q, k, v, attn_mask=mask, dropout_p=self.dropout if self.training else 0.0
        )
        b, _, n, _ = y.shape
        return self.out(y.transpose(1, 2).reshape(b, n, -1))  # (B, N, D)
