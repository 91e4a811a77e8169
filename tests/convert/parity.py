"""What the parity tests share: inputs with uneven padding, a vlp model loaded strictly
from an import (reference weights are saved by ``conftest.save_reference``), and models
exported back to Hugging Face."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TypeVar

import torch
from safetensors.torch import load_file
from torch import Tensor, nn

from conftest import perturb
from vlp.convert import Imported, write_model_dir
from vlp.convert.export import Exported, export_hf
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


def moved(imported: Imported, cls: type[M], scale: float = 0.02, seed: int = 3
          ) -> tuple[M, dict[str, dict[str, Tensor]]]:
    """A model as vlp would make it: the import's architecture built by vlp (shared modules
    shared), every weight and head weight moved off the import's values."""
    model = load_vlp(imported, cls)
    perturb(model, lambda _: scale, seed)
    g = torch.Generator().manual_seed(seed)
    heads = {name: {k: v + scale * torch.randn(v.shape, generator=g) for k, v in head.items()}
             for name, head in imported.heads.items()}
    return model, heads


def export_model(model: nn.Module, heads: dict[str, dict[str, Tensor]], imported: Imported,
                 root: Path, family: str | None = None) -> Exported:
    """``model`` and ``heads`` written as a vlp model directory, then exported."""
    write_model_dir(dataclasses.replace(imported, model=model.state_dict(), heads=heads),
                    root / "vlp")
    return export_hf(root / "vlp", root / "hf", family=family)


def assert_same_weights(reference: Path, exported: Path, fresh: tuple[str, ...] = ()) -> None:
    """Every weight of the exported directory equals the reference directory's, and the
    reference's only weights it lacks are tied copies or start with one of ``fresh``."""
    want = load_file(str(reference / "model.safetensors"))
    got = load_file(str(exported / "model.safetensors"))
    assert set(got) <= set(want), set(got) - set(want)
    assert all(torch.equal(got[k], want[k]) for k in got), [
        k for k in got if not torch.equal(got[k], want[k])]
    tied = ("decoder.weight", "decoder.bias")
    assert all(k.endswith(tied) or k.startswith(fresh) for k in set(want) - set(got)), (
        sorted(set(want) - set(got)))
