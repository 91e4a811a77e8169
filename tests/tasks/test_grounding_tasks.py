"""NLVR2, RefCOCO and VCR on a tiny world: grouped rows stay together, heads over-fit,
``vlp finetune`` and ``vlp evaluate`` write official-format predictions whose scores they
reproduce, IoU targets and Q→AR on hand-made cases."""

from __future__ import annotations

import contextlib
import json
import re
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

import vlp.layers.packing as packing
from conftest import HostReads, nan_regions, overfit_losses
from vlp.config import load_config
from vlp.data.batch import Batch
from vlp.data.features import RegionStore, RegionStoreWriter
from vlp.data.formats.nlvr2 import read_nlvr2
from vlp.data.formats.refcoco import read_refcoco
from vlp.data.formats.vcr import read_vcr, vcr_text
from vlp.data.tokenizer import SPECIAL_TOKENS, Tokenizer
from vlp.data.visuals import RegionSource
from vlp.errors import VlpError
from vlp.eval.boxes import box_iou, xywh_to_xyxy
from vlp.models.outputs import VLOutput
from vlp.tasks.groups import join_segments
from vlp.tasks.heads import ChoiceScorer, PairGroupClassifier, RegionScorer
from vlp.tasks.nlvr2 import NLVR2Data
from vlp.tasks.refcoco import region_targets
from vlp.tasks.vcr import (
    VCRData,
    vcr_joint_accuracy,
    vcr_joint_accuracy_of_files,
    write_vcr_predictions,
)
from vlp.train.cli import main
from vlp.train.config import FinetuneConfig
from vlp.train.finetune import build_finetuning
from vlp.train.trainer import FiniteLossCheck, _Window
from vlp.world.make import make_world

pytestmark = pytest.mark.slow  # fine-tuning runs

TINY = ["model.hidden_size=32", "model.num_layers=2", "model.num_heads=2",
        "model.intermediate_size=64", "model.dropout=0.0", "train.precision=fp32",
        "train.tensorboard=false", "train.progress=false", "train.warmup_steps=1",
        "data.token_budget=0", "data.batch_size=16", "train.lr=1e-3", "train.log_every=2"]


