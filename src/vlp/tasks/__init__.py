"""Downstream tasks: one module per task (its data, options, head and metrics), each
registering itself in :data:`TASKS`. The built-in ones are imported here, explicitly; a task
of one's own registers when its module is imported (:func:`register_task`)."""

from __future__ import annotations

from vlp.tasks import nlvr2, refcoco, retrieval, vcr, ve, vqa  # noqa: F401  (they register)
from vlp.tasks.base import TaskData, TaskExample
from vlp.tasks.config import TaskConfig
from vlp.tasks.registry import TASKS, HeadSpec, NoOptions, TaskSpec, get_task, register_task

__all__ = ["TASKS", "HeadSpec", "NoOptions", "TaskConfig", "TaskData", "TaskExample",
           "TaskSpec", "get_task", "register_task"]
