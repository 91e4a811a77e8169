"""The built-in synthetic world: coloured shapes, their captions and their annotations.

Each image is a scene of 2–6 non-overlapping shapes drawn with Pillow. The scene's meaning
lives in :class:`Scene` alone; captions here, and the VQA v2 / SNLI-VE / NLVR2 / RefCOCO /
VCR files of :mod:`vlp.data.world_tasks`, are all derived from its answers, so every text is
true of its image (or, for a task's wrong options, false of it).

A world is written in the published formats (COCO captions and instances, Karpathy splits,
and each downstream task's own format) and read back with :mod:`vlp.data.readers` like real
data. Every image is generated from
its own seed ``(seed, image_id)``, so output is identical for any number of workers.
"""

from __future__ import annotations

import json
import math
import multiprocessing
import random
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image, ImageDraw

from vlp.data.readers import check_kind, json_field, load_json
from vlp.errors import VlpError, input_error
from vlp.fileio import atomic_path, claim_output

if TYPE_CHECKING:  # world_tasks builds on this module, so it is imported where it is used
    from vlp.data.world_tasks import ImageTasks

GENERATOR_VERSION = 2  # 2: downstream task files

# --- vocabulary: the only words the world uses ------------------------------------------------

SHAPES = ("circle", "square", "triangle", "diamond", "star", "cross")
PLURALS = {"circle": "circles", "square": "squares", "triangle": "triangles",
           "diamond": "diamonds", "star": "stars", "cross": "crosses"}
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 40, 40), "green": (40, 180, 70), "blue": (50, 100, 235),
    "yellow": (240, 220, 50), "purple": (150, 70, 210), "orange": (250, 140, 30),
    "pink": (250, 130, 190), "white": (245, 245, 245),
}
SIZES = ("small", "medium", "large")
# side of a shape's box as a fraction of the image side; small enough that six shapes fit
SIZE_FRACTIONS = {"small": 0.14, "medium": 0.2, "large": 0.28}
NUMBER_WORDS = ("zero", "one", "two", "three", "four", "five", "six")
RELATIONS = ("left of", "right of", "above", "below")
RELATION_PHRASES = {"left of": "to the left of", "right of": "to the right of",
                    "above": "above", "below": "below"}
OPPOSITE = {"left of": "right of", "right of": "left of", "above": "below", "below": "above"}
SUPERCATEGORY = "shape"
CAPTIONS_PER_IMAGE = 5
MIN_OBJECTS, MAX_OBJECTS = 2, 6
MIN_SIZE, MAX_SIZE = 32, 1024
SPLITS = ("train", "val", "test")

_GAP = 2  # pixels kept free between boxes, so shapes never touch
_PLACE_TRIES = 50
_RELATION_MARGIN = 0.04  # box gap (fraction of the image side) below which no relation is said
_STAR_INNER = 0.45  # inner / outer radius of the five-pointed star
# a star of outer radius R is ten triangles of area R·r·sin(36°)/2, with R = side / 2
_STAR_FILL = 5 * _STAR_INNER * math.sin(math.pi / 5) / 4


def category_id(shape: str) -> int:
    """The COCO category id of ``shape`` (1-based position in :data:`SHAPES`)."""
    return SHAPES.index(shape) + 1


def number_word(n: int) -> str:
    """``n`` as a word ("zero" … "six"), else digits."""
    return NUMBER_WORDS[n] if 0 <= n < len(NUMBER_WORDS) else str(n)


# --- scene semantics -----------------------------------------------------------------------------

@dataclass(frozen=True)
class WorldObject:
    """One shape in a scene.

    Attributes:
        shape: one of :data:`SHAPES`.
        colour: a key of :data:`COLOURS`.
        size: one of :data:`SIZES`.
        box: ``(x0, y0, x1, y1)`` in pixels; ``x1``, ``y1`` exclusive, so the side is
            ``x1 - x0``.
    """

    shape: str
    colour: str
    size: str
    box: tuple[int, int, int, int]

    @property
    def centre(self) -> tuple[float, float]:
        """The box centre ``(x, y)`` in pixels."""
        x0, y0, x1, y1 = self.box
        return (x0 + x1) / 2, (y0 + y1) / 2

    @property
    def side(self) -> int:
        """The box side in pixels."""
        return self.box[2] - self.box[0]

    @property
    def area(self) -> float:
        """The drawn shape's area in pixels, from its geometry (the COCO ``area`` field)."""
        fill = {"circle": math.pi / 4, "square": 1.0, "triangle": 0.5, "diamond": 0.5,
                "star": _STAR_FILL, "cross": 5 / 9}
        return fill[self.shape] * self.side ** 2

    def phrase(self, size: bool = False, colour: bool = True) -> str:
        """The noun phrase without article, e.g. ``small red circle``."""
        words = [self.size] if size else []
        return " ".join([*words, *([self.colour] if colour else []), self.shape])

    def to_json(self) -> dict[str, Any]:
        """The object as written in ``scenes.json``."""
        return {"shape": self.shape, "colour": self.colour, "size": self.size,
                "box": list(self.box)}


