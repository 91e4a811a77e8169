"""Image-text contrastive objective: unimodal passes, in-batch negatives, shared images."""

from __future__ import annotations

import dataclasses
import math

import torch

from conftest import random_batch
from vlp.data.batch import Batch
from vlp.models import ModelConfig, build_model
from vlp.models.outputs import UnimodalOutput
from vlp.objectives import LossModel, build_objectives
from vlp.objectives.itc import ITC


def _output(text: torch.Tensor, image: torch.Tensor) -> UnimodalOutput:
    b = text.shape[0]
    return UnimodalOutput(text=text[:, None], image=image[:, None],
                          text_mask=torch.ones(b, 1, dtype=torch.bool),
                          image_mask=torch.ones(b, 1, dtype=torch.bool))


def _itc_batch(b: int) -> Batch:
    """A batch as an ITC-only plan makes it: true pairs, no ITM labels."""
    return dataclasses.replace(random_batch(b=b), itm_labels=None)


def _identity_itc(dim: int) -> ITC:
    itc = ITC(dim, dim, embed_dim=dim, temperature=1.0)
    with torch.no_grad():
        for proj in (itc.text_proj, itc.image_proj):
            proj.weight.copy_(torch.eye(dim))
            proj.bias.zero_()
    return itc


def test_loss_by_hand() -> None:
    """Orthonormal, perfectly matched pairs at temperature 1: each row's softmax puts
    e/(e + (B-1)) on the right image."""
    b = 4
    itc = _identity_itc(b)
    eye = torch.eye(b)
    batch = _itc_batch(b)
    out = itc(_output(eye, eye), batch)
    expected = -math.log(math.e / (math.e + b - 1))
    assert abs(float(out.loss.detach()) - expected) < 1e-5
    assert int(out.correct) == b and int(out.count) == b


def test_pairs_sharing_an_image_are_both_positives() -> None:
    b = 4
    itc = _identity_itc(b)
    batch = _itc_batch(b)
    shared, apart = torch.tensor([7, 7, 8, 9]), torch.tensor([6, 7, 8, 9])
    # distinct vectors: sharing an id asks caption 0 to match image 1 too, a higher loss
    eye = torch.eye(b)
    batch.image_ids = shared
    loss_shared = float(itc(_output(eye, eye), batch).loss)
    batch.image_ids = apart
    assert loss_shared > float(itc(_output(eye, eye), batch).loss)
    # two captions of one image, embedded alike: both count as right only when shared
    same = eye.clone()
    same[1] = same[0]
    batch.image_ids = shared
    assert int(itc(_output(same, same), batch).correct) == 4
    batch.image_ids = apart
    assert int(itc(_output(same, same), batch).correct) == 3


def test_mismatched_rows_of_a_shared_batch_are_left_out() -> None:
    """Summed with ITM (``mix: sum``), a batch holds rows whose image was swapped: ITC
    must not take them as true pairs. The loss is the loss of the true rows alone."""
    itc = _identity_itc(4)
    vectors = torch.randn(4, 4, generator=torch.Generator().manual_seed(0))
    mixed = random_batch(b=4)  # ITM labels 1, 0, 1, 0
    mixed.image_ids = torch.tensor([1, 9, 3, 8])
    got = itc(_output(vectors, vectors), mixed)
    alone = dataclasses.replace(_itc_batch(2), image_ids=torch.tensor([1, 3]))
    want = itc(_output(vectors[[0, 2]], vectors[[0, 2]]), alone)
    assert torch.allclose(got.loss, want.loss) and int(got.count) == 2
    mixed.itm_labels = torch.zeros(4, dtype=torch.long)  # nothing true: zero, with a graph
    empty = itc(_output(vectors, vectors), mixed)
    assert float(empty.loss) == 0.0 and empty.loss.requires_grad


def test_unimodal_batches_skip_the_joint_pass(tiny_cfg: ModelConfig) -> None:
    """An ITC-only batch never runs text and image through the transformer together."""
    model = build_model(tiny_cfg)
    pm = LossModel(model, build_objectives(["itc", "itm"], tiny_cfg, model))
    calls: list[int] = []
    model.register_forward_hook(lambda m, i, o: calls.append(1))
    lengths: list[int] = []
    model.encoder.register_forward_hook(lambda m, i, o: lengths.append(i[0].shape[1]))
    batch = random_batch(b=4, length=7, regions=5)
    pm(batch, ["itc"])
    assert calls == [] and sorted(lengths) == [5, 7]  # text alone, regions alone
    pm(batch, ["itm"])
    assert calls == [1] and lengths[-1] == 12
