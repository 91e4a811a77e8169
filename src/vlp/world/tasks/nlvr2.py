"""The world's NLVR2 files.

**NLVR2** (``annotations/nlvr2_{train,dev,test}.json``, JSON lines): the images of a split are
taken in id order in sets of eight (a last set of fewer than four joins the one before);
images ``2p`` and ``2p + 1`` of a set are its pair ``p`` (left, right). Each set gets three
sentences about a pair of scenes, each judged on every pair of the set, as NLVR2 does: the
identifier is ``{split}-{set_id}-{pair_id}-{sentence_id}``, and the examples that share
``{split}-{set_id}-{sentence_id}`` are one sentence over different pairs (NLVR2's consistency
groups). Sentences are chosen true on half of a set's pairs, which balances the labels. The
world does not copy its images to NLVR2's ``{identifier less sentence}-img{0,1}.png`` names:
``left_url``/``right_url`` and ``left_image``/``right_image`` all hold the world file names.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vlp.world.files import SPLITS, file_name, write_jsonl
from vlp.world.generate import image_rng
from vlp.world.scene import Scene
from vlp.world.tasks.common import DEV, TaskImage
from vlp.world.vocab import PLURALS, RELATION_PHRASES, RELATIONS, SHAPES, number_word, with_article

SET_SIZE = 8
SENTENCES_PER_SET = 3
_CANDIDATES = 40  # statements drawn per set, of which the best balanced are kept


@dataclass(frozen=True)
class Statement:
    """A sentence about a pair of images and the test of its truth on ``(left, right)``."""

    text: str
    holds: Callable[[Scene, Scene], bool]


@dataclass(frozen=True)
class _Pool:
    """What a set's scenes show, so that most sentences talk about things that are there."""

    shapes: tuple[str, ...]
    colours: tuple[str, ...]
    kinds: tuple[tuple[str, str], ...]  # (colour, shape)

    def shape(self, rng: random.Random) -> str:
        return rng.choice(self.shapes if rng.random() < 0.8 else SHAPES)

    def phrase(self, rng: random.Random) -> tuple[str | None, str]:
        """``(colour or None, shape)`` of a noun phrase."""
        if rng.random() < 0.5:
            return None, self.shape(rng)
        return rng.choice(self.kinds)


def _pool(scenes: Sequence[Scene]) -> _Pool:
    objects = [o for s in scenes for o in s.objects]
    return _Pool(tuple(sorted({o.shape for o in objects})),
                 tuple(sorted({o.colour for o in objects})),
                 tuple(sorted({(o.colour, o.shape) for o in objects})))


def _words(colour: str | None, shape: str) -> str:
    return shape if colour is None else f"{colour} {shape}"


def _has(scene: Scene, colour: str | None, shape: str) -> bool:
    return scene.count(shape, colour) > 0


def _pick(left: Scene, right: Scene, side: str) -> Scene:
    return left if side == "left" else right


def _s_side_count(rng: random.Random, pool: _Pool) -> Statement:
    side, shape, n = rng.choice(("left", "right")), pool.shape(rng), rng.randint(1, 3)
    noun = shape if n == 1 else PLURALS[shape]
    return Statement(f"The {side} image contains exactly {number_word(n)} {noun}.",
                     lambda left, right: _pick(left, right, side).count(shape) == n)


def _s_more(rng: random.Random, pool: _Pool) -> Statement:
    side = rng.choice(("left", "right"))
    other = "right" if side == "left" else "left"
    kind = rng.choice(("colour", "shape", "total"))
    if kind == "total":
        text = f"The {side} image contains more shapes than the {other} image."
        shape, colour = None, None
    elif kind == "shape":
        shape, colour = pool.shape(rng), None
        text = f"There are more {PLURALS[shape]} in the {side} image than in the {other} image."
    else:
        shape, colour = None, rng.choice(pool.colours)
        text = f"There are more {colour} shapes in the {side} image than in the {other} image."
    return Statement(text, lambda left, right: _pick(left, right, side).count(shape, colour)
                     > _pick(left, right, other).count(shape, colour))


_QUANTIFIERS = (("Both images contain", 2), ("Exactly one image contains", 1),
                ("Neither image contains", 0))


def _s_images_containing(rng: random.Random, pool: _Pool) -> Statement:
    colour, shape = pool.phrase(rng)
    quantifier, wanted = rng.choice(_QUANTIFIERS)
    return Statement(f"{quantifier} {with_article(_words(colour, shape))}.",
                     lambda left, right: _has(left, colour, shape) + _has(right, colour, shape)
                     == wanted)


