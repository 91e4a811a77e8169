"""What the parity tests share: inputs with uneven padding, reference weights moved off
their initial values, and a vlp model loaded strictly from an import."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import torch
from torch import Tensor, nn

from vlp.models import build_model
from vlp.models.convert import Imported

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


def perturb(model: nn.Module, scale: Callable[[str], float], seed: int = 1) -> None:
    """Add ``scale(name)`` × N(0, 1) noise to each parameter, so that LayerNorms leave
    (1, 0), biases and zero-initialised tables leave 0 and any mix-up in a mapping shows."""
    torch.manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.add_(scale(name) * torch.randn_like(p))


def save_reference(model: nn.Module, scale: Callable[[str], float], out: Path) -> Path:
    """``model`` (an HF model built under a fixed seed) perturbed by ``scale`` and saved
    with ``save_pretrained`` to ``out``, as a checkpoint directory to import."""
    perturb(model.eval(), scale)
    model.save_pretrained(out)  # type: ignore[operator]
    return out


def load_vlp(imported: Imported, cls: type[M]) -> M:
    """The imported model built and loaded strictly (the import must cover all of it)."""
    assert not imported.text_only
    model = build_model(imported.config)
    assert isinstance(model, cls)
    model.load_state_dict(imported.model)
    return model.eval()
