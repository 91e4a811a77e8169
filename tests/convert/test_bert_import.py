"""BERT checkpoints import with outputs equal to transformers' BertModel."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch
from parity import assert_same_weights
from transformers import BertConfig, BertForPreTraining, BertModel

from conftest import save_reference
from vlp.convert import convert_hf, import_checkpoint, load_imported, resolve_source
from vlp.convert.export import export_hf
from vlp.data.batch import Batch
from vlp.errors import VlpError
from vlp.models import build_model
from vlp.models.single_stream import SingleStreamModel

TOL = 1e-4


def _text_batch(vocab: int, b: int = 3, length: int = 11, seed: int = 0) -> Batch:
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, vocab, (b, length), generator=g)
    mask = torch.ones(b, length, dtype=torch.bool)
    mask[1, -4:] = False  # uneven padding
    mask[2, -1:] = False
    ids[~mask] = 0
    return Batch(input_ids=ids, text_mask=mask)


def _vlp_text_model(src: Path | str) -> SingleStreamModel:
    imported = load_imported(src)
    model = build_model(dataclasses.replace(imported.config, region_feature_dim=8))
    assert isinstance(model, SingleStreamModel)
    left = model.load_text_weights(imported.model)
    assert all(k.startswith("visual_input.") for k in left), left  # only regions stay fresh
    return model.eval()


def _max_diff(ours: SingleStreamModel, ref: torch.nn.Module, batch: Batch) -> tuple[float, float]:
    with torch.no_grad():
        got = ours.encode_text(batch)
        want = ref(input_ids=batch.input_ids, attention_mask=batch.text_mask.long())
        real = batch.text_mask
        hidden = (got[real] - want.last_hidden_state[real]).abs().max().item()
        pooled = (ours.pooler(got) - want.pooler_output).abs().max().item()
    return hidden, pooled


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=120, hidden_size=48, num_hidden_layers=3, num_attention_heads=4,
                     intermediate_size=96, max_position_embeddings=40)
    ref = BertForPreTraining(cfg).eval()
    out = tmp_path_factory.mktemp("hf") / "bert"
    # LayerNorms off their (1, 0) start, so that a mix-up would show
    return save_reference(ref, lambda name: 0.1 if "LayerNorm" in name else 0.0, out)


def test_tiny_bert_matches_transformers(tiny_bert: Path) -> None:
    ref = BertModel.from_pretrained(tiny_bert).eval()
    hidden, pooled = _max_diff(_vlp_text_model(tiny_bert), ref, _text_batch(120))
    assert hidden <= TOL and pooled <= TOL, (hidden, pooled)


def test_export_gives_back_the_checkpoint(tiny_bert: Path, tmp_path: Path) -> None:
    done = export_hf(import_checkpoint(tiny_bert, tmp_path / "vlp"), tmp_path / "hf")
    assert (done.family, done.architecture) == ("bert", "BertForPreTraining")
    # vlp has no next-sentence head: transformers starts it afresh, and says so
    assert done.fresh == ["cls.seq_relationship.*"] and done.left == []
    assert_same_weights(tiny_bert, done.out, fresh=("cls.seq_relationship.",))
    ref = BertModel.from_pretrained(done.out).eval()
    hidden, pooled = _max_diff(_vlp_text_model(tiny_bert), ref, _text_batch(120, seed=2))
    assert hidden <= TOL and pooled <= TOL, (hidden, pooled)


def test_import_writes_a_loadable_directory(tiny_bert: Path, tmp_path: Path) -> None:
    out = import_checkpoint(tiny_bert, tmp_path / "vlp_bert")
    assert (out / "model.safetensors").is_file() and (out / "model.yaml").is_file()
    imported = load_imported(out)
    assert imported.text_only and imported.config.num_layers == 3
    assert set(imported.heads) == {"mlm"}  # BertForPreTraining carries the MLM head
    ref = BertModel.from_pretrained(tiny_bert).eval()
    hidden, _ = _max_diff(_vlp_text_model(out), ref, _text_batch(120, seed=1))
    assert hidden <= TOL
    with pytest.raises(VlpError, match="already exists"):
        import_checkpoint(tiny_bert, out)


@pytest.mark.slow  # the 87 MB checkpoint
def test_real_minilm_matches_transformers() -> None:
    src = resolve_source("minilm")
    ref = BertModel.from_pretrained(src).eval()
    imported = convert_hf(src)
    assert imported.vocab is not None and imported.unused == []
    hidden, pooled = _max_diff(_vlp_text_model(src), ref, _text_batch(30522, b=4, length=16))
    assert hidden <= TOL and pooled <= TOL, (hidden, pooled)


def test_missing_weight_names_file_and_key(tiny_bert: Path, tmp_path: Path) -> None:
    from safetensors.torch import load_file, save_file
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text((tiny_bert / "config.json").read_text())
    state = load_file(str(tiny_bert / "model.safetensors"))
    del state["bert.encoder.layer.1.attention.self.key.weight"]
    save_file(state, str(broken / "model.safetensors"))
    with pytest.raises(VlpError) as err:
        convert_hf(broken)
    line = str(err.value)
    assert "model.safetensors" in line and "encoder.layer.1.attention.self.key.weight" in line
    assert "\n" not in line


def test_unknown_model_type_is_one_line(tiny_bert: Path, tmp_path: Path) -> None:
    other = tmp_path / "other"
    other.mkdir()
    (other / "config.json").write_text('{"model_type": "gpt2"}')
    (other / "model.safetensors").write_bytes((tiny_bert / "model.safetensors").read_bytes())
    with pytest.raises(VlpError, match="model_type.*gpt2"):
        convert_hf(other)


def test_import_command_and_init_text(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`vlp import` writes a directory that `train.init_text` starts a run from: the text
    side equals BERT's weights, the regions start fresh."""
    from conftest import make_dataset
    from vlp.config import load_config
    from vlp.data.tokenizer import Tokenizer
    from vlp.train.cli import main
    from vlp.train.config import PretrainConfig
    from vlp.train.pretrain import build_pretraining

    world = make_dataset(tmp_path / "world")
    vocab = Tokenizer.from_vocab(world / "vocab.txt")
    torch.manual_seed(1)
    cfg = BertConfig(vocab_size=vocab.vocab_size, hidden_size=32, num_hidden_layers=2,
                     num_attention_heads=2, intermediate_size=64, max_position_embeddings=40)
    hf_dir = tmp_path / "bert"
    BertModel(cfg).save_pretrained(hf_dir)
    (hf_dir / "vocab.txt").write_text((world / "vocab.txt").read_text())
    assert main(["import", str(hf_dir), str(tmp_path / "imported")]) == 0
    assert "2-layer, 32-wide text encoder" in capsys.readouterr().out

    run = load_config(PretrainConfig, None, [
        f"data.world={world}", f"train.init_text={tmp_path / 'imported'}",
        f"train.out={tmp_path / 'run'}", "model.hidden_size=64", "train.steps=1"])
    trainer = build_pretraining(run)
    model = trainer.model.encoder
    assert trainer.cfg.model.hidden_size == 32  # the checkpoint's sizes win
    bert = BertModel.from_pretrained(hf_dir)
    torch.testing.assert_close(model.text_embed.word.weight, bert.embeddings.word_embeddings.weight)
    torch.testing.assert_close(model.encoder.layers[1].mlp.fc2.weight,
                               bert.encoder.layer[1].output.dense.weight)
