"""What the parity tests share: inputs with uneven padding and a vlp model loaded strictly
from an import (reference weights are saved by ``conftest.save_reference``)."""

from __future__ import annotations

from typing import TypeVar

import torch
from torch import Tensor, nn

from vlp.convert import Imported
from vlp.models import build_model

M = TypeVar("M", bound=nn.Module)


def text_inputs(vocab: int, b: int = 3, length: int = 9, seed: int = 0
                ) -> tuple[torch.Generator, Tensor, Tensor]:
    """A generator (to draw the image side from next), token ids (B, L) and their mask,
    with rows 1 and 2 padded by different amounts."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, vocab, (b, length), generator=g)
    mask = torch.ones(b, length, dtype=torch.bool)
    mask[1, -4:] = False
    mask[2, -1:] = False
    ids[~mask] = 0
    return g, ids, mask


def region_inputs(g: torch.Generator, b: int, regions: int, feat: int
                  ) -> tuple[Tensor, Tensor]:
    """Region features (B, R, F), zero where padded, and their mask, padded unevenly on
    other rows than the text's."""
    mask = torch.ones(b, regions, dtype=torch.bool)
    mask[0, -2:] = False
    mask[2, -5:] = False
    feats = torch.randn(b, regions, feat, generator=g)
    feats[~mask] = 0.0
    return feats, mask


def load_vlp(imported: Imported, cls: type[M]) -> M:
    """The imported model built and loaded strictly (the import must cover all of it)."""
    assert not imported.text_only
    model = build_model(imported.config)
    assert isinstance(model, cls)
    model.load_state_dict(imported.model)
    return model.eval()