@dataclass(frozen=True)
class Scene:
    """The objects of one image and the questions they answer.

    Attributes:
        objects: the shapes, in drawing order.
        image_size: the image side in pixels.
    """

    objects: tuple[WorldObject, ...]
    image_size: int

    def objects_matching(self, shape: str | None = None, colour: str | None = None,
                         size: str | None = None) -> list[WorldObject]:
        """The objects with every given attribute (``None`` matches anything)."""
        _check_vocab(shape, SHAPES, "shape")
        _check_vocab(colour, COLOURS, "colour")
        _check_vocab(size, SIZES, "size")
        return [o for o in self.objects if (shape is None or o.shape == shape)
                and (colour is None or o.colour == colour) and (size is None or o.size == size)]

    def count(self, shape: str | None = None, colour: str | None = None,
              size: str | None = None) -> int:
        """How many objects have every given attribute."""
        return len(self.objects_matching(shape, colour, size))

    def relation(self, a: WorldObject, b: WorldObject) -> tuple[str, ...]:
        """The spatial relations of ``a`` to ``b``, in :data:`RELATIONS` order.

        ``a`` is "left of" ``b`` when its box ends at least a margin before ``b``'s begins;
        pairs closer than the margin on an axis get no relation on that axis, so nothing
        ambiguous is ever described. A diagonal pair may be both "left of" and "above".
        """
        margin = max(1.0, _RELATION_MARGIN * self.image_size)
        ax0, ay0, ax1, ay1 = a.box
        bx0, by0, bx1, by1 = b.box
        held = {"left of": bx0 - ax1 >= margin, "right of": ax0 - bx1 >= margin,
                "above": by0 - ay1 >= margin, "below": ay0 - by1 >= margin}
        return tuple(r for r in RELATIONS if held[r])

    def bigger(self, a: WorldObject, b: WorldObject) -> bool:
        """Whether ``a`` is of a larger size class than ``b``."""
        return SIZES.index(a.size) > SIZES.index(b.size)

    def related_pairs(self, relations: Iterable[str] = RELATIONS
                      ) -> list[tuple[WorldObject, str, WorldObject]]:
        """Every ``(a, relation, b)`` that holds, for the given relations."""
        wanted = set(relations)
        return [(a, r, b) for a in self.objects for b in self.objects if a is not b
                for r in self.relation(a, b) if r in wanted]

    def reaches_beyond(self, a: WorldObject, b: WorldObject, rel: str) -> bool:
        """Whether part of ``a``'s box lies further towards ``rel`` than ``b``'s box does.

        For "left of": ``a`` begins further left than ``b``. An object that does not reach
        beyond ``b`` is plainly not ``rel`` of it, margin or no margin.
        """
        ax0, ay0, ax1, ay1 = a.box
        bx0, by0, bx1, by1 = b.box
        beyond = {"left of": ax0 < bx0, "right of": ax1 > bx1, "above": ay0 < by0,
                  "below": ay1 > by1}
        return beyond[rel]

    def sole_related(self, landmark: WorldObject, rel: str,
                     among: Iterable[WorldObject] | None = None) -> WorldObject | None:
        """The one object of ``among`` (default: all) that is ``rel`` of ``landmark``, or None.

        It must hold the relation (:meth:`relation`, with its margin) and every other
        candidate must not even reach beyond the landmark on that side: "the circle left of
        the star" is never said while a second circle is nearly left of the star too.
        """
        candidates = [o for o in (self.objects if among is None else among) if o is not landmark]
        held = [o for o in candidates if rel in self.relation(o, landmark)]
        if len(held) != 1 or any(self.reaches_beyond(o, landmark, rel)
                                 for o in candidates if o is not held[0]):
            return None
        return held[0]

    def attribute_description(self, obj: WorldObject, omit: str | None = None) -> str | None:
        """The shortest "the …" phrase of attributes that picks out ``obj`` alone, or None.

        Args:
            obj: the object to name.
            omit: ``"colour"`` or ``"size"``: an attribute the phrase must not name (the
                one a question asks about).
        """
        for size, colour in ((False, False), (False, True), (True, False), (True, True)):
            if (size and omit == "size") or (colour and omit == "colour"):
                continue
            matches = self.objects_matching(obj.shape, obj.colour if colour else None,
                                            obj.size if size else None)
            if len(matches) == 1:
                return "the " + obj.phrase(size=size, colour=colour)
        return None

    def unique_description(self, obj: WorldObject) -> str | None:
        """A referring phrase that picks out ``obj`` alone, or None if there is none.

        Attributes are tried first ("the small red circle"), then a relation to an object
        that itself has a unique attribute phrase ("the circle left of the blue square").
        """
        found = self.attribute_description(obj)
        if found is not None:
            return found
        for size, colour in ((False, False), (False, True), (True, True)):
            group = [o for o in self.objects_matching(
                obj.shape, obj.colour if colour else None, obj.size if size else None)
                if o is not obj]
            for landmark in self.objects:
                landmark_phrase = self.attribute_description(landmark)
                if landmark is obj or landmark_phrase is None:
                    continue
                for rel in self.relation(obj, landmark):
                    if all(rel not in self.relation(o, landmark) for o in group):
                        return f"the {obj.phrase(size=size, colour=colour)} {rel} " \
                               f"{landmark_phrase}"
        return None

    def referring_expressions(self, obj: WorldObject) -> list[str]:
        """Every phrase, in a fixed order, that picks out ``obj`` alone.

        First the attribute phrases ("the circle", "the red circle", "the small red circle",
        each only if no other object fits it), then for every landmark with a unique
        attribute phrase and every relation ``obj`` holds to it, the shortest "the … rel …"
        phrase that :meth:`sole_related` makes unique ("the circle left of the blue square").
        """
        found = []
        for size, colour in ((False, False), (False, True), (True, False), (True, True)):
            if self.count(obj.shape, obj.colour if colour else None,
                          obj.size if size else None) == 1:
                found.append("the " + obj.phrase(size=size, colour=colour))
        for landmark in self.objects:
            landmark_phrase = self.attribute_description(landmark)
            if landmark is obj or landmark_phrase is None:
                continue
            for rel in self.relation(obj, landmark):
                for size, colour in ((False, False), (False, True), (True, True)):
                    group = self.objects_matching(obj.shape, obj.colour if colour else None,
                                                  obj.size if size else None)
                    if self.sole_related(landmark, rel, group) is obj:
                        found.append(f"the {obj.phrase(size=size, colour=colour)} {rel} "
                                     f"{landmark_phrase}")
                        break
        return found

    def describe(self, obj: WorldObject) -> str:
        """A referring phrase for ``obj``: unique within the scene when possible, else the
        most specific attribute phrase ("the small red circle")."""
        return self.unique_description(obj) or "the " + obj.phrase(size=True, colour=True)

    def to_json(self) -> list[dict[str, Any]]:
        """The scene as written in ``scenes.json``."""
        return [o.to_json() for o in self.objects]


