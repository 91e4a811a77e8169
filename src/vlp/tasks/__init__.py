"""Downstream tasks: name → data, head and options. Filled by explicit imports."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from vlp.models.config import ModelConfig
from vlp.models.encoder import VLEncoder
from vlp.objectives.base import Objective
from vlp.objectives.itc import build_itc
from vlp.objectives.itm import build_itm
from vlp.tasks.base import TaskData, TaskExample
from vlp.tasks.heads import ChoiceScorer, PairClassifier, PairGroupClassifier, RegionScorer
from vlp.tasks.nlvr2 import NLVR2Data
from vlp.tasks.refcoco import RefCOCOData
from vlp.tasks.retrieval import RetrievalData
from vlp.tasks.vcr import VCRData
from vlp.tasks.ve import VEData
from vlp.tasks.vqa import VQAData


@dataclass(frozen=True)
class TaskSpec:
    """What a task is made of.

    Attributes:
        name: the task's name in configs and on the command line.
        data: its :class:`TaskData` class.
        head_name: the head's objective name — a pre-trained head of that name is loaded
            with ``train.init`` (retrieval continues from the pre-trained ITM head).
        head: builds the head from the model config, the model and the training split.
        options: task config → extra keyword arguments of ``data``.
        shared: training split → keyword arguments every other split needs (VQA's answers).
        head_names / heads: alternative heads chosen by ``task.rank`` (retrieval: ``itc``).
    """

    name: str
    data: type[TaskData]
    head_name: str
    head: Callable[[ModelConfig, VLEncoder, TaskData], Objective]
    options: Callable[[Any], dict[str, Any]] = field(default=lambda cfg: {})
    shared: Callable[[TaskData], dict[str, Any]] = field(default=lambda data: {})
    head_names: dict[str, str] = field(default_factory=dict)
    heads: dict[str, Callable[[ModelConfig, VLEncoder, TaskData], Objective]] = field(
        default_factory=dict)

    def head_for(self, rank: str) -> tuple[str, Callable[[ModelConfig, VLEncoder, TaskData],
                                                          Objective]]:
        """The head's objective name and builder for ``task.rank`` (a task's alternative
        heads, e.g. retrieval by ITC), else the task's own."""
        if rank in self.heads:
            return self.head_names[rank], self.heads[rank]
        return self.head_name, self.head


def _classifier(soft: bool) -> Callable[[ModelConfig, VLEncoder, TaskData], Objective]:
    def build(cfg: ModelConfig, model: VLEncoder, data: TaskData) -> Objective:
        return PairClassifier(cfg.hidden_size, len(data.labels), soft=soft)
    return build


TASKS: dict[str, TaskSpec] = {
    "vqa": TaskSpec("vqa", VQAData, "vqa", _classifier(soft=True),
                    options=lambda cfg: {"min_answer_count": cfg.min_answer_count},
                    shared=lambda data: {"answers": list(data.labels)}),
    "ve": TaskSpec("ve", VEData, "ve", _classifier(soft=False)),
    "retrieval": TaskSpec("retrieval", RetrievalData, "itm",
                          lambda cfg, model, data: build_itm(cfg, model),
                          options=lambda cfg: {"texts_per_image": cfg.eval_texts_per_image,
                                               "rank": cfg.rank,
                                               "hard_negatives": cfg.hard_negatives},
                          head_names={"itc": "itc"},
                          heads={"itc": lambda cfg, model, data: build_itc(cfg, model)}),
    "nlvr2": TaskSpec("nlvr2", NLVR2Data, "nlvr2",
                      lambda cfg, model, data: PairGroupClassifier(cfg.hidden_size)),
    "refcoco": TaskSpec("refcoco", RefCOCOData, "refcoco",
                        lambda cfg, model, data: RegionScorer(cfg.image_width)),
    "vcr": TaskSpec("vcr", VCRData, "vcr", lambda cfg, model, data: ChoiceScorer(cfg.hidden_size),
                    options=lambda cfg: {"mode": cfg.vcr_mode}),
}

__all__ = ["TASKS", "TaskData", "TaskExample", "TaskSpec"]
