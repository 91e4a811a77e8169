"""Random scenes: each image's layout drawn from its own random stream ``(seed, image_id)``.
"""

from __future__ import annotations

import random

from vlp.world.scene import Scene, WorldObject
from vlp.world.vocab import (
    COLOURS,
    GENERATOR_VERSION,
    MAX_OBJECTS,
    MIN_OBJECTS,
    SHAPES,
    SIZE_FRACTIONS,
    SIZES,
)

_GAP = 2  # pixels kept free between boxes, so shapes never touch
_PLACE_TRIES = 50


def image_rng(seed: int, image_id: int, stream: str) -> random.Random:
    """The random stream ``stream`` of image ``image_id`` of the world with ``seed``."""
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
    rng = image_rng(seed, image_id, "scene")
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