def _check_vocab(value: str | None, vocab: Iterable[str], what: str) -> None:
    if value is not None and value not in vocab:
        raise ValueError(f"unknown {what} {value!r}; expected one of {', '.join(vocab)}")


# --- generation ----------------------------------------------------------------------------------

def _rng(seed: int, image_id: int, stream: str) -> random.Random:
    # a str seed is hashed with SHA-512: the same in every process and on every platform,
    # and independent streams so that changing captions never changes scenes
    return random.Random(f"vlp-world/{GENERATOR_VERSION}/{seed}/{image_id}/{stream}")


def _side(size: str, image_size: int) -> int:
    return max(3, round(SIZE_FRACTIONS[size] * image_size))


def _apart(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> bool:
    return (a[2] + _GAP <= b[0] or b[2] + _GAP <= a[0]
            or a[3] + _GAP <= b[1] or b[3] + _GAP <= a[1])


def _place(rng: random.Random, side: int, image_size: int,
           taken: list[tuple[int, int, int, int]]) -> tuple[int, int, int, int] | None:
    """A box of ``side`` apart from every taken box, by rejection sampling; None if none found."""
    for _ in range(_PLACE_TRIES):
        x0 = rng.randint(1, image_size - side - 1)
        y0 = rng.randint(1, image_size - side - 1)
        box = (x0, y0, x0 + side, y0 + side)
        if all(_apart(box, t) for t in taken):
            return box
    return None


def generate_scene(seed: int, image_id: int, image_size: int = 64) -> Scene:
    """The scene of image ``image_id`` of the world with ``seed``.

    Shapes are placed largest first (they are hardest to fit); one that finds no free place
    is dropped, and a layout with fewer than two shapes is drawn again.

    Args:
        seed: the world's seed.
        image_id: the image's id (from 1).
        image_size: the image side in pixels.
    """
    rng = _rng(seed, image_id, "scene")
    while True:
        n = rng.randint(MIN_OBJECTS, MAX_OBJECTS)
        specs = [(rng.choice(SIZES), rng.choice(SHAPES), rng.choice(list(COLOURS)))
                 for _ in range(n)]
        specs.sort(key=lambda s: -SIZES.index(s[0]))
        objects: list[WorldObject] = []
        for size, shape, colour in specs:
            box = _place(rng, _side(size, image_size), image_size, [o.box for o in objects])
            if box is not None:
                objects.append(WorldObject(shape, colour, size, box))
        if len(objects) >= MIN_OBJECTS:
            rng.shuffle(objects)  # drawing order carries no size information
            return Scene(tuple(objects), image_size)


# --- rendering -----------------------------------------------------------------------------------

def _star_points(box: tuple[int, int, int, int]) -> list[tuple[float, float]]:
    x0, y0, x1, _ = box
    r = (x1 - 1 - x0) / 2
    # a star is shorter than wide (top point to bottom points is r(1 + cos 36°)); centre it
    cx, cy = x0 + r, y0 + r + r * (1 - math.cos(math.pi / 5)) / 2
    points = []
    for k in range(10):
        radius = r if k % 2 == 0 else r * _STAR_INNER
        angle = -math.pi / 2 + k * math.pi / 5
        points.append((cx + radius * math.cos(angle), cy + radius * math.sin(angle)))
    return points


def _draw(draw: ImageDraw.ImageDraw, obj: WorldObject) -> None:
    x0, y0, x1, y1 = obj.box
    xe, ye = x1 - 1, y1 - 1  # Pillow boxes include their last pixel
    cx, cy = (x0 + xe) / 2, (y0 + ye) / 2
    fill = COLOURS[obj.colour]
    if obj.shape == "circle":
        draw.ellipse((x0, y0, xe, ye), fill=fill)
    elif obj.shape == "square":
        draw.rectangle((x0, y0, xe, ye), fill=fill)
    elif obj.shape == "triangle":
        draw.polygon([(cx, y0), (xe, ye), (x0, ye)], fill=fill)
    elif obj.shape == "diamond":
        draw.polygon([(cx, y0), (xe, cy), (cx, ye), (x0, cy)], fill=fill)
    elif obj.shape == "star":
        draw.polygon(_star_points(obj.box), fill=fill)
    else:  # cross: two bars a third of the side thick
        t = obj.side / 6
        draw.rectangle((x0, round(cy - t), xe, round(cy + t)), fill=fill)
        draw.rectangle((round(cx - t), y0, round(cx + t), ye), fill=fill)


def _background(seed: int, image_id: int, image_size: int) -> np.ndarray:
    """A dark grey, slightly tinted background with a soft vertical gradient and faint noise."""
    g = np.random.default_rng([GENERATOR_VERSION, seed, image_id])
    base = g.integers(60, 110) + g.integers(-8, 9, size=3)  # (3,)
    ramp = np.linspace(-1.0, 1.0, image_size) * g.uniform(0.0, 12.0)  # (H,)
    noise = g.normal(0.0, 3.0, size=(image_size, image_size, 3))  # (H, W, 3)
    pixels = base[None, None, :] + ramp[:, None, None] + noise  # (H, W, 3)
    return np.clip(np.rint(pixels), 0, 255).astype(np.uint8)


def render_scene(scene: Scene, seed: int, image_id: int) -> Image.Image:
    """Draw ``scene`` on its background.

    Args:
        scene: the scene to draw.
        seed: the world's seed (with ``image_id`` it seeds the background texture).
        image_id: the image's id.

    Returns:
        An RGB image of ``scene.image_size`` × ``scene.image_size`` pixels.
    """
    img = Image.fromarray(_background(seed, image_id, scene.image_size), mode="RGB")
    draw = ImageDraw.Draw(img)
    for obj in scene.objects:
        _draw(draw, obj)
    return img


# --- captions ------------------------------------------------------------------------------------

Template = Callable[[Scene, random.Random], str | None]


def _a(words: str) -> str:
    return ("an " if words[0] in "aeiou" else "a ") + words


def _np(obj: WorldObject, rng: random.Random) -> str:
    """An indefinite noun phrase, with the size word half of the time."""
    return _a(obj.phrase(size=rng.random() < 0.5))


def _counted(n: int, noun: str, plural: str) -> str:
    return f"{number_word(n)} {noun if n == 1 else plural}"


def _cap_pair(scene: Scene, rng: random.Random) -> str | None:
    a, b = rng.sample(scene.objects, 2)
    with_size = rng.random() < 0.5
    pair = f"{_a(a.phrase(size=with_size))} and {_a(b.phrase(size=with_size))}"
    return rng.choice(["{}", "a picture of {}", "an image showing {}"]).format(pair)


def _cap_total(scene: Scene, rng: random.Random) -> str | None:
    n = number_word(len(scene.objects))
    return rng.choice([f"there are {n} objects in the picture",
                       f"the image contains {n} shapes in total",
                       f"a picture with exactly {n} shapes"])


def _cap_shape_count(scene: Scene, rng: random.Random) -> str | None:
    shape = rng.choice(sorted({o.shape for o in scene.objects}))
    n = scene.count(shape=shape)
    verb = "is" if n == 1 else "are"
    what = _counted(n, shape, PLURALS[shape])
    return rng.choice([f"there {verb} {what} in the image", f"the picture shows exactly {what}"])


def _cap_colour_count(scene: Scene, rng: random.Random) -> str | None:
    colour = rng.choice(sorted({o.colour for o in scene.objects}))
    n = scene.count(colour=colour)
    verb = "is" if n == 1 else "are"
    return rng.choice([f"there {verb} {_counted(n, colour + ' object', colour + ' objects')} "
                       "in the image",
                       f"{number_word(n)} of the {number_word(len(scene.objects))} shapes "
                       f"{verb} {colour}"])


def _cap_relation(scene: Scene, rng: random.Random, relations: tuple[str, ...]) -> str | None:
    pairs = scene.related_pairs(relations)
    if not pairs:
        return None
    a, rel, b = rng.choice(pairs)
    verb = rng.choice(["", "is "])
    return f"{_np(a, rng)} {verb}{RELATION_PHRASES[rel]} {_np(b, rng)}"


def _cap_horizontal(scene: Scene, rng: random.Random) -> str | None:
    return _cap_relation(scene, rng, ("left of", "right of"))


def _cap_vertical(scene: Scene, rng: random.Random) -> str | None:
    return _cap_relation(scene, rng, ("above", "below"))


def _cap_definite_relation(scene: Scene, rng: random.Random) -> str | None:
    pairs = [(scene.attribute_description(a), rel, scene.attribute_description(b))
             for a, rel, b in scene.related_pairs()]
    named = [(a, rel, b) for a, rel, b in pairs if a is not None and b is not None]
    if not named:
        return None
    a, rel, b = rng.choice(named)
    return f"{a} is {RELATION_PHRASES[rel]} {b}"


def _cap_bigger(scene: Scene, rng: random.Random) -> str | None:
    pairs = [(a, b) for a in scene.objects for b in scene.objects if scene.bigger(a, b)]
    if not pairs:
        return None
    a, b = rng.choice(pairs)
    name_a, name_b = scene.attribute_description(a), scene.attribute_description(b)
    if name_a is None or name_b is None:  # no unique names: an existential claim is still true
        name_a, name_b = _a(a.phrase()), _a(b.phrase())
    if rng.random() < 0.5:
        return f"{name_a} is bigger than {name_b}"
    return f"{name_b} is smaller than {name_a}"


def _cap_listing(scene: Scene, rng: random.Random) -> str | None:
    names = [_a(o.phrase()) for o in rng.sample(scene.objects, len(scene.objects))]
    listed = ", ".join(names[:-1]) + " and " + names[-1]
    return rng.choice(["a scene with {}", "an image of {}", "{}"]).format(listed)


def _cap_one_among(scene: Scene, rng: random.Random) -> str | None:
    obj = rng.choice(scene.objects)
    others = _counted(len(scene.objects) - 1, "other shape", "other shapes")
    link = rng.choice(["and", "among"]) if len(scene.objects) > 2 else "and"
    return f"{_a(obj.phrase(size=True))} {link} {others}"


def _cap_property(scene: Scene, rng: random.Random) -> str | None:
    single = [o for o in scene.objects if scene.count(shape=o.shape) == 1]
    if not single:
        return None
    obj = rng.choice(single)
    return rng.choice([f"the only {obj.shape} in the picture is {obj.colour}",
                       f"the {obj.shape} is {obj.size} and {obj.colour}"])


def _cap_extreme(scene: Scene, rng: random.Random) -> str | None:
    ranks = [SIZES.index(o.size) for o in scene.objects]
    options = []
    for word, rank in (("biggest", max(ranks)), ("smallest", min(ranks))):
        if ranks.count(rank) == 1 and len(set(ranks)) > 1:
            options.append((word, scene.objects[ranks.index(rank)]))
    if not options:
        return None
    word, obj = rng.choice(options)
    return f"the {word} shape is {_a(obj.phrase())}"


CAPTION_TEMPLATES: dict[str, Template] = {
    "pair": _cap_pair, "total": _cap_total, "shape_count": _cap_shape_count,
    "colour_count": _cap_colour_count, "horizontal": _cap_horizontal,
    "vertical": _cap_vertical, "definite_relation": _cap_definite_relation,
    "bigger": _cap_bigger, "listing": _cap_listing, "one_among": _cap_one_among,
    "property": _cap_property, "extreme": _cap_extreme,
}
_ROUNDS = 6


def _fallback_captions(scene: Scene) -> Iterator[str]:
    """Captions every scene has, at least five distinct ones, in a fixed order."""
    n = number_word(len(scene.objects))
    yield f"there are {n} objects in the picture"
    yield f"the image contains {n} shapes in total"
    yield f"a picture with exactly {n} shapes"
    for obj in scene.objects:
        yield f"{_a(obj.phrase(size=True))} and " \
              f"{_counted(len(scene.objects) - 1, 'other shape', 'other shapes')}"


def make_captions(scene: Scene, rng: random.Random) -> tuple[str, ...]:
    """:data:`CAPTIONS_PER_IMAGE` distinct captions of ``scene``, from different templates
    where the scene allows it.

    Args:
        scene: the scene to describe.
        rng: the image's caption stream.
    """
    order = list(CAPTION_TEMPLATES.values())
    rng.shuffle(order)
    chosen: list[str] = []
    # round-robin over the shuffled templates: the first round gives five different kinds
    for _ in range(_ROUNDS):
        for template in order:
            caption = template(scene, rng)
            if caption is not None and caption not in chosen:
                chosen.append(caption)
            if len(chosen) == CAPTIONS_PER_IMAGE:
                return tuple(chosen)
    for caption in _fallback_captions(scene):
        if caption not in chosen:
            chosen.append(caption)
        if len(chosen) == CAPTIONS_PER_IMAGE:
            break
    return tuple(chosen)


# --- writing -------------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Made:
    image_id: int
    scene: Scene
    captions: tuple[str, ...]
    tasks: ImageTasks


def file_name(image_id: int) -> str:
    """The image's COCO-style file name, ``world_000000000042.png``."""
    return f"world_{image_id:012d}.png"


def _make_range(job: tuple[Path, int, int, int, int]) -> list[_Made]:
    """Generate, draw and save images ``start`` … ``stop - 1`` (one worker's share)."""
    from vlp.data.world_tasks import image_tasks

    images, seed, size, start, stop = job
    made = []
    for image_id in range(start, stop):
        scene = generate_scene(seed, image_id, size)
        render_scene(scene, seed, image_id).save(images / file_name(image_id), format="PNG")
        captions = make_captions(scene, _rng(seed, image_id, "text"))
        made.append(_Made(image_id, scene, captions,
                          image_tasks(seed, image_id, scene, captions)))
    return made


def _make_all(images: Path, n_images: int, seed: int, size: int, workers: int) -> list[_Made]:
    # several jobs per worker keep them all busy to the end; 250 images bound a job's memory
    chunk = max(1, min(250, -(-n_images // (4 * workers))))
    jobs = [(images, seed, size, start, min(start + chunk, n_images + 1))
            for start in range(1, n_images + 1, chunk)]
    if workers <= 1 or len(jobs) == 1:
        return [m for job in jobs for m in _make_range(job)]
    # spawn: the caller may hold torch's threads, which fork can deadlock
    with multiprocessing.get_context("spawn").Pool(min(workers, len(jobs))) as pool:
        return [m for part in pool.imap(_make_range, jobs) for m in part]


def split_sizes(n_images: int) -> dict[str, int]:
    """Images per split: 80 / 10 / 10 %, with at least one val and test image from 3 images."""
    held = max(1, n_images // 10) if n_images >= 3 else 0
    return {"train": n_images - 2 * held, "val": held, "test": held}


def _split_of(n_images: int) -> list[str]:
    sizes = split_sizes(n_images)
    return [name for name in SPLITS for _ in range(sizes[name])]


_LICENSES = [{"id": 1, "name": "CC0 1.0 (generated by vlp)",
              "url": "https://creativecommons.org/publicdomain/zero/1.0/"}]


def _info(seed: int) -> dict[str, Any]:
    return {"description": "vlp synthetic shapes world", "version": str(GENERATOR_VERSION),
            "contributor": "vlp.data.world", "seed": seed}


def _coco_images(made: list[_Made], size: int) -> list[dict[str, Any]]:
    return [{"id": m.image_id, "file_name": file_name(m.image_id), "width": size,
             "height": size, "license": 1} for m in made]


def _captions_json(made: list[_Made], seed: int, size: int) -> dict[str, Any]:
    annotations = [{"id": (m.image_id - 1) * CAPTIONS_PER_IMAGE + k + 1, "image_id": m.image_id,
                    "caption": c} for m in made for k, c in enumerate(m.captions)]
    return {"info": _info(seed), "licenses": _LICENSES, "images": _coco_images(made, size),
            "annotations": annotations}


def _first_ann_ids(made: list[_Made]) -> list[int]:
    """The instances annotation id of each image's first object; the others follow in order."""
    firsts, next_id = [], 1
    for m in made:
        firsts.append(next_id)
        next_id += len(m.scene.objects)
    return firsts


def _instances_json(made: list[_Made], seed: int, size: int) -> dict[str, Any]:
    annotations: list[dict[str, Any]] = []
    for m, first in zip(made, _first_ann_ids(made), strict=True):
        for k, obj in enumerate(m.scene.objects):
            x0, y0, _, _ = obj.box
            annotations.append({
                "id": first + k, "image_id": m.image_id,
                "category_id": category_id(obj.shape),
                "bbox": [float(x0), float(y0), float(obj.side), float(obj.side)],
                "area": round(obj.area, 2), "iscrowd": 0,
                "attributes": {"colour": obj.colour, "size": obj.size}})
    categories = [{"id": category_id(s), "name": s, "supercategory": SUPERCATEGORY}
                  for s in SHAPES]
    return {"info": _info(seed), "licenses": _LICENSES, "images": _coco_images(made, size),
            "annotations": annotations, "categories": categories}


def _tokens(caption: str) -> list[str]:
    return re.findall(r"[a-z0-9]+", caption.lower())


def _karpathy_json(made: list[_Made]) -> dict[str, Any]:
    splits = _split_of(len(made))
    images = []
    for m, split in zip(made, splits, strict=True):
        sentids = [(m.image_id - 1) * CAPTIONS_PER_IMAGE + k for k in range(len(m.captions))]
        sentences = [{"tokens": _tokens(c), "raw": c, "imgid": m.image_id - 1, "sentid": s}
                     for c, s in zip(m.captions, sentids, strict=True)]
        images.append({"filepath": "images", "sentids": sentids,
                       "filename": file_name(m.image_id), "imgid": m.image_id - 1,
                       "split": split, "sentences": sentences, "cocoid": m.image_id})
    return {"images": images, "dataset": "world"}


def _world_json(n_images: int, seed: int, size: int, tasks: list[str]) -> dict[str, Any]:
    return {"generator": "vlp.data.world", "version": GENERATOR_VERSION, "seed": seed,
            "images": n_images, "size": size, "splits": split_sizes(n_images),
            "shapes": list(SHAPES), "colours": list(COLOURS), "sizes": list(SIZES),
            "tasks": tasks}


def _write_json(path: Path, obj: Any, indent: int | None = None) -> None:
    # dicts are built in a fixed order and nothing holds a time, so equal seeds give equal bytes
    sep = (",", ":") if indent is None else (",", ": ")
    text = json.dumps(obj, indent=indent, separators=sep, ensure_ascii=False)
    path.write_text(text + "\n", encoding="utf-8")


def _write_files(root: Path, made: list[_Made], seed: int, size: int) -> None:
    from vlp.data.world_tasks import TaskImage, write_task_files

    (root / "annotations").mkdir()
    _write_json(root / "annotations" / "captions.json", _captions_json(made, seed, size))
    _write_json(root / "annotations" / "instances.json", _instances_json(made, seed, size))
    _write_json(root / "annotations" / "dataset_world.json", _karpathy_json(made))
    scenes = {str(m.image_id): m.scene.to_json() for m in made}
    _write_json(root / "scenes.json", {"version": GENERATOR_VERSION, "size": size,
                                       "scenes": scenes})
    images = [TaskImage(m.image_id, m.scene, m.tasks, split, first)
              for m, split, first in zip(made, _split_of(len(made)), _first_ann_ids(made),
                                         strict=True)]
    tasks = write_task_files(root, images, seed)
    _write_json(root / "world.json", _world_json(len(made), seed, size, tasks), indent=2)


def _check_make_args(out: Path, n_images: int, seed: int, size: int, workers: int,
                     overwrite: bool) -> None:
    if n_images < 1:
        raise VlpError(f"--images: expected at least 1, found {n_images}")
    if seed < 0:
        raise VlpError(f"--seed: expected a non-negative integer, found {seed}")
    if not MIN_SIZE <= size <= MAX_SIZE:
        raise VlpError(f"--size: expected {MIN_SIZE} to {MAX_SIZE} pixels, found {size}")
    if workers < 1:
        raise VlpError(f"--workers: expected at least 1, found {workers}")
    # the world replaces ``out`` as a whole; never replace something the user made
    claim_output(out, overwrite=overwrite)


def make_world(out: Path, n_images: int, seed: int = 0, size: int = 64,
               workers: int = 1, overwrite: bool = False) -> Path:
    """Generate a world of ``n_images`` images and write it to ``out``.

    Everything is built in a temporary directory beside ``out`` and renamed into place, so
    an interrupted run leaves nothing behind. The output is byte-identical for equal
    ``(n_images, seed, size)``, whatever ``workers`` is.

    Args:
        out: the world directory; must not exist or be empty, unless ``overwrite``.
        n_images: number of images (ids 1 … n_images).
        seed: the world's seed.
        size: image side in pixels.
        workers: processes that draw images.
        overwrite: replace an existing ``out`` (once the new world is complete).

    Returns:
        ``out``.

    Raises:
        VlpError: a bad argument, or ``out`` exists and is not empty.
    """
    out = Path(out)
    _check_make_args(out, n_images, seed, size, workers, overwrite)
    with atomic_path(out) as tmp:
        (tmp / "images").mkdir(parents=True)
        made = _make_all(tmp / "images", n_images, seed, size, workers)
        _write_files(tmp, made, seed, size)
    return out


# --- reading -------------------------------------------------------------------------------------

def _read_object(path: Path, entry: Any, where: str) -> WorldObject:
    entry = check_kind(path, entry, where, "object")
    values = {}
    for key, vocab in (("shape", SHAPES), ("colour", COLOURS), ("size", SIZES)):
        values[key] = json_field(path, entry, key, where, "string")
        if values[key] not in vocab:
            raise input_error(path, f"{where}.{key}", f"expected one of {', '.join(vocab)}, "
                                                      f"found {values[key]!r}")
    box = json_field(path, entry, "box", where, "list")
    if len(box) != 4:
        raise input_error(path, f"{where}.box", f"expected 4 integers, found {len(box)} values")
    x0, y0, x1, y1 = (check_kind(path, v, f"{where}.box[{i}]", "integer")
                      for i, v in enumerate(box))
    return WorldObject(values["shape"], values["colour"], values["size"], (x0, y0, x1, y1))


def load_scenes(world_dir: str | Path) -> dict[int, Scene]:
    """Read the scenes of a world made by :func:`make_world`.

    Args:
        world_dir: the world directory (holding ``scenes.json``).

    Returns:
        image id → scene, in id order.

    Raises:
        VlpError: ``scenes.json`` is missing or malformed.
    """
    path = Path(world_dir) / "scenes.json"
    doc = load_json(path)
    if not isinstance(doc, dict):
        raise input_error(path, None, "expected a JSON object with 'size' and 'scenes'")
    size = json_field(path, doc, "size", "", "integer")
    scenes: dict[int, Scene] = {}
    for key, objects in json_field(path, doc, "scenes", "", "object").items():
        if not key.isdigit():
            raise input_error(path, f"scenes.{key}", "expected an image id (digits)")
        where = f"scenes.{key}"
        listed = check_kind(path, objects, where, "list")
        scenes[int(key)] = Scene(tuple(_read_object(path, o, f"{where}[{i}]")
                                       for i, o in enumerate(listed)), size)
    return dict(sorted(scenes.items()))
