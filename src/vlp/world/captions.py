"""Captions: :data:`CAPTIONS_PER_IMAGE` distinct true sentences per scene, from templates.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator

from vlp.world.scene import Scene, WorldObject
from vlp.world.vocab import PLURALS, RELATION_PHRASES, SIZES, number_word, with_article

CAPTIONS_PER_IMAGE = 5


Template = Callable[[Scene, random.Random], str | None]


def _np(obj: WorldObject, rng: random.Random) -> str:
    """An indefinite noun phrase, with the size word half of the time."""
    return with_article(obj.phrase(size=rng.random() < 0.5))


def _counted(n: int, noun: str, plural: str) -> str:
    return f"{number_word(n)} {noun if n == 1 else plural}"


def _cap_pair(scene: Scene, rng: random.Random) -> str | None:
    a, b = rng.sample(scene.objects, 2)
    with_size = rng.random() < 0.5
    pair = f"{with_article(a.phrase(size=with_size))} and {with_article(b.phrase(size=with_size))}"
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
        name_a, name_b = with_article(a.phrase()), with_article(b.phrase())
    if rng.random() < 0.5:
        return f"{name_a} is bigger than {name_b}"
    return f"{name_b} is smaller than {name_a}"


def _cap_listing(scene: Scene, rng: random.Random) -> str | None:
    names = [with_article(o.phrase()) for o in rng.sample(scene.objects, len(scene.objects))]
    listed = ", ".join(names[:-1]) + " and " + names[-1]
    return rng.choice(["a scene with {}", "an image of {}", "{}"]).format(listed)


def _cap_one_among(scene: Scene, rng: random.Random) -> str | None:
    obj = rng.choice(scene.objects)
    others = _counted(len(scene.objects) - 1, "other shape", "other shapes")
    link = rng.choice(["and", "among"]) if len(scene.objects) > 2 else "and"
    return f"{with_article(obj.phrase(size=True))} {link} {others}"


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
    return f"the {word} shape is {with_article(obj.phrase())}"


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
        yield f"{with_article(obj.phrase(size=True))} and " \
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
