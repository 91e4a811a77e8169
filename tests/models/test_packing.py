"""No padded position is computed: the encoders run their layers on the real positions
only (packed), with the same outputs on them and the same gradients as the padded
computation, and a sequence's outputs do not depend on what else is in its batch."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import pytest
import torch
from torch import Tensor, nn

from conftest import random_batch
from vlp.data.batch import Batch
from vlp.layers.packing import Packing
from vlp.layers.transformer import TransformerEncoder
from vlp.models import ModelConfig, build_model
from vlp.models.outputs import VLOutput
from vlp.models.single_stream import SingleStreamModel
from vlp.models.two_stream import TwoStreamModel

TOL = 1e-5


def _padded_single(model: SingleStreamModel, batch: Batch) -> VLOutput:
    """The single-stream forward pass with every layer on every padded position."""
    text, visual = model.embed_text(batch), model.embed_visual(batch)
    x = torch.cat([text, visual.tokens], dim=1)  # (B, L + R, D)
    mask = torch.cat([batch.text_mask, visual.mask], dim=1)
    for layer in model.encoder.layers:
        x = layer(x, mask)
    if model.encoder.norm is not None:  # pre-LayerNorm stacks end with one
        x = model.encoder.norm(x)
    n = text.shape[1]
    return VLOutput(text=x[:, :n], image=x[:, n:], text_mask=batch.text_mask,
                    image_mask=visual.mask, pooled=model.pooler(x, mask))


def _padded_two(model: TwoStreamModel, batch: Batch) -> VLOutput:
    """The two-stream forward pass with every layer on every padded position."""
    image, image_mask = model.visual_input(batch)
    text, text_mask = model.text_embed(batch.input_ids), batch.text_mask
    for layer in model.text_encoder.layers:
        text = layer(text, text_mask)
    for layer in model.image_encoder.layers:
        image = layer(image, image_mask)
    for block in model._blocks():
        text, image = block(text, text_mask, image, image_mask)
    pooled = model.text_pooler(text, text_mask)
    if model.image_pooler is not None:
        pooled = pooled * model.image_pooler(image, image_mask)
    return VLOutput(text=text, image=image, text_mask=text_mask, image_mask=image_mask,
                    pooled=pooled)


def _uneven(seed: int = 0) -> Batch:
    """Rows padded differently on both sides: one text 3 of 7 long, one image 2 of 5."""
    batch = random_batch(seed=seed)
    assert batch.region_mask is not None
    batch.text_mask[2, 3:] = False
    batch.input_ids[~batch.text_mask] = 0
    batch.region_mask[3, 2:] = False
    return batch


def _cfgs(tiny: ModelConfig) -> dict[str, ModelConfig]:
    two = dataclasses.replace(tiny, arch="two_stream", num_layers=3, num_image_layers=2,
                              num_cross_layers=2, image_hidden_size=24, image_num_heads=2,
                              image_intermediate_size=48)
    return {
        "uniter": tiny,
        "vilt_order": dataclasses.replace(tiny, norm_first=True, modality_embed=True),
        "vilbert": two,
        "lxmert": dataclasses.replace(two, image_hidden_size=0, image_num_heads=0,
                                      image_intermediate_size=0, num_image_layers=3,
                                      cross_attention="shared", cross_block="lxmert",
                                      pooled="text"),
    }


def _reference(model: nn.Module) -> Callable[[Batch], VLOutput]:
    if isinstance(model, TwoStreamModel):
        return lambda b: _padded_two(model, b)
    assert isinstance(model, SingleStreamModel)
    return lambda b: _padded_single(model, b)


def _real(out: VLOutput) -> list[Tensor]:
    assert out.image_mask is not None
    return [out.text[out.text_mask], out.image[out.image_mask], out.pooled]


@pytest.mark.parametrize("style", ["uniter", "vilt_order", "vilbert", "lxmert"])
def test_packed_equals_padded_with_gradients(tiny_cfg: ModelConfig, style: str) -> None:
    torch.manual_seed(0)
    model = build_model(_cfgs(tiny_cfg)[style])
    batch = _uneven()
    grads = []
    for forward in (model, _reference(model)):
        model.zero_grad()
        out = forward(batch)
        real = _real(out)
        g = torch.Generator().manual_seed(1)
        loss = sum((t * torch.randn(t.shape, generator=g)).sum() for t in real)
        loss.backward()
        grads.append(({n: p.grad.clone() for n, p in model.named_parameters()
                       if p.grad is not None}, [t.detach() for t in real]))
    (packed_grads, packed_out), (padded_grads, padded_out) = grads
    for a, b in zip(packed_out, padded_out, strict=True):
        assert (a - b).abs().max().item() <= TOL
    assert packed_grads.keys() == padded_grads.keys()
    worst = {n: (packed_grads[n] - padded_grads[n]).abs().max().item() for n in padded_grads}
    assert max(worst.values()) <= TOL, max(worst.items(), key=lambda kv: kv[1])


@pytest.mark.parametrize("style", ["uniter", "vilbert"])
def test_a_sequence_does_not_depend_on_its_batch(tiny_cfg: ModelConfig, style: str) -> None:
    torch.manual_seed(0)
    model = build_model(_cfgs(tiny_cfg)[style]).eval()
    batch = _uneven(seed=2)
    assert batch.region_mask is not None
    with torch.no_grad():
        together = model(batch)
        for i in range(batch.size):
            n, r = int(batch.text_mask[i].sum()), int(batch.region_mask[i].sum())
            alone = model(_row(batch, i, n, r))
            assert (alone.text[0] - together.text[i, :n]).abs().max().item() <= TOL
            assert (alone.image[0] - together.image[i, :r]).abs().max().item() <= TOL
            assert (alone.pooled[0] - together.pooled[i]).abs().max().item() <= TOL


def _row(batch: Batch, i: int, n: int, r: int) -> Batch:
    """Row ``i`` alone, cut to its own ``n`` tokens and ``r`` regions (no padding)."""
    assert batch.region_feats is not None and batch.region_loc is not None
    assert batch.region_mask is not None
    return Batch(input_ids=batch.input_ids[i:i + 1, :n], text_mask=batch.text_mask[i:i + 1, :n],
                 region_feats=batch.region_feats[i:i + 1, :r],
                 region_loc=batch.region_loc[i:i + 1, :r],
                 region_mask=batch.region_mask[i:i + 1, :r])


def test_padding_comes_out_as_zeros_and_packing_round_trips() -> None:
    mask = torch.tensor([[True, True, False], [True, False, False]])
    p = Packing(mask)
    x = torch.arange(18.0).view(2, 3, 3)
    packed = p.pack(x)  # (3, 3): rows (0, 0), (0, 1), (1, 0)
    assert packed.tolist() == [x[0, 0].tolist(), x[0, 1].tolist(), x[1, 0].tolist()]
    back = p.unpack(packed)
    assert torch.equal(back[mask], x[mask]) and not back[~mask].any()
    encoder = TransformerEncoder(3, 1, 1, 6, dropout=0.0)
    out = encoder(torch.randn(2, 3, 3), mask)
    assert not out[~mask].any() and out[mask].abs().sum() > 0


@pytest.mark.slow  # compiles (inductor, C++), about a minute on 2 cores
def test_compiled_layers_equal_eager_across_batch_shapes() -> None:
    """``train.compile``: each layer compiled once with dynamic shapes serves batches of
    other sizes and lengths, packed, with the eager layers' outputs and gradients."""
    from vlp.train.runtime import compile_layers

    torch.manual_seed(0)
    eager = TransformerEncoder(16, 1, 2, 32, dropout=0.0)
    compiled = TransformerEncoder(16, 1, 2, 32, dropout=0.0)
    compiled.load_state_dict(eager.state_dict())
    assert compile_layers(compiled) == 1
    for b, n in ((3, 7), (5, 11)):
        x = torch.randn(b, n, 16)
        mask = torch.rand(b, n) > 0.3
        mask[:, 0] = True
        outs = []
        for enc in (eager, compiled):
            enc.zero_grad()
            y = enc(x, mask)
            y[mask].square().sum().backward()
            outs.append((y[mask].detach(), enc.layers[0].mlp.fc1.weight.grad.clone()))
        assert (outs[0][0] - outs[1][0]).abs().max().item() <= TOL
        assert (outs[0][1] - outs[1][1]).abs().max().item() <= 1e-4
