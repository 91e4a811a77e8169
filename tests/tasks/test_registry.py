"""The task registry: a task of one's own, written outside vlp, registers on import and
fine-tunes through the public ``finetune``; task options are checked as config fields."""

from __future__ import annotations

import importlib
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from vlp.config import load_config
from vlp.errors import VlpError
from vlp.tasks import TASKS, HeadSpec, TaskSpec, get_task, register_task
from vlp.tasks.retrieval import RetrievalOptions
from vlp.tasks.vqa import VQAData, VQAOptions
from vlp.train.config import FinetuneConfig
from vlp.train.finetune import finetune

TINY = ["model.hidden_size=32", "model.num_layers=1", "model.num_heads=2",
        "model.intermediate_size=64", "model.dropout=0.0", "train.precision=fp32",
        "train.tensorboard=false", "train.progress=false", "train.warmup_steps=1",
        "data.token_budget=0", "data.batch_size=8", "train.lr=1e-3", "train.log_every=1",
        "train.device=cpu", "data.train_splits=[train]", "data.eval_split=val"]

# a user's task module: its data, options, head and registration; vlp is not edited
TOY_TASK = '''
"""Does the caption belong to the image? Each caption with its own image and with the
image ``shift`` records on."""

from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from vlp.config import check_fields, ranged
from vlp.data.batch import Batch
from vlp.data.formats.karpathy import read_karpathy
from vlp.eval.classify import accuracy
from vlp.models.config import ModelConfig
from vlp.objectives.base import Objective
from vlp.tasks import HeadSpec, TaskData, TaskExample, TaskSpec, register_task
from vlp.tasks.heads import PairClassifier


@dataclass(frozen=True)
class ToyOptions:
    shift: int = ranged(1, ge=1)

    def __post_init__(self) -> None:
        check_fields(self, "task.options")


class ToyData(TaskData):
    name = "toy_match"
    roles = ("captions",)
    world_files: ClassVar[dict[str, str]] = {"captions": "annotations/dataset_world.json"}
    labels = ("no", "yes")

    def __init__(self, *args: Any, shift: int = 1, **kwargs: Any) -> None:
        self.shift = shift
        super().__init__(*args, **kwargs)

    def read(self) -> list[Any]:
        return [im for im in read_karpathy(self.files["captions"]) if im.split == self.split]

    def build_examples(self) -> list[TaskExample]:
        n = len(self.records)
        rows = []
        for i, im in enumerate(self.records):
            other = self.records[(i + self.shift) % n].image_id
            for ids in self.encode(list(im.captions)):
                rows += [TaskExample(i, im.image_id, ids, 1), TaskExample(i, other, ids, 0)]
        return rows

    def target_tensor(self, rows: list[TaskExample], batch: Batch) -> Tensor:
        return torch.tensor([r.target for r in rows])

    def predictions(self, scores: dict[int, Tensor]) -> dict[Any, Any]:
        return {i: int(s.argmax()) for i, s in scores.items()}

    def score(self, predictions: dict[Any, Any]) -> dict[str, float]:
        return {"toy_acc": accuracy([predictions[i] for i in sorted(predictions)],
                                    [self.examples[i].target for i in sorted(predictions)])}

    def write_predictions(self, path: Path, predictions: dict[Any, Any]) -> None:
        path.write_text(str(predictions))

    def read_predictions(self, path: Path) -> dict[Any, Any]:
        raise NotImplementedError


def build_head(cfg: ModelConfig, model: nn.Module, data: TaskData) -> Objective:
    return PairClassifier(cfg.hidden_size, len(data.labels))


register_task(TaskSpec("toy_match", ToyData, "toy: caption and image match or not",
                       ToyOptions, head_choice=HeadSpec("toy_match", build_head)))
'''


@pytest.fixture
def toy_task(tmp_path: Path) -> Iterator[str]:
    """The toy task's module, written to a temporary directory and imported from there."""
    package = tmp_path / "plugins" / "my_tasks"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "toy.py").write_text(textwrap.dedent(TOY_TASK))
    sys.path.insert(0, str(tmp_path / "plugins"))
    try:
        importlib.import_module("my_tasks.toy")
        yield "toy_match"
    finally:
        sys.path.remove(str(tmp_path / "plugins"))
        TASKS.pop("toy_match", None)
        for name in ("my_tasks.toy", "my_tasks"):
            sys.modules.pop(name, None)


