"""LXMERT checkpoints import with outputs equal to transformers' LxmertModel."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from parity import assert_same_weights, export_model, load_vlp, moved, region_inputs, text_inputs
from transformers import LxmertConfig, LxmertForPreTraining, LxmertModel

from conftest import save_reference
from vlp.convert import Imported, convert_hf, import_checkpoint, load_imported
from vlp.convert.export import export_hf
from vlp.data.batch import Batch
from vlp.data.locations import location_features
from vlp.models.two_stream import TwoStreamModel
from vlp.models.weights import load_partial
from vlp.objectives import Objective, build_objectives

TOL = 1e-4
VOCAB = 120
FEAT = 16
OBJECTS = 7


def _config() -> LxmertConfig:
    return LxmertConfig(vocab_size=VOCAB, hidden_size=48, num_attention_heads=4,
                        intermediate_size=96, max_position_embeddings=40, l_layers=2,
                        r_layers=1, x_layers=2, visual_feat_dim=FEAT, visual_pos_dim=4,
                        num_qa_labels=5, num_object_labels=OBJECTS, num_attr_labels=3)


def _batch(b: int = 3, length: int = 9, regions: int = 6, seed: int = 0) -> Batch:
    g, ids, text_mask = text_inputs(VOCAB, b, length, seed)
    feats, region_mask = region_inputs(g, b, regions, FEAT)
    xy = torch.rand(b, regions, 2, generator=g) * 40
    boxes = torch.cat([xy, xy + 5 + torch.rand(b, regions, 2, generator=g) * 20], dim=-1)
    loc = location_features(boxes, torch.tensor(64.0), torch.tensor(48.0), dim=4)
    return Batch(input_ids=ids, text_mask=text_mask, region_feats=feats, region_loc=loc,
                 region_mask=region_mask)


def _hf_inputs(batch: Batch) -> dict[str, torch.Tensor]:
    assert batch.region_feats is not None and batch.region_mask is not None
    return {"input_ids": batch.input_ids, "attention_mask": batch.text_mask.long(),
            "visual_feats": batch.region_feats, "visual_pos": batch.region_loc,
            "visual_attention_mask": batch.region_mask.long()}


def _vlp_model(imported: Imported) -> TwoStreamModel:
    assert imported.config.region_feature_dim == FEAT
    return load_vlp(imported, TwoStreamModel)


def _diffs(ours: TwoStreamModel, ref: LxmertModel, batch: Batch) -> dict[str, float]:
    assert batch.region_mask is not None
    with torch.no_grad():
        got = ours(batch)
        want = ref(**_hf_inputs(batch))
    t, v = batch.text_mask, batch.region_mask
    return {
        "language_output": (got.text[t] - want.language_output[t]).abs().max().item(),
        "vision_output": (got.image[v] - want.vision_output[v]).abs().max().item(),
        "pooled_output": (got.pooled - want.pooled_output).abs().max().item(),
    }


def _scale(name: str) -> float:
    """Noise on each reference weight: LayerNorms and biases moved off (1, 0) and 0."""
    moved = "LayerNorm" in name or "layer_norm" in name or name.endswith("bias")
    return 0.2 if moved else 0.0


@pytest.fixture(scope="module")
def tiny_lxmert(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    out = tmp_path_factory.mktemp("hf") / "lxmert"
    return save_reference(LxmertModel(_config()), _scale, out)


@pytest.fixture(scope="module")
def tiny_pretraining(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(2)
    out = tmp_path_factory.mktemp("hf") / "lxmert_pt"
    return save_reference(LxmertForPreTraining(_config()), _scale, out)


def test_tiny_lxmert_matches_transformers(tiny_lxmert: Path) -> None:
    imported = convert_hf(tiny_lxmert)
    cfg = imported.config
    assert imported.unused == [] and imported.heads == {}
    assert (cfg.arch, cfg.num_layers, cfg.num_image_layers, cfg.num_cross_layers) == (
        "two_stream", 4, 3, 2)
    ref = LxmertModel.from_pretrained(tiny_lxmert).eval()
    ours = _vlp_model(imported)
    for seed in (0, 1):
        diffs = _diffs(ours, ref, _batch(seed=seed))
        assert max(diffs.values()) <= TOL, diffs


def test_cross_attention_is_one_module_for_both_directions(tiny_lxmert: Path) -> None:
    ours = _vlp_model(convert_hf(tiny_lxmert))
    for block in ours.blocks:
        assert block.image_cross is None  # the text's cross-attention serves both ways
    assert not any(".image_cross." in k for k in ours.state_dict())


def _with_heads(ours: TwoStreamModel, imported: Imported,
                heads: dict[str, dict[str, torch.Tensor]]) -> dict[str, Objective]:
    objectives = build_objectives(list(heads), imported.config, ours)
    for name, head in heads.items():
        assert load_partial(objectives[name], head, name) == (
            ["head.decoder.weight"] if name == "mlm" else [])  # the decoder is tied
    return objectives


def _head_diffs(ours: TwoStreamModel, objectives: dict[str, Objective],
                ref: LxmertForPreTraining, batch: Batch,
                visual: tuple[tuple[str, str], ...]) -> dict[str, float]:
    """The encoder's and the heads' largest differences (``visual``: the vlp region heads
    to compare, each with its LXMERT decoder)."""
    diffs = _diffs(ours, ref.lxmert, batch)
    t, v = batch.text_mask, batch.region_mask
    assert v is not None
    with torch.no_grad():
        out = ours(batch)
        want = ref(**_hf_inputs(batch))
        decoded = ref.obj_predict_head(ref.lxmert(**_hf_inputs(batch)).vision_output)
        mlm = objectives["mlm"].head(out.text)  # (B, L, V)
        diffs["mlm"] = (mlm[t] - want.prediction_logits[t]).abs().max().item()
        itm = objectives["itm"].head(out.pooled)  # class 1 = match in both
        diffs["itm"] = (itm - want.cross_relationship_score).abs().max().item()
        for name, key in visual:
            pred = objectives[name].head(out.image)
            diffs[name] = (pred[v] - decoded[key][v]).abs().max().item()
    return diffs


def test_pretraining_checkpoint_and_heads_match(tiny_pretraining: Path) -> None:
    imported = convert_hf(tiny_pretraining)
    # the attribute decoder and the answer head have no vlp objective
    assert all(k.startswith(("answer_head.", "obj_predict_head.decoder_dict.attr."))
               for k in imported.unused), imported.unused
    assert set(imported.heads) == {"mlm", "itm", "mrfr", "mrc", "mrc_kl"}
    assert imported.config.num_region_classes == OBJECTS
    ours = _vlp_model(imported)
    ref = LxmertForPreTraining.from_pretrained(tiny_pretraining).eval()
    diffs = _head_diffs(ours, _with_heads(ours, imported, imported.heads), ref, _batch(seed=1),
                        (("mrfr", "feat"), ("mrc", "obj"), ("mrc_kl", "obj")))
    assert max(diffs.values()) <= TOL, diffs


def test_export_gives_back_the_checkpoint(tiny_pretraining: Path, tmp_path: Path) -> None:
    done = export_hf(import_checkpoint(tiny_pretraining, tmp_path / "vlp"), tmp_path / "hf")
    assert (done.family, done.architecture) == ("lxmert", "LxmertForPreTraining")
    assert done.fresh == done.left == done.overruled == []
    # vlp has no attribute or answer head: the export's config asks for none
    assert_same_weights(tiny_pretraining, done.out,
                        fresh=("answer_head.", "obj_predict_head.decoder_dict.attr."))


def test_a_vlp_model_exports_with_the_same_outputs(tiny_pretraining: Path,
                                                   tmp_path: Path) -> None:
    imported = convert_hf(tiny_pretraining)
    ours, heads = moved(imported, TwoStreamModel)
    done = export_model(ours, heads, imported, tmp_path)
    # LXMERT's visual decoders share one transform; vlp's heads have one each, and the
    # MRC-KL head's decoder is MRC's in LXMERT: the first head's values are written
    assert done.overruled == ["heads.mrc.head.0.dense.*", "heads.mrc.head.0.norm.*",
                              "heads.mrc_kl.head.0.dense.*", "heads.mrc_kl.head.0.norm.*",
                              "heads.mrc_kl.head.1.*"], done.overruled
    ref = LxmertForPreTraining.from_pretrained(done.out).eval()
    diffs = _head_diffs(ours, _with_heads(ours, imported, heads), ref, _batch(seed=3),
                        (("mrfr", "feat"),))
    assert max(diffs.values()) <= TOL, diffs


def test_import_round_trip(tiny_pretraining: Path, tmp_path: Path) -> None:
    out = import_checkpoint(tiny_pretraining, tmp_path / "vlp_lxmert")
    imported = load_imported(out)
    direct = convert_hf(tiny_pretraining)
    assert not imported.text_only and imported.config == direct.config
    assert set(imported.heads) == set(direct.heads)
    ref = LxmertForPreTraining.from_pretrained(tiny_pretraining).lxmert.eval()
    diffs = _diffs(_vlp_model(imported), ref, _batch(seed=2))
    assert max(diffs.values()) <= TOL, diffs
