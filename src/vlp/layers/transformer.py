"""Transformer layers shared by every encoder: BERT's post-LayerNorm order by default,
ViT's pre-LayerNorm order (ViLT) with ``norm_first``."""

from __future__ import annotations

from torch import Tensor, nn

from vlp.layers.attention import MultiHeadAttention
from vlp.layers.dropout import Dropout
from vlp.layers.packing import Packing, packing_for


class MLP(nn.Module):
    """Two linear layers with an activation between them."""

    def __init__(self, dim: int, hidden: int, act_layer: type[nn.Module] = nn.GELU,
                 dropout: float = 0.0) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = act_layer()
        self.fc2 = nn.Linear(hidden, dim)
        self.drop = Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        """(B, N, D) → (B, N, D)."""
        return self.drop(self.fc2(self.act(self.fc1(x))))


class TransformerLayer(nn.Module):
    """Attention then MLP, each with a residual and a LayerNorm after it (BERT order), or
    with ``norm_first`` a LayerNorm before each, on the branch (ViT / ViLT order).

    With ``cross_dim`` set the attention is cross-attention to a context stream
    (a ViLBERT co-attention half); otherwise it is self-attention.
    """

    def __init__(self, dim: int, num_heads: int, mlp_dim: int, dropout: float = 0.1,
                 cross_dim: int | None = None, eps: float = 1e-12,
                 norm_layer: type[nn.LayerNorm] = nn.LayerNorm, norm_first: bool = False
                 ) -> None:
        super().__init__()
        self.norm_first = norm_first
        self.attn = MultiHeadAttention(dim, num_heads, dropout, kv_dim=cross_dim)
        self.drop = Dropout(dropout)
        self.norm1 = norm_layer(dim, eps=eps)
        self.mlp = MLP(dim, mlp_dim, dropout=dropout)
        self.norm2 = norm_layer(dim, eps=eps)

    def forward(self, x: Tensor, key_mask: Tensor | None = None,
                context: Tensor | None = None, packing: Packing | None = None,
                context_packing: Packing | None = None) -> Tensor:
        """x (B, N, D); key_mask (B, M) True on real keys; context (B, M, Dc) or None.

        With ``packing`` x is (T, D), its real positions only (and ``context``, if any,
        packed by ``context_packing``): see :class:`MultiHeadAttention`.
        """
        a = self.attn(self.norm1(x) if self.norm_first else x, key_mask, context, packing,
                      context_packing)
        if self.norm_first:
            x = x + self.drop(a)
            return x + self.mlp(self.norm2(x))
        x = self.norm1(x + self.drop(a))
        return self.norm2(x + self.mlp(x))


class TransformerEncoder(nn.Module):
    """A stack of self-attention :class:`TransformerLayer`; pre-LayerNorm stacks
    (``norm_first``) end with a LayerNorm of their own, as ViT's do."""

    def __init__(self, dim: int, depth: int, num_heads: int, mlp_dim: int,
                 dropout: float = 0.1, eps: float = 1e-12, norm_first: bool = False) -> None:
        super().__init__()
        self.layers = nn.ModuleList(
            TransformerLayer(dim, num_heads, mlp_dim, dropout, eps=eps, norm_first=norm_first)
            for _ in range(depth)
        )
        self.norm = nn.LayerNorm(dim, eps=eps) if norm_first else None

    def forward(self, x: Tensor, mask: Tensor | None = None, count: int | None = None) -> Tensor:
        """x (B, N, D), mask (B, N) True on real tokens → (B, N, D).

        The layers run on the real positions only (:mod:`vlp.layers.packing`); padded
        positions come out as zeros. ``count``: how many positions are real, when the host
        knows it (no host-device synchronisation then).
        """
        packing = packing_for(mask, count)
        if packing is None:
            for layer in self.layers:
                x = layer(x, mask)
            return x if self.norm is None else self.norm(x)
        return packing.unpack(self.forward_packed(packing.pack(x), packing))

    def forward_packed(self, x: Tensor, packing: Packing) -> Tensor:
        """x (T, D), the real positions of a batch packed by ``packing`` → (T, D)."""
        for layer in self.layers:
            x = layer(x, packing=packing)
        return x if self.norm is None else self.norm(x)


class Pooler(nn.Module):
    """BERT's pooler: a summary token through a dense layer and tanh.

    Args:
        dim: width.
        mode: "cls" (BERT, UNITER: the first token) or "mean" (the mean of all real
            positions — with small models trained from scratch, ITM leaves chance far
            sooner through it, since no second attention hop is needed to gather evidence).
        out_dim: output width when it differs from ``dim`` (ViLBERT projects both streams'
            pooled states to one width before multiplying them).
    """

    def __init__(self, dim: int, mode: str = "cls", out_dim: int | None = None) -> None:
        super().__init__()
        if mode not in ("cls", "mean"):
            raise ValueError(f"pooler mode must be 'cls' or 'mean', not {mode!r}")
        self.mode = mode
        self.dense = nn.Linear(dim, out_dim or dim)
        self.act = nn.Tanh()

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        """x (B, N, D), mask (B, N) True on real positions → (B, out_dim)."""
        if self.mode == "cls" or mask is None:
            summary = x[:, 0]
        else:
            weights = mask.to(x.dtype)[..., None]  # (B, N, 1)
            summary = (x * weights).sum(1) / weights.sum(1).clamp(min=1.0)
        return self.act(self.dense(summary))
