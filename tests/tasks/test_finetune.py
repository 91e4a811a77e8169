"""Downstream tasks end to end on a tiny world: heads over-fit, ``vlp finetune`` and
``vlp evaluate`` write official-format predictions whose scores they reproduce."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import overfit_losses, random_regions
from vlp.config import load_config
from vlp.data.batch import Batch
from vlp.data.formats.karpathy import read_karpathy
from vlp.data.formats.snli_ve import read_snli_ve
from vlp.data.formats.vqa import read_vqa
from vlp.data.tokenizer import Tokenizer
from vlp.errors import VlpError
from vlp.train.cli import main
from vlp.train.config import FinetuneConfig
from vlp.train.finetune import build_finetuning
from vlp.world.make import make_world

pytestmark = pytest.mark.slow  # fine-tuning runs

TINY = ["model.hidden_size=32", "model.num_layers=2", "model.num_heads=2",
        "model.intermediate_size=64", "model.dropout=0.0", "train.precision=fp32",
        "train.tensorboard=false", "train.progress=false", "train.warmup_steps=1",
        "data.token_budget=0", "data.batch_size=16", "train.lr=1e-3", "train.log_every=2"]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 50-image world with random region features (the detector is tested elsewhere)
    and a vocabulary over its captions, questions and hypotheses."""
    root = make_world(tmp_path_factory.mktemp("w") / "world", 50, seed=3)
    random_regions(root, 50)
    ann = root / "annotations"
    texts = [c for im in read_karpathy(ann / "dataset_world.json") for c in im.captions]
    texts += [q.question for q in read_vqa(ann / "vqa_train_questions.json")]
    texts += [r.hypothesis for r in read_snli_ve(ann / "snli_ve_train.jsonl")]
    Tokenizer.train(texts, root / "vocab.txt", vocab_size=200, min_frequency=1)
    return root


def config(world: Path, out: Path, task: str, *extra: str) -> FinetuneConfig:
    return load_config(FinetuneConfig, None, [f"task.name={task}", f"data.world={world}",
                                              f"train.out={out}", *TINY, *extra])


@pytest.mark.parametrize("task", ["vqa", "ve", "retrieval"])
def test_head_overfits_one_batch(world: Path, tmp_path: Path, task: str) -> None:
    torch.manual_seed(0)
    run = build_finetuning(config(world, tmp_path / task, task, "train.steps=1"))
    data = run.task.train
    batch = data.collate([data[i] for i in range(12)], seed=1)
    losses = overfit_losses(run.trainer.model, batch, [run.task.head_name], 80, lr=5e-3)
    assert losses[-1] < 0.3 * losses[0], (task, losses[0], losses[-1])


def test_vqa_targets_are_the_official_soft_scores(world: Path, tmp_path: Path) -> None:
    run = build_finetuning(config(world, tmp_path / "v", "vqa", "train.steps=1"))
    data = run.task.train
    batch = data.collate([data[0]])
    record = data.records[0]
    assert batch.targets is not None
    best = data.labels[int(batch.targets[0].argmax())]
    assert best == record.multiple_choice_answer
    assert float(batch.targets[0].max()) == 1.0
    # the validation split answers with the training split's vocabulary
    assert run.task.held_out.labels == data.labels


