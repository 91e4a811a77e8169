"""The task registry: a task's name → its data, options, head and how a split is loaded.

Each task module ends with ``register_task(TaskSpec(...))``; ``vlp.tasks`` imports the
built-in ones explicitly, and a task of one's own registers the same way when its module is
imported — nothing in vlp is edited::

    @dataclass
    class ToyOptions:
        threshold: float = ranged(0.5, ge=0, le=1)

    register_task(TaskSpec("toy", ToyData, "toy pairs: match or not", ToyOptions,
                           head_choice=HeadSpec("toy", build_toy_head)))
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from vlp.config import FieldError, from_section
from vlp.data.tokenizer import Tokenizer
from vlp.data.visuals import Visuals
from vlp.errors import VlpError
from vlp.models.config import ModelConfig
from vlp.models.encoder import VLEncoder
from vlp.objectives.base import Objective
from vlp.tasks.base import AnyTaskData

if TYPE_CHECKING:
    from vlp.tasks.config import TaskConfig

HeadBuilder = Callable[[ModelConfig, VLEncoder, AnyTaskData], Objective]


@dataclass(frozen=True)
class NoOptions:
    """The options of a task that has none."""


@dataclass(frozen=True)
class HeadSpec:
    """A task head.

    Attributes:
        name: the head's objective name: a pre-trained head of that name is loaded with
            ``train.init`` (retrieval's ``itm`` / ``itc`` continue from pre-training).
        build: the model config, the model and the training split → the head.
    """

    name: str
    build: HeadBuilder


@dataclass(frozen=True)
class TaskSpec:
    """What a task is made of.

    Attributes:
        name: the task's name in configs (``task.name``) and on the command line.
        data: its :class:`TaskData` class; the options' fields are keyword arguments of
            its constructor, as is :meth:`TaskData.shared` of the training split.
        summary: one line, shown in the command line's help.
        options: the task's options dataclass (``task.options``).
        head_choice: the head, or options → the head (retrieval: by ``rank``).
    """

    name: str
    data: type[AnyTaskData]
    summary: str
    options: type = NoOptions
    head_choice: HeadSpec | Callable[[object], HeadSpec] = field(kw_only=True)

    def __post_init__(self) -> None:
        if not dataclasses.is_dataclass(self.options):
            raise VlpError(f"task {self.name}: options must be a dataclass, got "
                           f"{self.options!r}")

    def parse_options(self, raw: Mapping[str, object]) -> object:
        """The task's options from ``task.options``, checked.

        Raises:
            FieldError: an unknown option, or a value of the wrong type or out of range,
                naming ``task.options.<field>``.
        """
        known = [f.name for f in dataclasses.fields(self.options)]
        for key in raw:
            if key not in known:
                listed = f"known: {', '.join(known)}" if known else "it takes none"
                raise FieldError(f"task.options.{key}", f"unknown option of task "
                                 f"{self.name} ({listed})")
        return from_section(self.options, dict(raw), "task.options")

    def head(self, options: object) -> HeadSpec:
        """The head for ``options`` (from :meth:`parse_options`)."""
        choice = self.head_choice
        return choice if isinstance(choice, HeadSpec) else choice(options)

    def load_split(self, task: TaskConfig, world: str, split: str, tokenizer: Tokenizer,
                   visuals: Visuals, max_text_len: int, limit: int = 0,
                   train: AnyTaskData | None = None) -> AnyTaskData:
        """One split of the task.

        Args:
            task: the task section (files, options).
            world: a ``vlp world`` directory for the files ``task.files`` leaves out.
            split: the split's name.
            tokenizer / visuals: text → ids; the images (regions or pixels).
            max_text_len: tokens kept per text.
            limit: the first ``limit`` records only (0: all).
            train: the training split, whose shared state (VQA's answers) the others take.
        """
        kwargs = dataclasses.asdict(self.parse_options(task.options))  # type: ignore[call-overload]
        if train is not None:
            kwargs.update(train.shared())
        return self.data(self.files(task, world, split), split, tokenizer, visuals,
                         max_text_len, limit, **kwargs)

    def files(self, task: TaskConfig, world: str, split: str) -> dict[str, Path]:
        """Each file role of ``split``: from ``task.files`` or the world directory."""
        data_cls = self.data
        file_split = data_cls.split_names.get(split, split)
        out: dict[str, Path] = {}
        for role in data_cls.roles:
            template = task.files.get(role)
            if template is None:
                if not world:
                    raise VlpError(f"task.files.{role}: not set, and no data.world to take "
                                   f"it from (task {self.name} needs "
                                   f"{', '.join(data_cls.roles)})")
                template = str(Path(world) / data_cls.world_files[role])
            out[role] = Path(template.format(split=file_split))
        unknown = sorted(set(task.files) - set(data_cls.roles))
        if unknown:
            raise VlpError(f"task.files.{unknown[0]}: unknown file role for task {self.name} "
                           f"(expected {', '.join(data_cls.roles)})")
        return out


TASKS: dict[str, TaskSpec] = {}


def register_task(spec: TaskSpec) -> TaskSpec:
    """Add ``spec`` to :data:`TASKS` under its name; returns it.

    Raises:
        VlpError: a task of that name is already registered.
    """
    if spec.name in TASKS:
        raise VlpError(f"task {spec.name}: already registered (by "
                       f"{TASKS[spec.name].data.__module__})")
    TASKS[spec.name] = spec
    return spec


def get_task(name: str) -> TaskSpec:
    """The registered task ``name``.

    Raises:
        VlpError: no task of that name, listing the known ones.
    """
    if name not in TASKS:
        raise VlpError(f"task.name: unknown task '{name}' (known: {', '.join(sorted(TASKS))})")
    return TASKS[name]


__all__ = ["TASKS", "HeadBuilder", "HeadSpec", "NoOptions", "TaskSpec", "get_task",
           "register_task"]
