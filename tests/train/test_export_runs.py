"""``vlp export``: a run pre-trained in vlp becomes a Hugging Face directory that
transformers loads with the same outputs and whose tokenizer splits text as vlp's does."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from transformers import BertTokenizer, VisualBertForPreTraining

from vlp.convert import load_imported
from vlp.data.batch import Batch
from vlp.data.tokenizer import Tokenizer
from vlp.models import build_model
from vlp.train.cli import main

pytestmark = pytest.mark.slow  # a training run

TINY = ["data.token_budget=60", "data.bucket_size=8", "model.hidden_size=32",
        "model.num_layers=2", "model.num_heads=2", "model.intermediate_size=64",
        "train.warmup_steps=1", "train.precision=fp32", "train.tensorboard=false",
        "train.progress=false", "train.lr=1e-3", "train.steps=3"]


def test_a_visualbert_run_exports_to_transformers(dataset: Path, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    run, out = tmp_path / "run", tmp_path / "hf"
    assert main(["pretrain", f"data.world={dataset}", f"train.out={run}",
                 "model.region_embed=visualbert", *TINY]) == 0
    capsys.readouterr()
    assert main(["export", str(run), str(out)]) == 0
    said = capsys.readouterr().out
    assert f"exported a visual_bert model (VisualBertForPreTraining) to {out}" in said
    # the run's region heads have no place in VisualBERT: said, not silently dropped
    assert "not exported (no place in visual_bert): the mrc_kl, mrfr heads" in said

    imported = load_imported(run)
    ours = build_model(imported.config).eval()
    missing, unexpected = ours.load_state_dict(imported.model, strict=False)
    # a checkpoint keeps a shared module once: the region embedder's LayerNorm is the text's
    assert unexpected == [] and all(k.startswith("visual_input.embedding.norm.")
                                    for k in missing), missing
    ref = VisualBertForPreTraining.from_pretrained(out).eval()
    g = torch.Generator().manual_seed(0)
    cfg = imported.config
    ids = torch.randint(5, cfg.vocab_size, (2, 7), generator=g)
    text_mask = torch.tensor([[True] * 7, [True] * 4 + [False] * 3])
    region_mask = torch.tensor([[True] * 5, [True] * 3 + [False] * 2])
    feats = torch.randn(2, 5, cfg.region_feature_dim, generator=g) * region_mask[..., None]
    batch = Batch(input_ids=ids * text_mask, text_mask=text_mask, region_feats=feats,
                  region_loc=torch.rand(2, 5, cfg.loc_dim, generator=g),
                  region_mask=region_mask)
    with torch.no_grad():
        got = ours(batch)
        want = ref.visual_bert(input_ids=batch.input_ids, attention_mask=text_mask.long(),
                               visual_embeds=feats, visual_attention_mask=region_mask.long())
    hidden = want.last_hidden_state
    assert (got.text[text_mask] - hidden[:, :7][text_mask]).abs().max() <= 1e-4
    assert (got.image[region_mask] - hidden[:, 7:][region_mask]).abs().max() <= 1e-4
    assert (got.pooled - want.pooler_output).abs().max() <= 1e-4

    # transformers' BERT tokenizer, from the directory alone, splits text as vlp does
    text = "A red circle, left of the big blue square?"
    [vlp_ids] = Tokenizer.from_vocab(run / "vocab.txt").encode([text], 40)
    assert BertTokenizer.from_pretrained(out)(text)["input_ids"] == vlp_ids

    # an existing directory is never replaced without --overwrite
    assert main(["export", str(run), str(out)]) == 2
    assert "already exists" in capsys.readouterr().err