def _scene_boxes(instances: Path) -> dict[int, list[list[float]]]:
    """Image id → its annotated objects' boxes, xyxy."""
    boxes: dict[int, list[list[float]]] = defaultdict(list)
    for ann in json.loads(instances.read_text())["annotations"]:
        boxes[ann["image_id"]].append(xywh_to_xyxy(ann["bbox"]).tolist())
    return boxes


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 50-image world with random region features; each image's regions are a few
    random boxes plus its objects' annotated boxes, shuffled, so RefCOCO targets exist."""
    root = make_world(tmp_path_factory.mktemp("w") / "world", 50, seed=3)
    ann = root / "annotations"
    objects = _scene_boxes(ann / "instances.json")
    rng = np.random.default_rng(0)
    with RegionStoreWriter(root / "features", 12, 7, dtype="float32") as store:
        for image_id in range(1, 51):
            n = int(rng.integers(3, 6))
            xy = rng.uniform(0, 40, (n, 2))
            boxes = np.concatenate([np.concatenate([xy, xy + rng.uniform(5, 20, (n, 2))], 1),
                                    np.asarray(objects[image_id]).reshape(-1, 4)])
            boxes = boxes[rng.permutation(len(boxes))]
            m = len(boxes)
            store.add(image_id, 64, 64, rng.normal(size=(m, 12)).astype(np.float32),
                      boxes.astype(np.float32), rng.dirichlet(np.ones(7), m).astype(np.float32))
    texts = [r.sentence for s in ("train", "dev", "test")
             for r in read_nlvr2(ann / f"nlvr2_{s}.json")]
    texts += [s for r in read_refcoco(ann / "refs(world).p", ann / "instances.json")
              for s in r.sentences]
    for r in (r for s in ("train", "val", "test") for r in read_vcr(ann / f"vcr_{s}.jsonl")):
        texts += [vcr_text(t, r.objects) for t in (r.question, *r.answers, *r.rationales)]
    # a whole-word vocabulary: WordPiece training breaks ties differently from one process
    # to the next, and the over-fitting tests should see the same tokens every run
    words = sorted({w for t in texts for w in re.findall(r"\w+|[^\w\s]", t.lower())})
    (root / "vocab.txt").write_text("\n".join([*SPECIAL_TOKENS, *words]) + "\n")
    return root


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    """One intra-op thread: these models are tiny, and on a busy two-core machine two
    threads contend so hard that a step takes 100× longer."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def config(world: Path, out: Path, task: str, *extra: str) -> FinetuneConfig:
    return load_config(FinetuneConfig, None, [f"task.name={task}", f"data.world={world}",
                                              f"train.out={out}", *TINY, *extra])


def _parts(world: Path) -> tuple[Tokenizer, RegionSource]:
    return (Tokenizer.from_vocab(world / "vocab.txt"),
            RegionSource(RegionStore.open(world / "features")))


# --------------------------------------------------------------- no wait for the device
@pytest.mark.parametrize("task", ["vqa", "ve", "nlvr2", "refcoco", "vcr", "retrieval"])
def test_a_fine_tuning_step_never_waits_for_the_device(
        world: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, task: str) -> None:
    """The accelerator path, run on the CPU (tests/train/test_host_sync.py): a training
    step of every task reads nothing back from the device."""
    monkeypatch.setattr(packing, "reads_free", lambda t: False)
    trainer = build_finetuning(config(world, tmp_path / task, task, "train.steps=2",
                                      "data.batch_size=4")).trainer
    trainer.finite = FiniteLossCheck(defer=True)
    trainer.model.train()
    batches, window = iter(trainer._batches()), _Window()
    for record in (False, True):  # the second step, after the first's lazy set-up
        key, batch = next(batches)
        batch = batch.to("cpu")  # counted here, as before a batch moves to the device
        reads = HostReads()
        with reads if record else contextlib.nullcontext():
            trainer._micro_step(key, batch, window, sync=True)
            trainer._optimizer_step(key)
    assert reads.seen == {}


# ------------------------------------------------------------------------- heads over-fit
@pytest.mark.parametrize(("task", "extra"), [("nlvr2", ()), ("refcoco", ()), ("vcr", ()),
                                             ("vcr", ("task.options.mode=qa2r",))])
def test_head_overfits_one_batch(world: Path, tmp_path: Path, task: str,
                                 extra: tuple[str, ...]) -> None:
    torch.manual_seed(0)
    run = build_finetuning(config(world, tmp_path / task, task, "train.steps=1", *extra))
    data = run.task.train
    if isinstance(data, VCRData):
        # six records (24 rows) whose four options read differently: vcr_text names a
        # non-person by its class, so "[1] is." and "[2] is." about two diamonds are one
        # text, which no head can tell apart
        picked = [i for i, g in enumerate(data.groups)
                  if len({tuple(r.token_ids) for r in g}) == 4][:6]
    else:
        # spread over the split: NLVR2's first twelve are three sentences each over the
        # same four image pairs, which a model from scratch takes far longer to tell apart
        picked = np.linspace(0, len(data) - 1, 12).astype(int).tolist()
    batch = data.collate([data[i] for i in picked], seed=1)
    assert batch.size == (24 if isinstance(data, NLVR2Data | VCRData) else 12)
    losses = overfit_losses(run.trainer.model, batch, [run.task.head_name], 80, lr=5e-3)
    assert losses[-1] < 0.3 * losses[0], (task, losses[0], losses[-1])


# ------------------------------------------------------------------------- grouped rows
def test_nlvr2_groups_stay_together_and_in_order(world: Path) -> None:
    tokenizer, regions = _parts(world)
    data = NLVR2Data({"json": world / "annotations" / "nlvr2_train.json"}, "train",
                     tokenizer, regions)
    assert len(data) == len(data.records) == len(data.lengths())  # samplers see records
    picked = [5, 0, 3]
    batch = data.collate([data[i] for i in picked], seed=7)
    assert batch.size == 6
    assert batch.group_ids is not None and batch.image_ids is not None
    assert batch.group_ids.tolist() == [5, 5, 0, 0, 3, 3]
    records = [data.records[i] for i in picked]
    images = [int(n.split("_")[-1].split(".")[0]) for r in records
              for n in (r.left_image, r.right_image)]
    assert batch.image_ids.tolist() == images  # left, then right, of each record
    assert torch.equal(batch.input_ids[0::2], batch.input_ids[1::2])  # one statement
    assert batch.targets is not None
    assert batch.targets.tolist() == [int(r.label) for r in records]  # one label per group
    # a record costs both its rows in the token budget
    counts = regions.store.region_counts()
    row_regions = [counts[i] for i in images[:2]]
    assert data.lengths()[5].tolist() == [2 * len(data[5].token_ids), 2 * max(row_regions)]


def test_grouped_head_refuses_split_groups() -> None:
    head = PairGroupClassifier(8)
    out = VLOutput(text=torch.zeros(4, 1, 8), image=torch.zeros(4, 1, 8),
                   text_mask=torch.ones(4, 1, dtype=torch.bool),
                   image_mask=torch.ones(4, 1, dtype=torch.bool), pooled=torch.randn(4, 8))
    batch = Batch(input_ids=torch.zeros(4, 1, dtype=torch.long),
                  text_mask=torch.ones(4, 1, dtype=torch.bool),
                  group_ids=torch.tensor([0, 1, 0, 1]))
    with pytest.raises(ValueError, match="consecutive"):
        head.scores(out, batch)
    batch.group_ids = torch.tensor([0, 0, 1, 1])
    assert head.scores(out, batch).shape == (2, 2)
    assert ChoiceScorer(8).scores(out, Batch(batch.input_ids, batch.text_mask,
                                             group_ids=torch.zeros(4, dtype=torch.long))
                                  ).shape == (1, 4)


@pytest.mark.parametrize("mode", ["q2a", "qa2r"])
def test_vcr_rows_pair_the_question_with_each_choice(world: Path, mode: str) -> None:
    tokenizer, store = _parts(world)
    data = VCRData({"jsonl": world / "annotations" / "vcr_train.jsonl"}, "train", tokenizer,
                   store, mode=mode)
    batch = data.collate([data[2], data[0]])
    assert batch.group_ids is not None and batch.group_ids.tolist() == [2] * 4 + [0] * 4
    record = data.records[2]
    label = record.answer_label if mode == "q2a" else record.rationale_label
    assert batch.targets is not None and batch.targets.tolist()[0] == label
    choices = record.answers if mode == "q2a" else record.rationales
    for k, choice in enumerate(choices):
        text = tokenizer.decode(batch.input_ids[k].tolist())
        expected = [vcr_text(record.question, record.objects)]
        if mode == "qa2r":
            assert record.answer_label is not None
            expected.append(vcr_text(record.answers[record.answer_label], record.objects))
        expected.append(vcr_text(choice, record.objects))
        assert text == tokenizer.decode(tokenizer.encode([" ".join(expected)], 100)[0])
        assert int((batch.input_ids[k] == tokenizer.sep_id).sum()) == len(expected)


def test_join_segments_cuts_the_longest_segment_first() -> None:
    cls, sep = 101, 102
    q, a = [cls, 1, 2, 3, 4, 5, 6, sep], [cls, 7, 8, sep]
    assert join_segments([q, a], 100) == [cls, 1, 2, 3, 4, 5, 6, sep, 7, 8, sep]
    assert join_segments([q, a], 8) == [cls, 1, 2, 3, sep, 7, 8, sep]
    assert join_segments([q, a], 6) == [cls, 1, 2, sep, 7, sep]


def test_vcr_rejects_an_unknown_mode(world: Path) -> None:
    tokenizer, store = _parts(world)
    with pytest.raises(VlpError, match="task.options.mode"):
        VCRData({"jsonl": world / "annotations" / "vcr_train.jsonl"}, "train", tokenizer,
                store, mode="a2q")


# ------------------------------------------------------------------------- RefCOCO targets
def test_iou_targets_on_a_hand_made_case() -> None:
    gt = torch.tensor([[0.0, 0.0, 10.0, 10.0], [50.0, 50.0, 60.0, 60.0]])
    boxes = torch.tensor([
        [[0, 0, 10, 10],    # the object itself: IoU 1
         [0, 0, 10, 5],     # half of it: IoU 0.5 exactly, counts
         [5, 0, 15, 10],    # shifted by half: IoU 1/3
         [0, 0, 10, 10]],   # padding, though it matches
        [[0, 0, 10, 10], [40, 40, 55, 55], [0, 0, 0, 0], [0, 0, 0, 0]],  # nothing at ≥ 0.5
    ], dtype=torch.float32)
    mask = torch.tensor([[True, True, True, False], [True, True, False, False]])
    targets = region_targets(boxes, mask, gt)
    assert targets.tolist() == [[1, 1, 0, 0], [0, 0, 0, 0]]

    # the loss: soft cross-entropy over real regions; the row without a target is left out
    head = RegionScorer(8)
    out = VLOutput(text=torch.zeros(2, 1, 8), image=torch.randn(2, 4, 8),
                   text_mask=torch.ones(2, 1, dtype=torch.bool), image_mask=mask,
                   pooled=torch.zeros(2, 8))
    batch = Batch(input_ids=torch.zeros(2, 1, dtype=torch.long),
                  text_mask=torch.ones(2, 1, dtype=torch.bool), targets=targets)
    result = head(out, batch)
    logits = head.scores(out, batch)
    assert torch.isinf(logits[0, 3]) and torch.isinf(logits[1, 2:]).all()
    log_p = torch.log_softmax(logits[0, :3], 0)
    assert torch.allclose(result.loss, -(log_p[0] + log_p[1]) / 2)
    assert result.count is not None and int(result.count) == 2  # counted, though unlearnable
    first = VLOutput(out.text[:1], out.image[:1], out.text_mask[:1], mask[:1], out.pooled[:1])
    alone = head(first, Batch(batch.input_ids[:1], batch.text_mask[:1], targets=targets[:1]))
    assert torch.allclose(result.loss, alone.loss)


def test_refcoco_rows_and_targets_come_from_the_split(world: Path, tmp_path: Path) -> None:
    run = build_finetuning(config(world, tmp_path / "r", "refcoco", "train.steps=1",
                               "data.eval_split=testA"))
    data = run.task.held_out
    refs = read_refcoco(world / "annotations" / "refs(world).p",
                        world / "annotations" / "instances.json", split="testA")
    assert data.keys == [(r.ref_id, s) for r in refs for s in r.sent_ids]  # type: ignore[attr-defined]
    batch = data.collate(data.examples[:4])
    targets, boxes, mask = batch.targets, batch.region_boxes, batch.region_mask
    assert targets is not None and boxes is not None and mask is not None
    for row, example in enumerate(data.examples[:4]):
        iou = box_iou(torch.tensor([example.target]), boxes[row])[0]
        assert targets[row].tolist() == ((iou >= 0.5) & mask[row]).float().tolist()
        assert targets[row].sum() >= 1  # the fixture's regions include every object


# ------------------------------------------------------------------------- commands
def _finetune_and_score(world: Path, tmp_path: Path, task: str, capsys: pytest.CaptureFixture[str],
                        *extra: str) -> tuple[Path, dict[str, float]]:
    run = tmp_path / task
    assert main(["finetune", task, f"data.world={world}", f"train.out={run}", "train.steps=3",
                 *TINY, *extra]) == 0
    written = json.loads((run / "metrics_val.json").read_text())
    predictions = run / ("predictions_val.csv" if task == "nlvr2" else "predictions_val.json")
    capsys.readouterr()
    assert main(["evaluate", task, "--predictions", str(predictions),
                 f"data.world={world}", f"train.out={tmp_path / 'scored'}", *extra]) == 0
    scored = json.loads(capsys.readouterr().out)
    # scoring reads the annotations alone: RefCOCO's ceiling needs the region store
    assert scored == {k: v for k, v in written.items() if k != "refcoco_ceiling"}
    return predictions, written


def test_nlvr2_commands_write_the_official_csv(world: Path, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    # token-budget batches of records (each costing both its rows)
    path, metrics = _finetune_and_score(world, tmp_path, "nlvr2", capsys,
                                        "data.token_budget=300")
    lines = path.read_text().splitlines()
    records = read_nlvr2(world / "annotations" / "nlvr2_dev.json")
    assert [line.split(",")[0] for line in lines] == [r.identifier for r in records]
    assert {line.split(",")[1] for line in lines} <= {"True", "False"}
    assert set(metrics) == {"nlvr2_acc", "nlvr2_consistency"}
    assert all(0.0 <= v <= 100.0 for v in metrics.values())  # percent


def test_refcoco_commands_write_boxes(world: Path, tmp_path: Path,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    path, metrics = _finetune_and_score(world, tmp_path, "refcoco", capsys)
    rows = json.loads(path.read_text())
    refs = read_refcoco(world / "annotations" / "refs(world).p",
                        world / "annotations" / "instances.json", split="val")
    assert [(r["ref_id"], r["sent_id"]) for r in rows] == \
        [(r.ref_id, s) for r in refs for s in r.sent_ids]
    store = RegionStore.open(world / "features")
    for row, ref in zip(rows, (r for r in refs for _ in r.sent_ids), strict=True):
        assert set(row) == {"ref_id", "sent_id", "box"}
        regions = store.get(ref.image_id).boxes  # the box is one of the image's regions
        assert np.abs(regions - np.asarray(xywh_to_xyxy(row["box"]))).sum(1).min() < 1e-4
    assert metrics["refcoco_ceiling"] == 100.0 and 0.0 <= metrics["refcoco_acc"] <= 100.0


def test_vcr_commands_and_q2ar_from_both_files(world: Path, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    q2a, metrics = _finetune_and_score(world, tmp_path / "a", "vcr", capsys)
    qa2r, _ = _finetune_and_score(world, tmp_path / "r", "vcr", capsys, "task.options.mode=qa2r")
    doc = json.loads(q2a.read_text())
    records = read_vcr(world / "annotations" / "vcr_val.jsonl")
    assert doc["mode"] == "q2a" and set(metrics) == {"vcr_q2a"}
    assert [p["annot_id"] for p in doc["predictions"]] == [r.annot_id for r in records]
    for p in doc["predictions"]:
        assert len(p["scores"]) == 4 and p["pick"] == int(np.argmax(p["scores"]))
    joint = vcr_joint_accuracy_of_files(world / "annotations" / "vcr_val.jsonl", q2a, qa2r)
    assert joint["vcr_q2a"] == metrics["vcr_q2a"]
    assert joint["vcr_q2ar"] <= min(joint["vcr_q2a"], joint["vcr_qa2r"])
    # a QA→R file scored as Q→A is refused in one line
    with pytest.raises(VlpError, match="holds qa2r predictions"):
        build_finetuning(config(world, tmp_path / "x", "vcr", "train.steps=0")).task.held_out \
            .read_predictions(qa2r)


def test_q2ar_needs_both_right(tmp_path: Path, world: Path) -> None:
    records = read_vcr(world / "annotations" / "vcr_train.jsonl")
    assert len(records) >= 9

    def picks(mode: str, right: range) -> dict[str, dict[str, object]]:
        out: dict[str, dict[str, object]] = {}
        for i, r in enumerate(records):
            label = r.answer_label if mode == "q2a" else r.rationale_label
            assert label is not None
            pick = label if i in right else (label + 1) % 4
            out[r.annot_id] = {"scores": [float(k == pick) for k in range(4)], "pick": pick}
        return out

    q2a, qa2r = picks("q2a", range(0, 6)), picks("qa2r", range(3, 9))
    n = len(records)
    expected = {"vcr_q2a": 600 / n, "vcr_qa2r": 600 / n, "vcr_q2ar": 300 / n}  # percent
    assert vcr_joint_accuracy(records, q2a, qa2r) == pytest.approx(expected)
    write_vcr_predictions(tmp_path / "a.json", "q2a", q2a)
    write_vcr_predictions(tmp_path / "r.json", "qa2r", qa2r)
    ann = world / "annotations" / "vcr_train.jsonl"
    assert vcr_joint_accuracy_of_files(ann, tmp_path / "a.json", tmp_path / "r.json") == \
        pytest.approx(expected)
    with pytest.raises(VlpError, match="expected q2a predictions, found qa2r"):
        vcr_joint_accuracy_of_files(ann, tmp_path / "r.json", tmp_path / "a.json")
    del q2a[records[0].annot_id]
    with pytest.raises(VlpError, match="no q2a prediction"):
        vcr_joint_accuracy(records, q2a, qa2r)


# ------------------------------------------------------------------------- non-finite loss
@pytest.mark.parametrize("task", ["vqa", "ve", "retrieval", "nlvr2", "refcoco", "vcr"])
def test_non_finite_loss_in_fine_tuning_is_one_line(world: Path, tmp_path: Path,
                                                    task: str) -> None:
    run = build_finetuning(config(world, tmp_path / task, task, "train.steps=2"))
    data = run.task.train
    data.collate = nan_regions(data.collate)  # type: ignore[method-assign]
    with pytest.raises(VlpError) as err:
        run.trainer.run()
    message = str(err.value)
    assert message.startswith("step 1: loss is nan (objective ") and "images [" in message
    assert "\n" not in message
    assert not (tmp_path / task / "checkpoints").exists()
