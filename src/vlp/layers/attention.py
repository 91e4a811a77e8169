"""Multi-head attention: SDPA, or plain ops where SDPA is slow (short bf16 sequences on CPU)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vlp.layers.dropout import dropout as drop
from vlp.layers.packing import Packing

# On CPU in bf16, SDPA is slow on the sequences vision-language models see. Forward +
# backward on 2 cores (torch 2.13), its fused kernel and its math path (which computes in
# fp32) take 4.9× and 2.4× the time of bf16 matmuls around an fp32 softmax at 32 keys, and
# 1.4× and 1.9× at 512; at 1024 the fused kernel wins (`benchmarks/attention.py`). In fp32
# the fused kernel is as fast or faster everywhere. So short bf16 CPU attention is written out.
_CPU_BF16_EAGER_MAX_KEYS = 512


def eager_attention(q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None,
                    dropout: float = 0.0, training: bool = False) -> Tensor:
    """Scaled dot-product attention in plain ops: matmuls in the input's precision, the
    softmax in fp32. A query whose keys are all masked gets zeros, as with SDPA.

    Args:
        q: (B, H, N, Dh); k, v: (B, H, M, Dh).
        mask: (B, 1, 1, M) bool, True where a key may be read; None: all.
    """
    scores = (q @ k.transpose(-1, -2)) * q.shape[-1] ** -0.5  # (B, H, N, M)
    if mask is not None:
        scores = scores.masked_fill(~mask, torch.finfo(scores.dtype).min)
    probs = scores.softmax(-1, dtype=torch.float32).to(v.dtype)
    out = drop(probs, dropout, training) @ v  # (B, H, N, Dh)
    if mask is not None:  # no key at all: zeros (the softmax above spread over padding)
        out = out * mask.any(-1, keepdim=True)
    return out


class MultiHeadAttention(nn.Module):
    """Self- or cross-attention with fused projections.

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
                context: Tensor | None = None, packing: Packing | None = None,
                context_packing: Packing | None = None) -> Tensor:
        """Attend from ``x`` (B, N, D) to itself or to ``context`` (B, M, Dkv).

        Args:
            x: query stream (B, N, D), or (T, D) packed by ``packing``.
            key_mask: (B, M) bool, True where the key is a real token (not padding);
                unused when the keys are packed (their packing's mask says).
            context: key/value stream for cross-attention: (B, M, Dkv), or (T', Dkv)
                packed by ``context_packing``.
            packing: ``x`` is packed: the projections run on its real positions only
                and the output is packed the same way.
            context_packing: ``context`` is packed (cross-attention with ``packing``).
        """
        if self.cross:
            if context is None:
                raise ValueError("cross-attention needs a context")
            if (packing is None) != (context_packing is None):
                raise ValueError("packed cross-attention needs both packings (query and "
                                 "context), or neither")
            q, kv = self.q(x), self.kv(context)  # packed or padded, as they came
            if packing is not None and context_packing is not None:
                q, kv, key_mask = packing.unpack(q), context_packing.unpack(kv), \
                    context_packing.mask
            k, v = kv.chunk(2, dim=-1)
        else:
            qkv = self.qkv(x)  # (B, N, 3D), or (T, 3D) packed
            if packing is not None:
                qkv, key_mask = packing.unpack(qkv), packing.mask  # (B, N, 3D)
            q, k, v = qkv.chunk(3, dim=-1)
        q, k, v = self._heads(q), self._heads(k), self._heads(v)  # (B, H, N|M, Dh)
        mask = None if key_mask is None else key_mask[:, None, None, :]  # (B, 1, 1, M)
        if (q.device.type == "cpu" and q.dtype == torch.bfloat16
                and k.shape[-2] <= _CPU_BF16_EAGER_MAX_KEYS):
            y = eager_attention(q, k, v, mask, self.dropout, self.training)
        else:
            y = F.scaled_dot_product_attention(
                q, k, v, attn_mask=mask, dropout_p=self.dropout if self.training else 0.0
            )
        b, _, n, _ = y.shape
        y = y.transpose(1, 2).reshape(b, n, -1)  # (B, N, D)
        if packing is not None:
            y = packing.pack(y)  # (T, D): the output projection on real positions only
        return self.out(y)
