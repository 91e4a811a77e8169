"""SOHO's visual dictionary: grid features quantised to their nearest of k learned entries.

Each feature ``v`` is assigned the entry nearest to it by Euclidean distance,
``h = argmin_j ‖v − d_j‖₂`` (ties go to the lowest index), and represented by it,
``f(v) = d_h``. The lookup has no gradient, so the output is written in straight-through
form, ``f(v) = v + sg[d_h − v]``: forward it is the entry, backward it is the identity, and
the gradient reaches the features and, through them, the backbone.

The entries are not learned by gradient. In training mode each entry used by a batch moves
towards the mean of the features assigned to it, ``d_j ← γ·d_j + (1 − γ)·mean{v : h = j}``
(features detached); entries no feature chose stay where they are. Under DDP the per-entry
sums and counts are all-reduced first, so every rank applies the same update.

The entries start as small seeded noise and, at the first training batch, are replaced by
features of that batch drawn by the same seed (rank 0's under DDP, broadcast): random
entries far from the features would send every feature to the one entry nearest their
common mean, and the moving average alone never brings the others into use. A checkpoint
keeps the entries and the flag, so a resumed run does not draw them again.

Features are compared as they are, not normalised: SOHO's released code takes raw Euclidean
distances between the 1×1-conv features and the entries, as the paper's equation does.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import Tensor, nn


class VisualDictionary(nn.Module):
    """k entries of size D, stored as a buffer (moving averages, not parameters).

    Args:
        size: number of entries k (SOHO: 2048).
        dim: feature size D.
        momentum: γ of the moving-average update (SOHO: 0.99).
        seed: the entries start as ``init_std`` × N(0, 1) from a generator seeded with this,
            so two dictionaries built alike start alike whatever the global RNG holds; the
            same seed draws the first batch's features that replace them.
        init_std: scale of the initial entries (used until the first training batch).
        init_from_data: replace the entries by features of the first training batch.
    """

    entries: Tensor
    initialised: Tensor

    def __init__(self, size: int, dim: int, momentum: float = 0.99, seed: int = 0,
                 init_std: float = 0.02, init_from_data: bool = True) -> None:
        super().__init__()
        if size < 1 or dim < 1 or not 0 <= momentum < 1:
            raise ValueError(f"visual dictionary: size {size} and dim {dim} must be ≥ 1, "
                             f"momentum {momentum} in [0, 1)")
        self.size, self.dim, self.momentum, self.seed = size, dim, momentum, seed
        g = torch.Generator().manual_seed(seed)
        self.register_buffer("entries", torch.randn(size, dim, generator=g) * init_std)
        self.register_buffer("initialised", torch.tensor(not init_from_data))

    def assign(self, features: Tensor) -> Tensor:
        """Index of the nearest entry of each feature, lowest index on ties: (..., D) → (...).
        """
        # distances are translation-invariant: centred on the entries' mean, the expansion
        # below loses nothing to the features' common offset (a CNN's are far from 0)
        centre = self.entries.float().mean(0)  # (D,)
        flat = features.detach().reshape(-1, self.dim).float() - centre  # (N, D)
        entries = self.entries.float() - centre  # (k, D)
        # in fp32 even under autocast: in bf16 nearby entries tie or swap (about half of
        # 2048 × 768 assignments change), and fp16 overflows ‖d‖²
        with torch.autocast(flat.device.type, enabled=False):
            # ‖v‖² is the same for every entry: argmin ‖v − d‖² = argmin (‖d‖² − 2 v·d)
            distance = (entries * entries).sum(-1)[None, :] - 2.0 * flat @ entries.t()  # (N, k)
        return distance.argmin(-1).reshape(features.shape[:-1])  # first minimum on ties

    def forward(self, features: Tensor, valid: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Quantise ``features`` (..., D); in training mode update the entries from them.

        Args:
            features: (..., D) features.
            valid: (...) True on features that may update the entries (padding excluded);
                all when None.

        Returns:
            The entries in straight-through form (..., D) and the indices (...).
        """
        if self.training and not bool(self.initialised):
            self.init_from(features, valid)
        indices = self.assign(features)
        quantised = self.entries[indices].to(features.dtype)  # (..., D), a copy: no grad
        out = features + (quantised - features).detach()
        if self.training:
            self.update(features, indices, valid)
        return out, indices

    @torch.no_grad()
    def init_from(self, features: Tensor, valid: Tensor | None = None) -> None:
        """Entries ← ``size`` features drawn (with replacement when there are fewer) by the
        seeded generator; under DDP rank 0's, broadcast to every rank."""
        flat = features.detach().reshape(-1, self.dim)
        if valid is not None:
            flat = flat[valid.reshape(-1)]
        distributed = dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1
        if flat.shape[0] == 0 and not distributed:
            return  # nothing to draw from yet: the next training batch will
        if flat.shape[0] > 0:
            g = torch.Generator().manual_seed(self.seed)
            n = flat.shape[0]
            pick = (torch.randperm(n, generator=g)[:self.size] if n >= self.size
                    else torch.randint(n, (self.size,), generator=g))
            self.entries.copy_(flat[pick.to(flat.device)].to(self.entries.dtype))
        if distributed:  # every rank takes part, whatever its batch held: rank 0's entries
            dist.broadcast(self.entries, 0)
        self.initialised.fill_(True)

    @torch.no_grad()
    def update(self, features: Tensor, indices: Tensor, valid: Tensor | None = None) -> None:
        """Move each used entry towards the mean of its features (see the module docstring).

        Args:
            features: (..., D) features (detached here).
            indices: (...) their entries.
            valid: (...) True on the features to count; all when None.
        """
        flat = features.detach().reshape(-1, self.dim).float()  # (N, D)
        index = indices.reshape(-1)
        if valid is not None:
            keep = valid.reshape(-1)
            flat, index = flat[keep], index[keep]
        sums = torch.zeros(self.size, self.dim, device=flat.device).index_add_(0, index, flat)
        counts = torch.bincount(index, minlength=self.size).float()  # (k,)
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            dist.all_reduce(sums)
            dist.all_reduce(counts)
        used = counts > 0
        means = sums[used] / counts[used, None]
        g = self.momentum
        self.entries[used] = (g * self.entries[used].float() + (1 - g) * means
                              ).to(self.entries.dtype)

    def extra_repr(self) -> str:
        return f"size={self.size}, dim={self.dim}, momentum={self.momentum}"
