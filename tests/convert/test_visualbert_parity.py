"""VisualBERT checkpoints import with outputs equal to transformers' VisualBertModel."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from parity import assert_same_weights, export_model, load_vlp, moved, region_inputs, text_inputs
from transformers import BertModel, VisualBertConfig, VisualBertForPreTraining, VisualBertModel

from conftest import save_reference
from vlp.convert import Imported, convert_hf, import_checkpoint, load_imported, write_model_dir
from vlp.convert.export import export_hf
from vlp.data.batch import Batch
from vlp.data.features import RegionStoreWriter
from vlp.data.tokenizer import SPECIAL_TOKENS
from vlp.errors import VlpError
from vlp.models import build_model
from vlp.models.single_stream import SingleStreamModel
from vlp.models.weights import load_partial
from vlp.objectives import Objective, build_objectives
from vlp.train.config import DataConfig, ObjectivesConfig, PretrainConfig, TrainConfig
from vlp.train.pretrain import build_pretraining

TOL = 1e-4
VOCAB = 120
FEAT = 16


def _batch(b: int = 3, length: int = 9, regions: int = 6, seed: int = 0) -> Batch:
    g, ids, text_mask = text_inputs(VOCAB, b, length, seed)
    feats, region_mask = region_inputs(g, b, regions, FEAT)
    return Batch(input_ids=ids, text_mask=text_mask, region_feats=feats,
                 region_loc=torch.rand(b, regions, 7, generator=g), region_mask=region_mask)


def _hf_inputs(batch: Batch) -> dict[str, torch.Tensor]:
    assert batch.region_feats is not None and batch.region_mask is not None
    return {"input_ids": batch.input_ids, "attention_mask": batch.text_mask.long(),
            "visual_embeds": batch.region_feats,
            "visual_attention_mask": batch.region_mask.long()}


def _vlp_model(imported: Imported) -> SingleStreamModel:
    assert imported.config.region_feature_dim == FEAT
    return load_vlp(imported, SingleStreamModel)


def _diffs(ours: SingleStreamModel, ref: VisualBertModel, batch: Batch) -> dict[str, float]:
    assert batch.region_mask is not None
    with torch.no_grad():
        got = ours(batch)
        want = ref(**_hf_inputs(batch))
    n = batch.input_ids.shape[1]
    text, image = want.last_hidden_state[:, :n], want.last_hidden_state[:, n:]
    return {
        "text": (got.text[batch.text_mask] - text[batch.text_mask]).abs().max().item(),
        "image": (got.image[batch.region_mask] - image[batch.region_mask]).abs().max().item(),
        "pooled": (got.pooled - want.pooler_output).abs().max().item(),
    }


def _scale(name: str) -> float:
    """Noise on each reference weight: every one moves (the visual tables off the text
    copies ``special_visual_initialize`` starts them as)."""
    return 0.1 if "LayerNorm" in name else 0.02


def _config(layers: int) -> VisualBertConfig:
    return VisualBertConfig(vocab_size=VOCAB, hidden_size=48, num_hidden_layers=layers,
                            num_attention_heads=4, intermediate_size=96,
                            max_position_embeddings=40, visual_embedding_dim=FEAT)


@pytest.fixture(scope="module")
def tiny_visualbert(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    out = tmp_path_factory.mktemp("hf") / "visualbert"
    return save_reference(VisualBertModel(_config(3)), _scale, out)


@pytest.fixture(scope="module")
def tiny_pretraining(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    out = tmp_path_factory.mktemp("hf") / "visualbert_pt"
    return save_reference(VisualBertForPreTraining(_config(2)), _scale, out)


def test_tiny_visualbert_matches_transformers(tiny_visualbert: Path) -> None:
    imported = convert_hf(tiny_visualbert)
    assert imported.unused == [] and imported.heads == {}
    assert imported.config.region_embed == "visualbert"
    ref = VisualBertModel.from_pretrained(tiny_visualbert).eval()
    diffs = _diffs(_vlp_model(imported), ref, _batch())
    assert max(diffs.values()) <= TOL, diffs


def _head_diffs(ours: SingleStreamModel, objectives: dict[str, Objective],
                ref: VisualBertForPreTraining, batch: Batch) -> dict[str, float]:
    """The encoder's, the MLM head's and the ITM head's largest differences."""
    diffs = _diffs(ours, ref.visual_bert, batch)
    with torch.no_grad():
        out = ours(batch)
        want = ref(**_hf_inputs(batch))
        mlm = objectives["mlm"].head(out.text)  # (B, L, V)
        n = batch.input_ids.shape[1]
        real = batch.text_mask
        diffs["mlm"] = (mlm[real] - want.prediction_logits[:, :n][real]).abs().max().item()
        itm = objectives["itm"].head(out.pooled)  # vlp: class 1 = match; VisualBERT: class 0
        diffs["itm"] = (itm - want.seq_relationship_logits[:, [1, 0]]).abs().max().item()
    return diffs


