"""Stored values: each model family, tiny and seeded, on a fixed input, gives the numbers
recorded in ``stored_values.json`` (rtol 1e-4), so a refactor that changes what a model
computes fails here.

The weights do not come from the model's initialisation (a refactor may build modules in
another order): every parameter is drawn from a generator seeded by its own name, so
only the names, which checkpoints depend on anyway, and the forward pass decide the
numbers. Only real positions are summarised (padding may hold anything).

After a change that is meant to change the numbers, regenerate and review the diff::

    PYTHONPATH=src python tests/models/test_stored_values.py --update
"""

from __future__ import annotations

import dataclasses
import json
import sys
import zlib
from pathlib import Path

import pytest
import torch
from torch import Tensor, nn

from vlp.data.batch import Batch
from vlp.models import ModelConfig, build_model, preset_config

STORED = Path(__file__).with_name("stored_values.json")
VOCAB, FEAT, B, L, R = 40, 10, 2, 6, 4
TINY = {"hidden_size": 16, "num_heads": 2, "intermediate_size": 24, "num_layers": 2,
        "vocab_size": VOCAB, "region_feature_dim": FEAT, "num_region_classes": 3,
        "max_positions": 16, "image_size": 24, "patch_size": 8, "dropout": 0.0}

# one tiny config per family: presets, shrunk (two-stream: a narrower image stream)
FAMILIES: dict[str, ModelConfig] = {
    "uniter": preset_config("uniter_base", **TINY),
    "visualbert": preset_config("visualbert_base", **TINY),
    "vilbert": preset_config("vilbert_base", **{
        **TINY, "num_layers": 3, "num_image_layers": 2, "num_cross_layers": 2,
        "image_hidden_size": 12, "image_num_heads": 2, "image_intermediate_size": 20}),
    "lxmert": preset_config("lxmert_base", **{**TINY, "num_layers": 3, "num_image_layers": 3,
                                              "num_cross_layers": 2}),
    "vilt": preset_config("vilt_base", **TINY),
    # SOHO: a BERT-base layout (UNITER's preset, shrunk) on a ConvNet grid (64 pixels: 2×2
    # cells) with a visual dictionary, masking one entry of row 0 for MVM
    "soho": dataclasses.replace(preset_config("uniter_base", **TINY), preset="",
                                visual="grid", image_size=64, vd_size=8),
}


def named_weights(model: nn.Module) -> None:
    """Fill every parameter from a generator seeded by the CRC of its name: LayerNorm
    scales near 1, everything else normal with std 0.5 / sqrt(fan-in)."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            g = torch.Generator().manual_seed(zlib.crc32(name.encode()))
            noise = torch.randn(p.shape, generator=g)
            if "norm" in name and name.endswith("weight"):
                p.copy_(1.0 + 0.1 * noise)
            else:
                fan_in = p[0].numel() if p.ndim >= 2 else p.shape[-1]
                p.copy_(noise * 0.5 / fan_in**0.5)


def fixed_batch(cfg: ModelConfig) -> Batch:
    """Two pairs with padded text (row 0) and a padded region (row 1), or pixels."""
    g = torch.Generator().manual_seed(1234)
    ids = torch.randint(5, VOCAB, (B, L), generator=g)
    text_mask = torch.ones(B, L, dtype=torch.bool)
    text_mask[0, -2:] = False
    ids[~text_mask] = 0
    if cfg.visual in ("patches", "grid"):
        pixels = torch.randn(B, 3, cfg.image_size, cfg.image_size, generator=g)
        draw = torch.tensor([0.5, -1.0]) if cfg.visual == "grid" else None
        return Batch(input_ids=ids, text_mask=text_mask, pixel_values=pixels, vd_draw=draw)
    feats = torch.randn(B, R, FEAT, generator=g)
    loc = torch.rand(B, R, cfg.loc_dim, generator=g)  # numbers in [0, 1], as locations are
    region_mask = torch.ones(B, R, dtype=torch.bool)
    region_mask[1, -1] = False
    return Batch(input_ids=ids, text_mask=text_mask, region_feats=feats, region_loc=loc,
                 region_mask=region_mask)


def _first(x: Tensor, n: int = 4) -> list[float]:
    return [float(v) for v in x.flatten()[:n]]


def summary(family: str) -> dict[str, float | list[float]]:
    """The numbers stored for ``family``: sums and mean absolute values of the real text
    and image states and of the pooled pair, and a few entries of each."""
    cfg = FAMILIES[family]
    model = build_model(cfg).eval()
    named_weights(model)
    with torch.no_grad():
        out = model(fixed_batch(cfg))
    text, image = out.text[out.text_mask], out.image[out.image_mask]  # (real, D), (real, Dv)
    return {"text_sum": float(text.sum()), "text_mean_abs": float(text.abs().mean()),
            "image_sum": float(image.sum()), "image_mean_abs": float(image.abs().mean()),
            "pooled_sum": float(out.pooled.sum()),
            "pooled_mean_abs": float(out.pooled.abs().mean()),
            "pooled_entries": _first(out.pooled[1]), "text_entries": _first(text[-1]),
            "image_entries": _first(image[-1])}


def stored() -> dict[str, dict[str, float | list[float]]]:
    return dict(json.loads(STORED.read_text(encoding="utf-8")))


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_outputs_match_the_stored_values(family: str) -> None:
    expected = stored()[family]
    got = summary(family)
    assert set(got) == set(expected)
    for key, value in expected.items():
        torch.testing.assert_close(torch.tensor(got[key], dtype=torch.float64),
                                   torch.tensor(value, dtype=torch.float64),
                                   rtol=1e-4, atol=1e-6, msg=lambda m, k=key: f"{family}.{k}: {m}")


def test_the_families_differ() -> None:
    """Every family's numbers are its own: no two configs build the same function."""
    sums = [round(float(v["text_sum"]), 4) for v in stored().values()]
    assert len(set(sums)) == len(FAMILIES) == len(stored())


def test_a_perturbed_weight_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    """One weight moved by 1e-3 of its scale moves the stored numbers beyond rtol 1e-4."""
    fill = named_weights

    def perturbed(model: nn.Module) -> None:
        fill(model)
        with torch.no_grad():
            model.encoder.layers[0].mlp.fc1.weight[0, 0] += 1e-3  # type: ignore[index, union-attr]

    monkeypatch.setattr(sys.modules[__name__], "named_weights", perturbed)
    with pytest.raises(AssertionError, match="uniter"):
        test_outputs_match_the_stored_values("uniter")


def update() -> None:
    """Write the current numbers of every family to ``stored_values.json``."""
    values = {family: summary(family) for family in sorted(FAMILIES)}
    STORED.write_text(json.dumps(values, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {STORED}")


if __name__ == "__main__":
    if sys.argv[1:] != ["--update"]:
        sys.exit("usage: PYTHONPATH=src python tests/models/test_stored_values.py --update")
    update()