def test_finetune_and_evaluate_commands(world: Path, tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "vqa"
    args = [f"data.world={world}", f"train.out={run}", "train.steps=4", "train.save_every=2",
            *TINY]
    assert main(["finetune", "vqa", *args]) == 0
    results = json.loads((run / "predictions_val.json").read_text())
    assert {tuple(sorted(r)) for r in results} == {("answer", "question_id")}
    questions = read_vqa(world / "annotations" / "vqa_val_questions.json")
    assert sorted(r["question_id"] for r in results) == sorted(q.question_id for q in questions)
    written = json.loads((run / "metrics_val.json").read_text())
    assert 0.0 <= written["vqa_acc"] <= 100.0 and (run / "curves.png").is_file()

    # a user's predictions file, scored without a model
    capsys.readouterr()
    assert main(["evaluate", "vqa", "--predictions", str(run / "predictions_val.json"),
                 f"data.world={world}", f"train.out={tmp_path / 'scored'}"]) == 0
    assert json.loads(capsys.readouterr().out) == written
    # the fine-tuned checkpoint, re-predicted from the run's own config
    assert main(["evaluate", "vqa", "--checkpoint", str(run),
                 "--out", str(tmp_path / "again")]) == 0
    assert json.loads((tmp_path / "again" / "metrics_val.json").read_text()) == written


def test_zero_shot_retrieval_from_a_pretraining_run(world: Path, tmp_path: Path) -> None:
    pre = tmp_path / "pre"
    assert main(["pretrain", f"data.world={world}", f"train.out={pre}", "train.steps=2",
                 "data.eval_pairs=20", "objectives.weights={itm: 1.0, mlm: 1.0}",
                 *TINY]) == 0
    out = tmp_path / "zs"
    assert main(["evaluate", "retrieval", "--checkpoint", str(pre), "--out", str(out),
                 "task.eval_limit=4"]) == 0
    scores = json.loads((out / "predictions_val.json").read_text())
    assert np.asarray(scores["scores"]).shape == (4, 20)  # 4 images × their 5 captions
    metrics = json.loads((out / "metrics_val.json").read_text())
    assert {"retrieval/t2i_r1", "retrieval/i2t_r1", "retrieval/r_mean"} <= set(metrics)


def test_dual_encoder_retrieval_ranks_by_itc_embeddings(world: Path, tmp_path: Path) -> None:
    """task.options.rank=itc fine-tunes the contrastive head and ranks every text against every
    image from embeddings computed once each (a text's top image is its own at R@1 once
    the head over-fits a pool this small)."""
    cfg = config(world, tmp_path / "itc", "retrieval", "task.options.rank=itc", "train.steps=30",
                 "task.eval_limit=4", "data.train_splits=[val]", "task.train_limit=4")
    run = build_finetuning(cfg)
    assert run.task.head_name == "itc" and run.task.train.neg_prob == 0.0  # type: ignore[attr-defined]
    run.trainer.run()
    predictions = run.predict(run.task.held_out)
    assert np.asarray(predictions["scores"]).shape == (4, 20)
    metrics = run.task.held_out.score(predictions)
    assert metrics["retrieval/t2i_r1"] > 50.0, metrics  # chance: 25


@pytest.mark.parametrize("rank", ["itc", "itm"])
def test_retrieval_scores_in_fp32_from_a_bf16_model(world: Path, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch,
                                                   rank: str) -> None:
    """A bf16 run (here even where this CPU would fall back to fp32) scores retrieval as
    float32: numpy has no bf16, and bf16 scores would tie near neighbours."""
    from vlp.train import runtime

    monkeypatch.setattr(runtime, "native_bf16", lambda device: True)
    cfg = config(world, tmp_path / rank, "retrieval", f"task.options.rank={rank}",
                 "train.steps=1", "train.precision=bf16", "task.eval_limit=3")
    run = build_finetuning(cfg)
    assert run.trainer.env.precision == "bf16"
    predictions = run.predict(run.task.held_out)
    scores = np.asarray(predictions["scores"])
    assert scores.shape == (3, 15)
    assert len(np.unique(scores)) == scores.size  # no two candidates tie (bf16 logits did)
    assert "retrieval/r_mean" in run.task.held_out.score(predictions)


def test_unknown_task_and_file_role_are_one_line(world: Path, tmp_path: Path) -> None:
    with pytest.raises(VlpError, match="task.name: unknown task 'vqa2'"):
        build_finetuning(config(world, tmp_path / "a", "vqa2"))
    with pytest.raises(VlpError, match=r"task.files.jsonl: unknown file role for task vqa"):
        build_finetuning(config(world, tmp_path / "b", "vqa", "task.files={jsonl: x}"))


def test_hard_negatives_take_the_highest_scored_foreign_image(world: Path,
                                                             tmp_path: Path) -> None:
    """UNITER's hard negatives: each swapped row gets, of the candidate images that are
    not its own, the one the scorer rates highest; the other rows stay true pairs."""
    run = build_finetuning(config(world, tmp_path / "hn", "retrieval",
                               "task.options.hard_negatives=50", "train.steps=1"))
    data = run.task.train
    rows = [data[5 * j + t] for j in range(10) for t in range(2)]  # 10 images, 2 captions each
    batch = data.collate(rows, seed=1)
    assert batch.itm_labels is not None and bool((batch.itm_labels == 1).all())
    favourite = int(batch.image_ids[0])  # type: ignore[index]

    def score(pairs: Batch) -> torch.Tensor:  # the favourite image is the best match
        assert pairs.image_ids is not None and pairs.region_feats is not None
        hit = (pairs.image_ids == favourite).float()
        return torch.stack([torch.zeros_like(hit), hit + 0.01 * pairs.region_feats[:, 0, 0]], 1)

    mined = data.with_model(batch, score, torch.Generator().manual_seed(0))
    assert mined.image_ids is not None and mined.itm_labels is not None
    negative = mined.itm_labels == 0
    assert 0 < int(negative.sum()) < batch.size
    assert torch.equal(mined.input_ids, batch.input_ids)  # texts stay where they were
    own = mined.image_ids == batch.image_ids
    assert bool(own[~negative].all()) and not bool(own[negative].any())
    # K ≥ the 18 foreign rows, so all are candidates: a negative gets the favourite
    # unless it is its own image; then the best-scored of the rest
    takes = negative & (batch.image_ids != favourite)
    assert bool((mined.image_ids[takes] == favourite).all())
    # region tensors travel with the image id
    first = {int(i): r for i, r in zip(batch.image_ids, batch.region_feats, strict=True)}
    for image_id, feats in zip(mined.image_ids, mined.region_feats, strict=True):
        assert torch.equal(feats, first[int(image_id)])


def test_retrieval_fine_tunes_with_hard_negatives(world: Path, tmp_path: Path) -> None:
    cfg = config(world, tmp_path / "hn_run", "retrieval", "task.options.hard_negatives=4",
                 "train.steps=4", "task.eval_limit=5")
    run = build_finetuning(cfg)
    run.trainer.run()
    assert run.trainer.step == 4
    assert "retrieval/t2i_r1" in run.write_results()


def test_predictions_are_scored_from_annotation_files_alone(
        world: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """VQA, VE and retrieval predictions scored in a directory that holds only them and the
    official annotation files: no vocabulary, features, images, world or training split."""
    import shutil

    ann = world / "annotations"
    cases = {  # task: (annotation files by role, the run's predictions file)
        "vqa": {"questions": ann / "vqa_val_questions.json",
                "annotations": ann / "vqa_val_annotations.json"},
        "ve": {"jsonl": ann / "snli_ve_dev.jsonl"},
        "retrieval": {"captions": ann / "dataset_world.json"},
    }
    bare = tmp_path / "bare"
    bare.mkdir()
    for task, files in cases.items():
        run = tmp_path / task
        extra = ["task.eval_limit=6"] if task == "retrieval" else []
        assert main(["finetune", task, f"data.world={world}", f"train.out={run}",
                     "train.steps=2", *TINY, *extra]) == 0
        written = json.loads((run / "metrics_val.json").read_text())
        for path in files.values():
            shutil.copy(path, bare / path.name)
        shutil.copy(run / "predictions_val.json", bare / f"{task}_predictions.json")
        monkeypatch.chdir(bare)
        capsys.readouterr()
        assert main(["evaluate", task, "--predictions", f"{task}_predictions.json", *extra,
                     *(f"task.files.{role}={path.name}" for role, path in files.items())]) == 0
        assert json.loads(capsys.readouterr().out) == written, task
        monkeypatch.chdir(tmp_path)
        # and written as JSON where asked
        assert main(["evaluate", task, "--predictions", str(bare / f"{task}_predictions.json"),
                     *extra, "--out", str(tmp_path / f"{task}_scores"),
                     *(f"task.files.{role}={bare / path.name}"
                       for role, path in files.items())]) == 0
        assert json.loads((tmp_path / f"{task}_scores" / "metrics_val.json").read_text()) \
            == written
    assert sorted(p.name for p in bare.iterdir()) == sorted(
        [*(p.name for f in cases.values() for p in f.values()),
         *(f"{t}_predictions.json" for t in cases)])  # nothing else was there, or made
