"""Co-attention blocks, LXMERT's region embedding and 4-d locations, worked by hand."""

from __future__ import annotations

import torch

from vlp.data.locations import location_features
from vlp.layers.coattention import CoAttentionBlock, CrossAttentionLayer
from vlp.layers.embeddings import RegionEmbedding
from vlp.layers.transformer import Pooler, TransformerLayer


def test_four_d_location_by_hand() -> None:
    box = torch.tensor([[10.0, 30.0, 30.0, 40.0]])
    loc = location_features(box, torch.tensor(100.0), torch.tensor(50.0), dim=4)
    torch.testing.assert_close(loc, torch.tensor([[0.1, 0.6, 0.3, 0.8]]))


def test_lxmert_region_embedding_is_the_mean_of_two_norms() -> None:
    emb = RegionEmbedding(feature_dim=8, loc_dim=4, dim=16, dropout=0.0, style="lxmert").eval()
    assert emb.token_type is None and emb.norm is None
    feats, loc = torch.randn(2, 3, 8), torch.rand(2, 3, 4)
    want = (emb.feat_norm(emb.feat_fc(feats)) + emb.loc_norm(emb.loc_fc(loc))) / 2
    torch.testing.assert_close(emb(feats, loc), want)


def test_pooler_projects_to_another_width() -> None:
    pooler = Pooler(24, "mean", out_dim=32)
    mask = torch.tensor([[True, True, False]])
    x = torch.randn(1, 3, 24)
    out = pooler(x, mask)
    assert out.shape == (1, 32)
    torch.testing.assert_close(out, torch.tanh(pooler.dense(x[:, :2].mean(1))))


def test_shared_cross_attention_serves_both_directions() -> None:
    torch.manual_seed(0)
    cross = CrossAttentionLayer(16, 2, 16, dropout=0.0)
    block = CoAttentionBlock(cross, None, TransformerLayer(16, 2, 32, 0.0),
                             TransformerLayer(16, 2, 32, 0.0)).eval()
    text, image = torch.randn(2, 5, 16), torch.randn(2, 4, 16)
    t_mask = torch.ones(2, 5, dtype=torch.bool)
    v_mask = torch.tensor([[True] * 4, [True, True, False, False]])
    t, v = block(text, t_mask, image, v_mask)
    # both directions read the streams as they entered the block, through the one module
    torch.testing.assert_close(t, block.text_layer(cross(text, v_mask, image), t_mask))
    torch.testing.assert_close(v, block.image_layer(cross(image, t_mask, text), v_mask))
    assert sum(1 for k in block.state_dict() if k.startswith("text_cross.")) == 8


def test_separate_cross_attention_between_different_widths() -> None:
    block = CoAttentionBlock(TransformerLayer(16, 2, 32, 0.0, cross_dim=24),
                             TransformerLayer(24, 3, 48, 0.0, cross_dim=16),
                             TransformerLayer(16, 2, 32, 0.0), TransformerLayer(24, 3, 48, 0.0))
    t, v = block(torch.randn(2, 5, 16), torch.ones(2, 5, dtype=torch.bool),
                 torch.randn(2, 4, 24), torch.ones(2, 4, dtype=torch.bool))
    assert t.shape == (2, 5, 16) and v.shape == (2, 4, 24)
