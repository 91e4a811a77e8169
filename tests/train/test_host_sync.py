"""A training step that never waits for the device: nothing read back to the host in the
forward, the losses, the backward or the optimizer step (issue 15).

No accelerator runs here, so the step runs on the CPU as it runs on one: packing and the
objectives' gathers take their accelerator path (``reads_free`` False) and the finite-loss
check defers. A dispatch mode then records every operation that, on an accelerator, makes
the host wait — a tensor read as a number (``_local_scalar_dense``: ``.item()``,
``float()``, ``bool()``), or a shape that depends on the values (``nonzero``, a boolean
index).
"""

from __future__ import annotations

import contextlib
import math
import shutil
from pathlib import Path

import pytest
import torch
from PIL import Image

import vlp.layers.packing as packing
from conftest import HostReads, tiny_pretraining
from vlp.config import load_config
from vlp.data.batch import Batch
from vlp.errors import VlpError
from vlp.layers.embeddings import per_image_positions
from vlp.layers.packing import real_index
from vlp.models.visual import real_grids
from vlp.objectives.loss_model import LossOutput
from vlp.tasks.heads import group_count
from vlp.train.config import PretrainConfig
from vlp.train.pretrain import build_pretraining
from vlp.train.trainer import FiniteLossCheck, Trainer, _Window


def _step_reads(trainer: Trainer) -> HostReads:
    """The host reads of one micro-step and optimizer step (after a first, unrecorded)."""
    trainer.finite = FiniteLossCheck(defer=True)
    trainer.model.train()
    batches = iter(trainer._batches())
    window = _Window()
    for record in (False, True):
        key, batch = next(batches)
        batch = batch.to("cpu")  # the masks are counted here, before the batch would move
        mode = HostReads()
        with mode if record else contextlib.nullcontext():
            trainer._micro_step(key, batch, window, sync=True)
            trainer._optimizer_step(key)
    return mode


@pytest.mark.slow  # builds pre-training runs
@pytest.mark.parametrize("extra", [
    ("objectives.weights={mlm: 1, itm: 1, mrfr: 1, mrc: 1, mrc_kl: 1, wra: 1, itc: 1}",),
    ("model.arch=two_stream", "model.num_cross_layers=1", "model.num_image_layers=1",
     "objectives.weights={mlm: 1, itm: 1, mrfr: 1, mrc: 1, mrc_kl: 1, wra: 1, itc: 1}"),
], ids=["single_stream", "two_stream"])
def test_a_training_step_never_waits_for_the_device(
        dataset: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        extra: tuple[str, ...]) -> None:
    monkeypatch.setattr(packing, "reads_free", lambda t: False)
    trainer = tiny_pretraining(dataset, tmp_path / "run", *extra)
    assert _step_reads(trainer).seen == {}
    # the same step without the batch's host counts reads the masks: the recorder sees it
    monkeypatch.setattr(Batch, "host_counts", lambda self: {})
    reads = _step_reads(tiny_pretraining(dataset, tmp_path / "again", *extra))
    assert reads.callers >= {"layers/packing.py", "objectives/mlm.py", "objectives/mrm.py"}