def _s_together(rng: random.Random, pool: _Pool) -> Statement:
    shape, n = pool.shape(rng), rng.randint(1, 4)
    noun = shape if n == 1 else PLURALS[shape]
    verb = "is" if n == 1 else "are"
    return Statement(f"There {verb} exactly {number_word(n)} {noun} in the two images together.",
                     lambda left, right: left.count(shape) + right.count(shape) == n)


def _s_relation(rng: random.Random, pool: _Pool) -> Statement:
    (ca, sa), (cb, sb), rel = pool.phrase(rng), pool.phrase(rng), rng.choice(RELATIONS)

    def holds_in(scene: Scene) -> bool:
        return any(rel in scene.relation(a, b) for a in scene.objects_matching(sa, ca)
                   for b in scene.objects_matching(sb, cb))
    return Statement(f"In at least one image, {with_article(_words(ca, sa))} is "
                     f"{RELATION_PHRASES[rel]} {with_article(_words(cb, sb))}.",
                     lambda left, right: holds_in(left) or holds_in(right))


_STATEMENTS = (_s_side_count, _s_more, _s_images_containing, _s_together, _s_relation)


def _nlvr2_sets(images: Sequence[TaskImage]) -> list[list[TaskImage]]:
    """Sets of :data:`SET_SIZE` images in id order; a last set of fewer than four joins the
    one before; a set needs one pair."""
    sets = [list(images[i:i + SET_SIZE]) for i in range(0, len(images), SET_SIZE)]
    if len(sets) > 1 and len(sets[-1]) < SET_SIZE // 2:
        sets[-2].extend(sets.pop())
    return [s for s in sets if len(s) >= 2]


def choose_statements(rng: random.Random, pairs: Sequence[tuple[Scene, Scene]],
                      surplus: int = 0) -> list[tuple[str, list[bool]]]:
    """:data:`SENTENCES_PER_SET` distinct sentences with their truth on each pair.

    Each is true on as near half the pairs as the candidates allow; where none is exactly
    balanced, the one that brings ``surplus`` (True minus False labels so far) nearer zero.
    """
    pool = _pool([s for pair in pairs for s in pair])
    candidates: dict[str, list[bool]] = {}
    for _ in range(_CANDIDATES):
        statement = rng.choice(_STATEMENTS)(rng, pool)
        if statement.text not in candidates:
            candidates[statement.text] = [statement.holds(left, right) for left, right in pairs]
    chosen: list[tuple[str, list[bool]]] = []
    for k in range(min(SENTENCES_PER_SET, len(candidates))):
        target = (len(pairs) + k % 2) // 2
        lean = 1 if surplus > 0 else -1

        def imbalance(text: str, target: int = target, lean: int = lean) -> tuple[int, int]:
            excess = sum(candidates[text]) - target
            return abs(excess), lean * excess
        text = min((t for t in candidates if t not in dict(chosen)), key=imbalance)
        chosen.append((text, candidates[text]))
        surplus += 2 * sum(candidates[text]) - len(pairs)
    return chosen


def _nlvr2_entries(images: Sequence[TaskImage], seed: int, split: str) -> list[dict[str, Any]]:
    entries = []
    surplus = 0
    for set_id, members in enumerate(_nlvr2_sets(images)):
        pairs = [(members[2 * p], members[2 * p + 1]) for p in range(len(members) // 2)]
        rng = image_rng(seed, members[0].image_id, "nlvr2")
        chosen = choose_statements(rng, [(a.scene, b.scene) for a, b in pairs], surplus)
        surplus += sum(2 * sum(truths) - len(truths) for _, truths in chosen)
        for sentence_id, (text, truths) in enumerate(chosen):
            for pair_id, ((left, right), truth) in enumerate(zip(pairs, truths, strict=True)):
                names = file_name(left.image_id), file_name(right.image_id)
                entries.append({"identifier": f"{DEV[split]}-{set_id}-{pair_id}-{sentence_id}",
                                "sentence": text, "label": str(truth), "left_url": names[0],
                                "right_url": names[1], "left_image": names[0],
                                "right_image": names[1]})
    return entries


def write_nlvr2(ann: Path, images: Sequence[TaskImage], seed: int) -> list[str]:
    """Write ``nlvr2_{train,dev,test}.json``; returns their names."""
    written = []
    for split in SPLITS:
        name = f"nlvr2_{DEV[split]}.json"
        write_jsonl(ann / name, _nlvr2_entries([im for im in images if im.split == split],
                                               seed, split))
        written.append(name)
    return written
