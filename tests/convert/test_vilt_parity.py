"""ViLT checkpoints import with outputs equal to transformers' ViltModel / ViltForMaskedLM."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import pytest
import torch
from parity import assert_same_weights, export_model, load_vlp, moved, text_inputs
from transformers import ViltConfig, ViltForMaskedLM, ViltImageProcessor, ViltModel

from conftest import save_reference
from vlp.convert import Imported, convert_hf, import_checkpoint, load_imported
from vlp.convert.export import export_hf
from vlp.data.batch import Batch
from vlp.errors import VlpError
from vlp.models.single_stream import SingleStreamModel
from vlp.models.weights import load_partial
from vlp.objectives import build_objectives

TOL = 1e-4
VOCAB = 120


def _batch(height: int = 32, width: int = 32, b: int = 3, length: int = 9,
           seed: int = 0) -> Batch:
    g, ids, text_mask = text_inputs(VOCAB, b, length, seed)
    return Batch(input_ids=ids, text_mask=text_mask,
                 pixel_values=torch.randn(b, 3, height, width, generator=g))


def _hf_inputs(batch: Batch) -> dict[str, torch.Tensor]:
    assert batch.pixel_values is not None
    b, _, h, w = batch.pixel_values.shape
    mask = (batch.pixel_mask if batch.pixel_mask is not None
            else torch.ones(b, h, w, dtype=torch.bool))
    return {"input_ids": batch.input_ids, "attention_mask": batch.text_mask.long(),
            "pixel_values": batch.pixel_values, "pixel_mask": mask.long()}


def _vlp_model(imported: Imported) -> SingleStreamModel:
    assert imported.config.visual == "patches"
    return load_vlp(imported, SingleStreamModel)


def _patch_diff(got: torch.Tensor, want: torch.Tensor) -> float:
    """Max |Δ| between two rows' patch states that may come in another order: Hugging Face
    shuffles the patches (each keeps its position embedding, so only the order changes)."""
    worst = 0.0
    for g, w in zip(got, want, strict=True):  # (N, D) each
        dist = torch.cdist(w.double(), g.double(), p=float("inf"))  # (N, N) max |Δ|
        match = dist.argmin(1)
        assert torch.equal(match.sort().values, torch.arange(len(g))), "not a permutation"
        worst = max(worst, dist.min(1).values.max().item())
    return worst


def _diffs(ours: SingleStreamModel, ref: ViltModel, batch: Batch) -> dict[str, float]:
    with torch.no_grad():
        got = ours(batch)
        want = ref(**_hf_inputs(batch))
    n, t = batch.input_ids.shape[1], batch.text_mask
    hidden = want.last_hidden_state
    return {
        "text": (got.text[t] - hidden[:, :n][t]).abs().max().item(),
        "image_cls": (got.image[:, 0] - hidden[:, n]).abs().max().item(),
        "patches": _patch_diff(got.image[:, 1:], hidden[:, n + 1:]),
        "pooled": (got.pooled - want.pooler_output).abs().max().item(),
    }


def _scale(name: str) -> float:
    """Noise on each reference weight: every one moves ([CLS] and positions off 0,
    LayerNorms off (1, 0))."""
    return 0.1 if "layernorm" in name.lower() else 0.05


def _config() -> ViltConfig:
    return ViltConfig(vocab_size=VOCAB, hidden_size=48, num_hidden_layers=2,
                      num_attention_heads=4, intermediate_size=96, max_position_embeddings=40,
                      image_size=32, patch_size=8, num_channels=3)


@pytest.fixture(scope="module")
def tiny_vilt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    out = tmp_path_factory.mktemp("hf") / "vilt_mlm"
    return save_reference(ViltForMaskedLM(_config()), _scale, out)


@pytest.mark.parametrize(("height", "width"), [(32, 32), (40, 48)])
def test_tiny_vilt_matches_transformers(tiny_vilt: Path, height: int, width: int) -> None:
    """At the configured 32×32 (a 4×4 grid), and at 40×48, where both resize the position
    embeddings to a 5×6 grid."""
    imported = convert_hf(tiny_vilt)
    assert imported.unused == [], imported.unused
    assert (imported.config.norm_first, imported.config.modality_embed) == (True, True)
    ref = ViltForMaskedLM.from_pretrained(tiny_vilt).eval()
    diffs = _diffs(_vlp_model(imported), ref.vilt, _batch(height, width))
    assert max(diffs.values()) <= TOL, diffs


def test_a_padded_batch_of_mixed_sizes_matches_transformers(tiny_vilt: Path) -> None:
    """Images of 32×32, 24×40 and 40×16 pixels padded to 40×40 with a pixel mask: each
    gets the position embeddings of its own grid, as transformers' ViLT gives them (the
    text, [CLS] and pooled states; the padding patches are masked and not compared)."""
    from vlp.data.transforms import pad_images

    imported = convert_hf(tiny_vilt)
    ref = ViltForMaskedLM.from_pretrained(tiny_vilt).eval()
    g = torch.Generator().manual_seed(5)
    pixels, mask = pad_images([torch.randn(3, h, w, generator=g)
                               for h, w in ((32, 32), (24, 40), (40, 16))], 8)
    assert mask is not None
    batch = _batch(seed=3)
    batch.pixel_values, batch.pixel_mask = pixels, mask
    ours = _vlp_model(imported)
    with torch.no_grad():
        got = ours(batch)
        want = ref.vilt(**_hf_inputs(batch))
    n, t = batch.input_ids.shape[1], batch.text_mask
    hidden = want.last_hidden_state
    assert (got.text[t] - hidden[:, :n][t]).abs().max() <= TOL
    assert (got.image[:, 0] - hidden[:, n]).abs().max() <= TOL
    assert (got.pooled - want.pooler_output).abs().max() <= TOL


def test_mlm_head_matches(tiny_vilt: Path) -> None:
    imported = convert_hf(tiny_vilt)
    assert set(imported.heads) == {"mlm"}
    ours = _vlp_model(imported)
    mlm = build_objectives(["mlm"], imported.config, ours)["mlm"]
    assert load_partial(mlm, imported.heads["mlm"], "mlm") == ["head.decoder.weight"]  # tied
    ref = ViltForMaskedLM.from_pretrained(tiny_vilt).eval()
    batch = _batch(seed=2)
    with torch.no_grad():
        got = mlm.head(ours(batch).text)  # (B, L, V)
        want = ref(**_hf_inputs(batch)).logits
    assert (got[batch.text_mask] - want[batch.text_mask]).abs().max().item() <= TOL


def test_export_gives_back_the_checkpoint(tiny_vilt: Path, tmp_path: Path) -> None:
    done = export_hf(import_checkpoint(tiny_vilt, tmp_path / "vlp"), tmp_path / "hf")
    assert (done.family, done.architecture) == ("vilt", "ViltForMaskedLM")
    assert done.fresh == done.left == done.overruled == []
    assert_same_weights(tiny_vilt, done.out)


def test_a_vlp_model_exports_with_the_same_outputs(tiny_vilt: Path, tmp_path: Path) -> None:
    imported = convert_hf(tiny_vilt)
    ours, heads = moved(imported, SingleStreamModel)
    # a patch model of vlp's own, normalising pixels as ImageNet does, not as ViLT
    mean, std = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]
    imported = dataclasses.replace(imported, config=dataclasses.replace(
        imported.config, pixel_mean=mean, pixel_std=std))
    done = export_model(ours, heads, imported, tmp_path)
    processor = ViltImageProcessor.from_pretrained(done.out)
    assert (list(processor.image_mean), list(processor.image_std)) == (mean, std)
    back = convert_hf(done.out).config
    assert (back.pixel_mean, back.pixel_std) == (mean, std)
    ref = ViltForMaskedLM.from_pretrained(done.out).eval()
    batch = _batch(40, 48, seed=6)
    diffs = _diffs(ours, ref.vilt, batch)
    mlm = build_objectives(["mlm"], imported.config, ours)["mlm"]
    load_partial(mlm, heads["mlm"], "mlm")
    with torch.no_grad():
        got = mlm.head(ours(batch).text)  # (B, L, V)
        want = ref(**_hf_inputs(batch)).logits
    diffs["mlm"] = (got[batch.text_mask] - want[batch.text_mask]).abs().max().item()
    assert max(diffs.values()) <= TOL, diffs


def test_vlp_import_round_trip(tiny_vilt: Path, tmp_path: Path) -> None:
    out = import_checkpoint(tiny_vilt, tmp_path / "vilt")
    loaded, direct = load_imported(out), convert_hf(tiny_vilt)
    assert loaded.config == direct.config
    assert loaded.model.keys() == direct.model.keys()
    assert all(torch.equal(loaded.model[k], direct.model[k]) for k in direct.model)


def test_patch_model_names_what_is_missing(tiny_vilt: Path) -> None:
    model = _vlp_model(convert_hf(tiny_vilt))
    batch = _batch()
    with pytest.raises(VlpError, match="expects pixels .*pixel_values"):
        model(Batch(input_ids=batch.input_ids, text_mask=batch.text_mask))
    grey = Batch(input_ids=batch.input_ids, text_mask=batch.text_mask,
                 pixel_values=torch.zeros(3, 1, 32, 32))
    with pytest.raises(VlpError, match=r"shape \(3, 1, 32, 32\).*\(B, 3, H, W\)"):
        model(grey)


@pytest.mark.slow
def test_an_imported_vilt_pretrains_on_pixels(tiny_vilt: Path, dataset: Path,
                                              tmp_path: Path) -> None:
    """``train.init`` a ViLT: the trainer reads the world's images through the pixel
    pipeline (ViLT's 0.5 normalisation), and MLM and ITM train and evaluate on them."""
    from vlp.config import load_config
    from vlp.train.config import PretrainConfig
    from vlp.train.pretrain import build_pretraining

    words = (dataset / "vocab.txt").read_text().split()  # padded to the ViLT's vocabulary
    vocab = tmp_path / "vocab.txt"
    vocab.write_text("\n".join(words + [f"w{i}" for i in range(VOCAB - len(words))]) + "\n")
    cfg = load_config(PretrainConfig, None, [
        f"data.world={dataset}", f"data.vocab={vocab}", f"train.init={tiny_vilt}",
        f"train.out={tmp_path / 'run'}", "train.steps=3", "train.warmup_steps=1",
        "train.progress=false", "train.tensorboard=false", "train.precision=fp32",
        "train.save_every=0", "data.token_budget=0", "data.batch_size=4",
        "data.max_text_len=16", "objectives.weights={mlm: 1.0, itm: 1.0}",
        "objectives.mix=sum"])
    trainer = build_pretraining(cfg)
    assert trainer.cfg.model.pixel_mean == [0.5] * 3
    metrics = trainer.run()
    assert {"eval/mlm_acc", "eval/itm_acc"} <= set(metrics)
    assert all(math.isfinite(v) for v in metrics.values())
    assert (tmp_path / "run" / "checkpoints" / "step_00000003" / "model.safetensors").exists()