@pytest.mark.slow  # builds a pre-training run
def test_the_accelerator_path_gives_the_cpu_paths_losses(
        dataset: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    extra = "objectives.weights={mlm: 1, itm: 1, mrfr: 1, mrc_kl: 1, wra: 1, itc: 1}"
    trainer = tiny_pretraining(dataset, tmp_path / "run", extra, "model.dropout=0.0",
                               "objectives.masking=joint", "data.token_budget=400")
    key, batch = next((k, b) for k, b in ((k, b.to("cpu")) for k, b in trainer._batches())
                      if b.counts["region_masked"] > 0 and 0 < b.counts["itm_true"] < b.size)
    assert batch.counts["mlm"] > 0
    trainer.model.eval()
    cpu = trainer.model(batch, key.objectives)
    monkeypatch.setattr(packing, "reads_free", lambda t: False)
    accelerator = trainer.model(batch, key.objectives)
    assert cpu.losses.keys() == accelerator.losses.keys() == {
        "mlm", "itm", "mrfr", "mrc_kl", "wra", "itc"}
    for name in cpu.losses:
        assert torch.equal(cpu.losses[name], accelerator.losses[name]), name
    assert cpu.count == accelerator.count


def test_a_mask_changed_after_it_was_counted_fails_loudly() -> None:
    mask = torch.tensor([[True, True, False], [True, False, False]])
    batch = Batch(input_ids=torch.zeros(2, 3, dtype=torch.long), text_mask=mask).to("cpu")
    assert batch.counts == {"text": 3}
    assert real_index(batch.text_mask, batch.counts["text"]).tolist() == [0, 1, 3]
    batch.text_mask[1, 1] = True  # changed in place after Batch.to
    with pytest.raises(RuntimeError, match="holds 4 real positions, but its batch counted 3"):
        real_index(batch.text_mask, batch.counts["text"])


def test_pairing_a_batch_drops_its_counts() -> None:
    mask = torch.tensor([[True, True, False], [True, False, False]])
    batch = Batch(input_ids=torch.zeros(2, 3, dtype=torch.long), text_mask=mask).to("cpu")
    paired = batch.pair(torch.tensor([1, 1]), torch.tensor([0, 1]))
    assert batch.counts and paired.counts == {}
    assert paired.to("cpu").counts == {"text": 2}


def _out(value: float) -> LossOutput:
    loss = torch.tensor(value)
    return LossOutput(loss=loss, losses={"mlm": torch.tensor(1.0), "mrfr": loss})


def _batch() -> Batch:
    return Batch(input_ids=torch.zeros(2, 3, dtype=torch.long),
                 text_mask=torch.ones(2, 3, dtype=torch.bool), image_ids=torch.tensor([7, 9]))


def test_a_deferred_nan_loss_stops_the_run_at_the_next_read() -> None:
    check = FiniteLossCheck(defer=True)
    check.push(1, _out(math.nan), _batch())  # not read yet: the host does not wait
    with pytest.raises(VlpError) as err:
        check.push(2, _out(0.5), _batch())
    text = str(err.value)
    assert text.startswith("step 1: loss is nan (objective mrfr, images [7, 9])")
    assert "\n" not in text

    check = FiniteLossCheck(defer=True)
    check.push(1, _out(0.5), _batch())
    check.push(2, _out(math.inf), _batch())
    with pytest.raises(VlpError, match="step 2: loss is inf"):
        check.flush()  # a log line, evaluation, checkpoint or the end of the run
    check.flush()  # nothing pending after it


def test_on_the_cpu_a_nan_loss_is_refused_at_once() -> None:
    check = FiniteLossCheck(defer=False)
    with pytest.raises(VlpError, match="step 4: loss is nan"):
        check.push(4, _out(math.nan), _batch())


def test_the_log_window_means_losses_and_accuracies() -> None:
    window = _Window()
    for loss, right in ((1.0, 3), (2.0, 1)):
        window.add(LossOutput(loss=torch.tensor(loss), losses={"mlm": torch.tensor(loss * 2)},
                              correct={"mlm": torch.tensor(right)}, count={"mlm": 4}), 5)
    row = window.flush()
    assert row["loss"] == 1.5 and row["loss/mlm"] == 3.0 and row["mlm_acc"] == 0.5
    assert row["samples_per_s"] > 0
    assert window.flush().keys() == {"samples_per_s"}  # flushed: a new window


def test_the_loader_pins_a_batch_and_counts_its_masks(monkeypatch: pytest.MonkeyPatch) -> None:
    """``DataLoader(pin_memory=True)`` (on CUDA) pins each (key, batch) it hands over;
    pinning needs CUDA, so here it is a copy that says it was made."""
    from torch.utils.data._utils.pin_memory import pin_memory

    pinned: list[torch.Tensor] = []

    def fake_pin(self: torch.Tensor, *args: object, **kwargs: object) -> torch.Tensor:
        pinned.append(self)
        return self.clone()

    monkeypatch.setattr(torch.Tensor, "pin_memory", fake_pin)
    batch = _batch()
    key, out = pin_memory(("key", batch))
    assert key == "key" and isinstance(out, Batch)
    assert len(pinned) == 3 and torch.equal(out.text_mask, batch.text_mask)
    assert batch.counts == {} and out.counts == {"text": 6}
    out.counts.clear()  # a copy's counts are its own
    assert out.to("cpu").counts == {"text": 6} and pin_memory(out).counts == {"text": 6}


def test_grouped_rows_are_checked_from_the_host_count(monkeypatch: pytest.MonkeyPatch) -> None:
    def batch(ids: list[int]) -> Batch:
        n = len(ids)
        return Batch(input_ids=torch.zeros(n, 2, dtype=torch.long),
                     text_mask=torch.ones(n, 2, dtype=torch.bool),
                     group_ids=torch.tensor(ids)).to("cpu")

    whole, split = batch([5, 5, 8, 8, 8, 8]), batch([5, 5, 5, 8, 8, 8])
    assert whole.counts["group_runs"] == 2 and split.counts["group_runs"] == 3
    monkeypatch.setattr(packing, "reads_free", lambda t: False)  # as on an accelerator
    with HostReads() as reads:
        assert group_count(whole, 6, 2) == 3
        with pytest.raises(ValueError, match="each group's 2 rows consecutive"):
            group_count(split, 6, 2)
        with pytest.raises(ValueError, match="has shape \\(6,\\), the head scored 4 rows"):
            group_count(whole, 4, 2)
    assert reads.seen == {}
    split.counts["group_runs"] = 2  # stale: the device path trusts it, the CPU path reads
    monkeypatch.setattr(packing, "reads_free", lambda t: True)
    with pytest.raises(ValueError, match="consecutive"):
        group_count(split, 6, 2)


@pytest.mark.slow  # builds a pre-training run
def test_a_patch_step_with_padded_images_never_waits_for_the_device(
        dataset: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """ViLT on images of two shapes: the collator pads them and keeps their sizes, so the
    real patches' count and each image's grid for its positions are known on the host."""
    world = tmp_path / "world"
    shutil.copytree(dataset, world)
    for i, path in enumerate(sorted((world / "images").glob("*.png"))):
        if i % 2:
            Image.open(path).crop((0, 0, 64, 40)).save(path)  # 64 wide, 40 high
    trainer = tiny_pretraining(
        world, tmp_path / "run", "model.visual=patches", "model.image_size=32",
        "model.patch_size=8", "model.norm_first=true", "data.resize=shorter",
        "data.augment=false", "data.token_budget=400",
        "objectives.weights={mlm: 1, itm: 1, itc: 1}")
    key, batch = next((k, b) for k, b in trainer._batches() if b.pixel_mask is not None)
    assert batch.pixel_sizes is not None and len(set(batch.pixel_sizes)) == 2
    assert batch.pixel_sizes == [(int(m.any(1).sum()), int(m.any(0).sum()))
                                 for m in batch.pixel_mask]
    monkeypatch.setattr(packing, "reads_free", lambda t: False)
    trainer.finite = FiniteLossCheck(defer=True)
    with HostReads() as reads:
        trainer._micro_step(key, batch.to("cpu"), _Window(), sync=True)
        trainer._optimizer_step(key)
    assert reads.seen == {}


def test_image_grids_given_by_the_host_are_checked_on_the_cpu() -> None:
    real = torch.zeros(2, 3, 4, dtype=torch.bool)
    real[0, :3, :2] = True
    real[1, :1, :4] = True
    table = torch.arange(12.0).view(12, 1)

    def positions(h: int, w: int) -> torch.Tensor:
        return table[: h * w]

    read = per_image_positions(real, positions)
    assert torch.equal(per_image_positions(real, positions, [(3, 2), (1, 4)]), read)
    with pytest.raises(RuntimeError, match=r"images of \[\(3, 2\), \(1, 4\)\] real cells"):
        per_image_positions(real, positions, [(3, 2), (2, 4)])
    assert real_grids([(24, 16), (5, 32)], 8, (3, 4)) == [(3, 2), (1, 4)]


@pytest.mark.slow  # builds a pre-training run
def test_a_grid_step_reads_only_in_its_visual_dictionary(
        dataset: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """SOHO on images of two shapes, each shown in four rows: the collator counts the runs
    of repeated images and keeps their sizes, so the backbone's repeated-image check, the
    grid's mask count and positions read nothing; the visual dictionary's update and
    MVM's gather, whose masked tokens the dictionary picks on the device, still read."""
    world = tmp_path / "world"
    shutil.copytree(dataset, world)
    for i, path in enumerate(sorted((world / "images").glob("*.png"))):
        if i % 2:
            Image.open(path).crop((0, 0, 64, 40)).save(path)
    cfg = load_config(PretrainConfig, None, [
        f"data.world={world}", f"train.out={tmp_path / 'run'}", "model.visual=grid",
        "model.image_size=64", "model.vd_size=16", "model.hidden_size=32",
        "model.num_layers=2", "model.num_heads=4", "model.intermediate_size=64",
        "data.max_text_len=16", "model.max_positions=16", "data.token_budget=0",
        "data.batch_size=8", "data.resize=shorter", "data.augment=false",
        "train.precision=fp32", "train.progress=false", "train.tensorboard=false",
        "objectives.weights={mlm: 1.0, mvm: 1.0, itm: 1.0}", "objectives.mix=sum",
        "objectives.sampling=soho"])
    trainer = build_pretraining(cfg)
    key, batch = next((k, b) for k, b in trainer._batches() if b.pixel_mask is not None)
    assert batch.counts["image_runs"] < batch.size  # SOHO's rows repeat their images
    monkeypatch.setattr(packing, "reads_free", lambda t: False)
    trainer.finite = FiniteLossCheck(defer=True)
    with HostReads() as reads:
        trainer._micro_step(key, batch.to("cpu"), _Window(), sync=True)
        trainer._optimizer_step(key)
    # the dictionary's moving-average update and MVM's gather (and its backward, run by
    # the trainer's backward call) read the device; nothing else does
    assert {where.split(":")[0] for _, where in reads.seen} <= {
        "layers/visual_dictionary.py", "objectives/mvm.py", "train/trainer.py"}
