"""The ``task`` section of a fine-tuning config: which task, from which files, how many
labels, and the task's own options (each task's options dataclass checks them)."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

from vlp.config import check, check_fields, ranged
from vlp.tasks.registry import TASKS, get_task


@dataclass
class TaskConfig:
    """Which downstream task, from which files, with how many labels.

    ``files`` maps each of the task's file roles to a path template where ``{split}``
    stands for the split's name (e.g. ``questions: data/vqa/v2_OpenEnded_mscoco_{split}
    2014_questions.json``); roles left out come from ``data.world``.

    Attributes:
        name: a registered task (``vlp.tasks.TASKS``): ``vqa``, ``retrieval``, ``ve``,
            ``nlvr2``, ``refcoco``, ``vcr`` or one of your own.
        files: role → path template.
        train_limit: the labelled budget: first N training records (0: all).
        eval_limit: records evaluated (retrieval: images in the ranking pool; 0: all).
        options: the task's own options, e.g. ``{min_answer_count: 2}`` for VQA; checked
            by the task's options dataclass when the config is built.
    """

    name: str = "vqa"
    files: dict[str, str] = field(default_factory=dict)
    train_limit: int = ranged(0, ge=0)
    eval_limit: int = ranged(1000, ge=0)
    options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        check_fields(self, "task")
        check(bool(self.name.strip()), "task.name", "empty; expected a task name, e.g. vqa")
        for role, template in self.files.items():
            check(bool(template.strip()), f"task.files.{role}", "empty path; give a path "
                  "template, or leave the role out to take it from data.world")
        get_task(self.name).parse_options(self.options)


# fields of the task section before each task had its own options, and their option names
_FLAT_OPTIONS = {"min_answer_count": "min_answer_count", "eval_texts_per_image":
                 "eval_texts_per_image", "rank": "rank", "hard_negatives": "hard_negatives",
                 "vcr_mode": "mode"}


def upgrade_run_config(doc: dict[str, Any]) -> dict[str, Any]:
    """A run's saved config with the task section of an older vlp (each task's options as
    flat ``task.*`` fields, every task's written) in today's shape: the named task's own
    options under ``task.options``, the other tasks' dropped. Anything else is unchanged."""
    task = doc.get("task")
    if not isinstance(task, dict) or not set(task) & set(_FLAT_OPTIONS):
        return doc
    options = dict(task.get("options") or {})
    name = task.get("name")
    known = {f.name for f in fields(get_task(name).options)} if isinstance(name, str) and \
        name in TASKS else set()
    for old, new in _FLAT_OPTIONS.items():
        if old in task and new in known:
            options.setdefault(new, task[old])
    kept = {k: v for k, v in task.items() if k not in _FLAT_OPTIONS}
    return {**doc, "task": {**kept, "options": options}}


__all__ = ["TaskConfig", "upgrade_run_config"]