def test_a_task_of_ones_own_fine_tunes(toy_task: str, dataset: Path, tmp_path: Path) -> None:
    cfg = load_config(FinetuneConfig, None, [
        f"task.name={toy_task}", "task.options.shift=2", f"data.world={dataset}",
        f"train.out={tmp_path / 'run'}", "train.steps=3", *TINY])
    metrics = finetune(cfg)
    assert set(metrics) == {"toy_acc"} and 0.0 <= metrics["toy_acc"] <= 1.0
    assert (tmp_path / "run" / "metrics_val.json").is_file()
    assert (tmp_path / "run" / "predictions_val.json").is_file()
    with pytest.raises(VlpError, match="task toy_match: already registered"):
        register_task(TASKS[toy_task])


def test_unknown_task_lists_the_known_ones() -> None:
    with pytest.raises(VlpError, match=r"task.name: unknown task 'x' \(known: nlvr2, refcoco, "
                                       r"retrieval, vcr, ve, vqa\)"):
        get_task("x")


@pytest.mark.parametrize(("override", "message"), [
    ("task.options.min_answer_count=0",
     r"overrides: field 'task.options.min_answer_count': expected an integer >= 1, got 0"),
    ("task.options.rank=itm",
     r"overrides: field 'task.options.rank': unknown option of task vqa \(known: "
     r"min_answer_count\)"),
    ("task.options.min_answer_count=two",
     r"overrides: field 'task.options.min_answer_count': expected int, got 'two'"),
])
def test_options_are_checked_when_the_config_is_built(override: str, message: str) -> None:
    with pytest.raises(VlpError, match=message):
        load_config(FinetuneConfig, None, ["task.name=vqa", override])


def test_a_task_without_options_says_so() -> None:
    with pytest.raises(VlpError, match=r"field 'task.options.mode': unknown option of task "
                                       r"ve \(it takes none\)"):
        load_config(FinetuneConfig, None, ["task.name=ve", "task.options.mode=q2a"])


def test_options_parse_and_choose_the_head() -> None:
    spec = get_task("retrieval")
    options = spec.parse_options({"rank": "itc", "hard_negatives": 3})
    assert options == RetrievalOptions(rank="itc", hard_negatives=3)
    assert spec.head(options).name == "itc"
    assert spec.head(spec.parse_options({})).name == "itm"
    with pytest.raises(VlpError, match=r"field 'task.options.rank': expected one of 'itm' \| "
                                       r"'itc', got 'cos'"):
        spec.parse_options({"rank": "cos"})
    vqa = get_task("vqa")
    assert vqa.data is VQAData and vqa.parse_options({}) == VQAOptions()
    assert isinstance(vqa.head(VQAOptions()), HeadSpec)
    assert isinstance(vqa, TaskSpec) and vqa.summary


def test_yaml_task_section(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("task: {name: vcr, files: {jsonl: 'v_{split}.jsonl'}, "
                    "options: {mode: qa2r}}\n")
    cfg = load_config(FinetuneConfig, path)
    assert cfg.task.options == {"mode": "qa2r"}
    path.write_text("task: {name: vcr, options: {mode: r2q}}\n")
    with pytest.raises(VlpError, match=rf"{path}: field 'task.options.mode': expected one "
                                       "of 'q2a' | 'qa2r', got 'r2q'"):
        load_config(FinetuneConfig, path)


def test_a_run_config_of_an_older_vlp_reads_in_todays_shape() -> None:
    """Flat task.* options (every task's, as dump_config wrote them) become the named
    task's task.options; the others are dropped and the config loads."""
    from vlp.config import from_dict
    from vlp.tasks.config import upgrade_run_config
    from vlp.train.config import FinetuneConfig

    flat = {"min_answer_count": 2, "eval_texts_per_image": 5, "rank": "itc",
            "hard_negatives": 0, "vcr_mode": "qa2r"}
    for name, options in [("vqa", {"min_answer_count": 2}), ("vcr", {"mode": "qa2r"}),
                          ("retrieval", {"eval_texts_per_image": 5, "rank": "itc",
                                         "hard_negatives": 0}), ("ve", {})]:
        doc = upgrade_run_config({"task": {"name": name, "eval_limit": 7, **flat}})
        assert doc["task"] == {"name": name, "eval_limit": 7, "options": options}
        cfg = from_dict(FinetuneConfig, doc, source="old/config.yaml")
        assert cfg.task.options == options and cfg.task.eval_limit == 7
    today = {"task": {"name": "vqa", "options": {"min_answer_count": 3}}}
    assert upgrade_run_config(today) is today