def _with_heads(ours: SingleStreamModel, imported: Imported,
                heads: dict[str, dict[str, torch.Tensor]]) -> dict[str, Objective]:
    objectives = build_objectives(["mlm", "itm"], imported.config, ours)
    for name, head in heads.items():
        assert load_partial(objectives[name], head, name) == (
            ["head.decoder.weight"] if name == "mlm" else [])  # the decoder is tied
    return objectives


def test_pretraining_checkpoint_and_heads_match(tiny_pretraining: Path) -> None:
    imported = convert_hf(tiny_pretraining)
    assert imported.unused == [] and set(imported.heads) == {"mlm", "itm"}
    ours = _vlp_model(imported)
    objectives = _with_heads(ours, imported, imported.heads)
    ref = VisualBertForPreTraining.from_pretrained(tiny_pretraining).eval()
    diffs = _head_diffs(ours, objectives, ref, _batch(seed=1))
    assert max(diffs.values()) <= TOL, diffs


def test_export_gives_back_the_checkpoint(tiny_pretraining: Path, tmp_path: Path) -> None:
    vlp_dir = import_checkpoint(tiny_pretraining, tmp_path / "vlp")
    done = export_hf(vlp_dir, tmp_path / "hf")
    assert (done.family, done.architecture) == ("visual_bert", "VisualBertForPreTraining")
    assert done.fresh == done.left == done.overruled == []
    assert_same_weights(tiny_pretraining, done.out)


def test_a_vlp_model_exports_with_the_same_outputs(tiny_pretraining: Path,
                                                   tmp_path: Path) -> None:
    imported = convert_hf(tiny_pretraining)
    ours, heads = moved(imported, SingleStreamModel)
    done = export_model(ours, heads, imported, tmp_path)
    assert done.fresh == done.left == done.overruled == []
    ref = VisualBertForPreTraining.from_pretrained(done.out).eval()
    diffs = _head_diffs(ours, _with_heads(ours, imported, heads), ref, _batch(seed=3))
    assert max(diffs.values()) <= TOL, diffs


def test_a_uniter_model_exports_only_its_text_side(tiny_pretraining: Path,
                                                   tmp_path: Path) -> None:
    imported = convert_hf(tiny_pretraining)
    uniter = dataclasses.replace(imported.config, region_embed="uniter", pooler="mean")
    model = build_model(uniter)
    write_model_dir(dataclasses.replace(imported, config=uniter, model=model.state_dict()),
                    tmp_path / "uniter")
    with pytest.raises(VlpError, match=r"model.pooler: 'mean'.*--family bert"):
        export_hf(tmp_path / "uniter", tmp_path / "hf")
    assert not (tmp_path / "hf").exists()
    done = export_hf(tmp_path / "uniter", tmp_path / "hf", family="bert")
    assert (done.family, done.architecture) == ("bert", "BertForPreTraining")
    # the ITM head has no place in BERT, and a mean pooler is not BERT's [CLS] pooler
    assert done.left == ["itm"]
    assert done.fresh == ["bert.pooler.dense.*", "cls.seq_relationship.*"]
    ref = BertModel.from_pretrained(done.out).eval()
    batch = _batch(seed=4)
    with torch.no_grad():
        got = model.eval().encode_text(batch)
        want = ref(input_ids=batch.input_ids, attention_mask=batch.text_mask.long())
    real = batch.text_mask
    assert (got[real] - want.last_hidden_state[real]).abs().max().item() <= TOL


def test_import_round_trip(tiny_pretraining: Path, tmp_path: Path) -> None:
    out = import_checkpoint(tiny_pretraining, tmp_path / "vlp_visualbert")
    imported = load_imported(out)
    assert not imported.text_only and set(imported.heads) == {"mlm", "itm"}
    direct = convert_hf(tiny_pretraining)
    assert imported.config == direct.config
    for name, head in direct.heads.items():
        assert all(torch.equal(imported.heads[name][k], v) for k, v in head.items())
    ref = VisualBertForPreTraining.from_pretrained(tiny_pretraining).visual_bert.eval()
    diffs = _diffs(_vlp_model(imported), ref, _batch(seed=2))
    assert max(diffs.values()) <= TOL, diffs


