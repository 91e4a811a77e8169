"""Scene semantics: the objects of one image and the questions they answer (counts, relations,
sizes, referring phrases), and ``scenes.json``, where a world keeps them.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vlp.data.readers import check_kind, json_field, load_json
from vlp.errors import input_error
from vlp.world.vocab import COLOURS, RELATIONS, SHAPES, SIZES

_RELATION_MARGIN = 0.04  # box gap (fraction of the image side) below which no relation is said
STAR_INNER = 0.45  # inner / outer radius of the five-pointed star
# a star of outer radius R is ten triangles of area R·r·sin(36°)/2, with R = side / 2
_STAR_FILL = 5 * STAR_INNER * math.sin(math.pi / 5) / 4


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


def star_points(box: tuple[int, int, int, int]) -> list[tuple[float, float]]:
    """The ten corners of the five-pointed star drawn in ``box``."""
    x0, y0, x1, _ = box
    r = (x1 - 1 - x0) / 2
    # a star is shorter than wide (top point to bottom points is r(1 + cos 36°)); centre it
    cx, cy = x0 + r, y0 + r + r * (1 - math.cos(math.pi / 5)) / 2
    points = []
    for k in range(10):
        radius = r if k % 2 == 0 else r * STAR_INNER
        angle = -math.pi / 2 + k * math.pi / 5
        points.append((cx + radius * math.cos(angle), cy + radius * math.sin(angle)))
    return points


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
    """Read the scenes of a world made by :func:`~vlp.world.make.make_world`.

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
