"""What the task modules share: an image's generated content (:class:`MadeImage`,
:class:`ImageTasks`, :class:`TaskImage`), split names, and phrases that name objects uniquely.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

from vlp.world.scene import Scene
from vlp.world.vocab import COLOURS, SHAPES


@dataclass(frozen=True)
class ImageTasks:
    """What the task files say about one image alone; made where the image is drawn.

    Attributes:
        vqa: ``(question, annotation)`` records.
        snli_ve: SNLI-VE records.
        refs: ``(object index, [(expression, tokens), …])`` for each object referred to.
        vcr: the scene's part of a VCR record, or None.
    """

    vqa: list[tuple[dict[str, Any], dict[str, Any]]]
    snli_ve: list[dict[str, Any]]
    refs: list[tuple[int, list[tuple[str, list[str]]]]]
    vcr: dict[str, Any] | None


@dataclass(frozen=True)
class MadeImage:
    """One generated image: its scene, its captions and its task content."""

    image_id: int
    scene: Scene
    captions: tuple[str, ...]
    tasks: ImageTasks


@dataclass(frozen=True)
class TaskImage:
    """One image of a world, as the task files need it.

    Attributes:
        image_id: the image's id.
        scene: its scene.
        tasks: its task content (:func:`~vlp.world.make.image_tasks`).
        split: its Karpathy split (train / val / test).
        first_ann_id: the ``instances.json`` id of ``scene.objects[0]``; the others follow.
    """

    image_id: int
    scene: Scene
    tasks: ImageTasks
    split: str
    first_ann_id: int


DEV = {"train": "train", "val": "dev", "test": "test"}  # SNLI-VE's and NLVR2's split names
TRIES = 8  # random draws of a template before a slot is given up


def named_pairs(scene: Scene) -> list[tuple[str, str, str]]:
    """``(phrase_a, relation, phrase_b)`` for each relation between uniquely named objects."""
    pairs = [(scene.attribute_description(a), rel, scene.attribute_description(b))
             for a, rel, b in scene.related_pairs()]
    return [(a, rel, b) for a, rel, b in pairs if a is not None and b is not None]


def named_bigger(scene: Scene) -> list[tuple[str, str]]:
    """``(phrase_a, phrase_b)`` for uniquely named objects where ``a`` is bigger."""
    pairs = [(scene.attribute_description(a), scene.attribute_description(b))
             for a in scene.objects for b in scene.objects if scene.bigger(a, b)]
    return [(a, b) for a, b in pairs if a is not None and b is not None]


def absent_kind(scene: Scene, rng: random.Random) -> tuple[str, str]:
    """A ``(colour, shape)`` the scene has no object of."""
    missing = [(c, s) for c in COLOURS for s in SHAPES if scene.count(s, c) == 0]
    return rng.choice(missing)