def test_bypass_transformer_is_refused(tiny_visualbert: Path, tmp_path: Path) -> None:
    other = tmp_path / "bypass"
    other.mkdir()
    cfg = json.loads((tiny_visualbert / "config.json").read_text())
    (other / "config.json").write_text(json.dumps({**cfg, "bypass_transformer": True}))
    (other / "model.safetensors").write_bytes((tiny_visualbert / "model.safetensors").read_bytes())
    with pytest.raises(VlpError, match="bypass_transformer"):
        convert_hf(other)


def test_visualbert_region_embedding_trains(tiny_visualbert: Path) -> None:
    model = _vlp_model(convert_hf(tiny_visualbert)).train()
    out = model(_batch())
    (out.text.sum() + out.image.sum() + out.pooled.sum()).backward()
    assert all(p.grad is not None for p in model.parameters())
    assert torch.isfinite(out.image).all()


def _tiny_world(root: Path, feat: int) -> Path:
    """Karpathy captions, a region store of ``feat``-sized features, and a vocabulary
    padded to the imported model's ``VOCAB`` tokens."""
    rng = np.random.default_rng(0)
    images = []
    with RegionStoreWriter(root / "features", feat, 3, dtype="float32") as store:
        for i in range(1, 9):
            n = int(rng.integers(2, 5))
            xy = rng.uniform(0, 30, (n, 2))
            boxes = np.concatenate([xy, xy + rng.uniform(5, 20, (n, 2))], 1).astype(np.float32)
            store.add(i, 64, 64, rng.normal(size=(n, feat)).astype(np.float32), boxes,
                      rng.dirichlet(np.ones(3), n).astype(np.float32))
            words = [f"a {rng.choice(['red', 'blue'])} {rng.choice(['star', 'square'])}"
                     for _ in range(2)]
            images.append({"filename": f"img_{i}.png", "cocoid": i, "imgid": i - 1,
                           "split": "val" if i > 6 else "train",
                           "sentences": [{"raw": w, "tokens": w.split()} for w in words]})
    (root / "annotations").mkdir()
    (root / "annotations" / "dataset_world.json").write_text(json.dumps({"images": images}))
    tokens = [*SPECIAL_TOKENS, "a", "red", "blue", "star", "square"]
    tokens += [f"[unused{i}]" for i in range(VOCAB - len(tokens))]
    (root / "vocab.txt").write_text("\n".join(tokens) + "\n")
    return root


def _init_config(world: Path, init: Path, out: Path) -> PretrainConfig:
    return PretrainConfig(
        # VisualBERT directories carry no vocab.txt: the data names the one it was trained with
        data=DataConfig(world=str(world), vocab=str(world / "vocab.txt"), token_budget=60,
                        bucket_size=8, eval_pairs=4),
        objectives=ObjectivesConfig(weights={"mlm": 1.0, "itm": 1.0}),
        train=TrainConfig(out=str(out), init=str(init), steps=2, warmup_steps=1,
                          precision="fp32", device="cpu", tensorboard=False, progress=False,
                          save_every=0))


@pytest.mark.slow  # a training run
def test_pretraining_starts_from_an_imported_model(tiny_pretraining: Path, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    imported = import_checkpoint(tiny_pretraining, tmp_path / "vlp_visualbert")
    world = _tiny_world(tmp_path / "world", FEAT)
    trainer = build_pretraining(_init_config(world, imported, tmp_path / "run"))
    # HF's VisualBERT config pads with id 1; the vocabulary's [PAD] is 0: said, not hidden
    assert "warning: model.pad_id:" in capsys.readouterr().err
    assert trainer.cfg.model.pad_id == 0
    direct = convert_hf(tiny_pretraining)
    assert trainer.cfg.model.region_embed == "visualbert"
    state = trainer.model.encoder.state_dict()
    assert all(torch.equal(state[k], v) for k, v in direct.model.items())
    itm = trainer.model.objective("itm").state_dict()
    assert all(torch.equal(itm[k], v) for k, v in direct.heads["itm"].items())
    metrics = trainer.run()
    assert all(np.isfinite(v) for v in metrics.values())

    wrong = _tiny_world(tmp_path / "wrong", 12)
    with pytest.raises(VlpError) as err:
        build_pretraining(_init_config(wrong, imported, tmp_path / "run2"))
    line = str(err.value)
    assert "train.init" in line and "16" in line and "12" in line and "\n" not in line
