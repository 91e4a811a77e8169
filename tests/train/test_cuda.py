"""What only a GPU shows: a training step that never makes the host wait for the device,
and a NaN loss still caught, one micro-step later. Skipped without CUDA (CI has none);
`benchmarks/gpu_check.sh` runs it on a lent GPU."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from conftest import nan_regions, tiny_pretraining
from vlp.errors import VlpError
from vlp.train.trainer import Trainer, _Window

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")

OBJECTIVES = "objectives.weights={mlm: 1, itm: 1, mrfr: 1, mrc: 1, mrc_kl: 1, wra: 1, itc: 1}"


def _trainer(world: Path, out: Path, *extra: str) -> Trainer:
    trainer: Trainer = tiny_pretraining(world, out, "data.token_budget=200", "train.steps=4",
                                        "train.device=cuda", "train.precision=bf16", *extra)
    return trainer


@pytest.mark.parametrize("extra", [
    (OBJECTIVES,),
    ("model.arch=two_stream", "model.num_cross_layers=1", "model.num_image_layers=1",
     OBJECTIVES),
], ids=["single_stream", "two_stream"])
def test_a_cuda_training_step_never_synchronises(
        dataset: Path, tmp_path: Path, extra: tuple[str, ...]) -> None:
    trainer = _trainer(dataset, tmp_path / "run", *extra)
    assert trainer.finite.defer and trainer.device.type == "cuda"
    trainer.model.train()
    batches, window = iter(trainer._batches()), _Window()  # pinned by the loader
    key, batch = next(batches)
    trainer._micro_step(key, batch, window, sync=True)  # the first step's lazy set-up
    trainer._optimizer_step(key)
    key, batch = next(batches)
    torch.cuda.set_sync_debug_mode("error")
    try:
        trainer._micro_step(key, batch, window, sync=True)
        trainer._optimizer_step(key)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    trainer.finite.flush()  # a log line's read: the losses were finite
    assert all(v == v for v in window.flush().values())  # not NaN


def test_a_nan_loss_on_cuda_is_caught_a_micro_step_later(dataset: Path, tmp_path: Path) -> None:
    trainer = _trainer(dataset, tmp_path / "nan", "train.steps=2", "train.save_every=1")
    batches = trainer.parts.batches
    batches.collator = nan_regions(batches.collator)  # type: ignore[attr-defined]
    with pytest.raises(VlpError) as err:
        trainer.run()
    assert "step 1: loss is nan" in str(err.value) and "\n" not in str(err.value)
    assert not list((tmp_path / "nan" / "checkpoints").glob("step_*"))  # nothing saved
