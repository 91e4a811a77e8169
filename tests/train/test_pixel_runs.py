"""Pixel models through the trainer: a frozen backbone, and runs that resume exactly."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from vlp.config import load_config
from vlp.models.visual import GridInput
from vlp.train.config import PretrainConfig
from vlp.train.pretrain import build_pretraining
from vlp.train.trainer import Trainer

SOHO = ["model.visual=grid", "model.image_size=64", "model.vd_size=16", "model.hidden_size=32",
        "model.num_layers=2", "model.num_heads=4", "model.intermediate_size=64",
        "model.dropout=0.0", "data.max_text_len=16", "model.max_positions=16",
        "data.token_budget=0", "data.batch_size=4", "train.precision=fp32",
        "train.progress=false", "train.tensorboard=false", "train.warmup_steps=1",
        "train.lr=1e-2", "objectives.weights={mlm: 1.0, mvm: 1.0, itm: 1.0}",
        "objectives.mix=sum", "objectives.sampling=soho"]


def _run(dataset: Path, out: Path, *extra: str) -> tuple[GridInput, dict[str, torch.Tensor]]:
    cfg = load_config(PretrainConfig, None, [*SOHO, f"data.world={dataset}",
                                             f"train.out={out}", *extra])
    trainer = build_pretraining(cfg)
    grid = trainer.model.encoder.visual_input
    assert isinstance(grid, GridInput)
    before = {k: v.clone() for k, v in grid.state_dict().items()}
    trainer.run()
    return grid, before


def test_a_frozen_backbone_keeps_its_weights_and_statistics(dataset: Path,
                                                            tmp_path: Path) -> None:
    grid, before = _run(dataset, tmp_path / "frozen", "train.steps=2",
                        "train.freeze_backbone_steps=2", "train.save_every=0")
    after = grid.state_dict()
    backbone = [k for k in before if k.startswith("backbone.")]
    assert any("running_mean" in k for k in backbone)
    assert all(torch.equal(before[k], after[k]) for k in backbone)
    assert not torch.equal(before["proj.weight"], after["proj.weight"])  # the rest trains


def test_the_backbone_trains_after_its_frozen_steps(dataset: Path, tmp_path: Path) -> None:
    grid, before = _run(dataset, tmp_path / "thawed", "train.steps=2",
                        "train.freeze_backbone_steps=1", "train.save_every=0")
    after = grid.state_dict()
    assert not torch.equal(before["backbone.body.0.weight"], after["backbone.body.0.weight"])
    assert all(p.requires_grad for p in grid.backbone.parameters())


@pytest.mark.slow
def test_an_augmented_soho_run_resumes_exactly(dataset: Path, tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """Crops, jitter, flips, SOHO's texts, MVM's draws and the dictionary's first-batch
    entries all come from the batch keys and the checkpoint: a run killed after step 2
    and resumed ends with the weights of one that ran straight through."""
    extra = ["train.steps=4", "train.save_every=2", "train.freeze_backbone_steps=1",
             "data.augment=true", "data.jitter=0.2", "data.flip=swap"]

    def config(out: Path) -> PretrainConfig:
        return load_config(PretrainConfig, None, [*SOHO, f"data.world={dataset}",
                                                  f"train.out={out}", *extra])

    whole = build_pretraining(config(tmp_path / "whole"))
    whole.run()
    original = Trainer._after_step

    def killed_after_two(self: Trainer, *args: object) -> None:
        original(self, *args)  # type: ignore[arg-type]
        if self.step == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(Trainer, "_after_step", killed_after_two)
    with pytest.raises(KeyboardInterrupt):
        build_pretraining(config(tmp_path / "split")).run()
    monkeypatch.setattr(Trainer, "_after_step", original)
    resumed = build_pretraining(config(tmp_path / "split"))
    resumed.run(resume=True)
    a, b = whole.model.state_dict(), resumed.model.state_dict()
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), name


def test_a_grid_model_starts_from_a_hugging_face_resnet(dataset: Path, tmp_path: Path) -> None:
    """``model.backbone: resnet`` with a ``ResNetModel`` directory: the run's CNN has the
    directory's shape and weights (its features equal transformers'), and the grid's
    1×1 conv reads its channels."""
    from transformers import ResNetConfig, ResNetModel

    torch.manual_seed(0)
    ref = ResNetModel(ResNetConfig(embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1],
                                   layer_type="basic")).eval()
    ref.save_pretrained(tmp_path / "resnet")
    resnet = ["model.backbone=resnet", f"model.backbone_weights={tmp_path / 'resnet'}"]
    cfg = load_config(PretrainConfig, None, [
        *SOHO, *resnet, f"data.world={dataset}", f"train.out={tmp_path / 'run'}",
        "train.steps=0"])
    grid = build_pretraining(cfg).model.encoder.visual_input
    assert isinstance(grid, GridInput) and grid.proj.in_channels == 16
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        want = ref(pixel_values=x).last_hidden_state
        got = grid.backbone.eval()(x)
    assert (got - want).abs().max() <= 1e-4
    # a run trained on it starts another (its checkpoint has the ResNet's shape)
    cfg = load_config(PretrainConfig, None, [
        *SOHO, *resnet, f"data.world={dataset}", f"train.out={tmp_path / 'trained'}",
        "train.steps=1", "train.save_every=0"])
    trained = build_pretraining(cfg)
    trained.run()
    cfg = load_config(PretrainConfig, None, [
        f"data.world={dataset}", f"train.out={tmp_path / 'next'}", "train.steps=0",
        f"train.init={tmp_path / 'trained'}", "data.max_text_len=16", *SOHO[10:]])
    again = build_pretraining(cfg).model.encoder.visual_input
    assert isinstance(again, GridInput)
    for key, value in trained.model.encoder.visual_input.backbone.state_dict().items():
        assert torch.equal(again.backbone.state_dict()[key], value), key


@pytest.mark.parametrize("workers", [0, 1])
def test_a_broken_image_stops_the_run_with_one_line(dataset: Path, tmp_path: Path,
                                                    workers: int,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    """Found in a loader worker or in the training process, a truncated image is one
    ``error:`` line naming the file and the record that wanted it."""
    import shutil

    from vlp.train.cli import main

    world = tmp_path / "world"
    shutil.copytree(dataset, world)
    broken = world / "images" / "img_2.png"
    broken.write_bytes(broken.read_bytes()[:60])
    code = main(["pretrain", *SOHO, f"data.world={world}", f"train.out={tmp_path / 'run'}",
                 "train.steps=2", f"data.num_workers={workers}", "data.batch_size=14"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(err) == 1 and err[0].startswith("error: ") and "img_2.png" in err[0], err
    assert "wanted by captions.json images[1]" in err[0] and "Traceback" not in err[0]
