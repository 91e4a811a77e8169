"""The world's SNLI-VE (visual entailment) files.

**SNLI-VE** (``annotations/snli_ve_{train,dev,test}.jsonl``, val is "dev"): two captions of
each image are premises (``sentence1``); each gets one hypothesis per label, so labels are
balanced exactly. SNLI-VE took its labels from SNLI's text premise, so its "neutral" pairs are
often settled by the image after all; here every label is defined against the image (the
visual entailment task) and holds against the caption too:

- entailment: a statement the scene makes true (a count, "The star is green.", "There is a red
  circle.", "A red circle is to the left of a blue square.", "A star is bigger than a cross.");
- contradiction: a statement the scene makes false (a count off by one, a wrong colour, a
  missing object, a reversed relation or size between uniquely named objects), and one in five
  an unobservable property of an object that is not there ("A purple cross is made of wood.");
- neutral: an unobservable property (material, weight, temperature, motion, ownership, age,
  price) of objects that are there ("A red circle is made of glass.", "A blue square is heavier
  than a green star."): the world draws flat shapes, so no image or caption settles it, while
  every object it names exists. Since those words also appear in contradictions, the label
  still needs the image.

``pairID`` is ``{captionID}r1{e|n|c}`` and ``captionID`` ``{file}#{caption index}``, as in
SNLI; ``Flikr30kID`` (sic) is the image's file name.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from vlp.world.files import SPLITS, file_name, write_jsonl
from vlp.world.generate import image_rng
from vlp.world.scene import Scene
from vlp.world.tasks.common import DEV, TRIES, TaskImage, absent_kind, named_bigger, named_pairs
from vlp.world.vocab import (
    COLOURS,
    NUMBER_WORDS,
    OPPOSITE,
    PLURALS,
    RELATION_PHRASES,
    SHAPES,
    number_word,
    with_article,
)

VE_LABELS = ("entailment", "neutral", "contradiction")
PREMISES_PER_IMAGE = 2
UNDEPICTED = ("is made of wood", "is made of paper", "is made of metal", "is made of glass",
              "is hollow", "is heavy", "is warm to the touch", "is spinning", "is magnetic",
              "belongs to a child", "was cut out of cardboard", "is about to fall over")
UNDEPICTED_BETWEEN = ("is heavier than", "is older than", "is more expensive than",
                      "is warmer than")
_ABSENT_IN_CONTRADICTIONS = 0.2


def _sentence(text: str) -> str:
    return text[0].upper() + text[1:] + "."


def _there_are(n: int, noun: str, plural: str) -> str:
    if n == 0:
        return f"there are no {plural}"
    if n == 1:
        return f"there is exactly one {noun}"
    return f"there are exactly {number_word(n)} {plural}"


def _off_by_one(n: int, rng: random.Random) -> int:
    """A wrong count next to ``n``, never beyond the number words ("six")."""
    options = [m for m in (n - 1, n + 1) if 0 <= m < len(NUMBER_WORDS)]
    return rng.choice(options)


def _h_count(scene: Scene, rng: random.Random, true: bool) -> str | None:
    shape = rng.choice([o.shape for o in scene.objects] if rng.random() < 0.7 else SHAPES)
    n = scene.count(shape)
    return _there_are(n if true else _off_by_one(n, rng), shape, PLURALS[shape])


def _h_colour_count(scene: Scene, rng: random.Random, true: bool) -> str | None:
    colour = rng.choice([o.colour for o in scene.objects])
    n = scene.count(colour=colour)
    return _there_are(n if true else _off_by_one(n, rng), f"{colour} shape", f"{colour} shapes")


def _h_total(scene: Scene, rng: random.Random, true: bool) -> str | None:
    n = len(scene.objects)
    return _there_are(n if true else _off_by_one(n, rng), "shape", "shapes")


def _h_colour(scene: Scene, rng: random.Random, true: bool) -> str | None:
    single = [o for o in scene.objects if scene.count(o.shape) == 1]
    if not single:
        return None
    obj = rng.choice(single)
    colour = obj.colour if true else rng.choice([c for c in COLOURS if c != obj.colour])
    return f"the {obj.shape} is {colour}"


def _h_exists(scene: Scene, rng: random.Random, true: bool) -> str | None:
    phrase = rng.choice(scene.objects).phrase() if true else " ".join(absent_kind(scene, rng))
    return f"there is {with_article(phrase)}"


def _h_relation(scene: Scene, rng: random.Random, true: bool) -> str | None:
    if true:  # existential: some such pair holds
        pairs = scene.related_pairs()
        if not pairs:
            return None
        a, rel, b = rng.choice(pairs)
        return f"{with_article(a.phrase())} is {RELATION_PHRASES[rel]} {with_article(b.phrase())}"
    named = named_pairs(scene)  # definite, so the reverse of what holds is false
    if not named:
        return None
    na, rel, nb = rng.choice(named)
    return f"{na} is {RELATION_PHRASES[OPPOSITE[rel]]} {nb}"


def _h_bigger(scene: Scene, rng: random.Random, true: bool) -> str | None:
    if true:
        pairs = [(a, b) for a in scene.objects for b in scene.objects if scene.bigger(a, b)]
        if not pairs:
            return None
        a, b = rng.choice(pairs)
        return f"{with_article(a.phrase())} is bigger than {with_article(b.phrase())}"
    named = named_bigger(scene)
    if not named:
        return None
    na, nb = rng.choice(named)
    return f"{nb} is bigger than {na}"


def _h_undepicted(scene: Scene, rng: random.Random) -> str | None:
    """Neutral: an unobservable property of an object that is there."""
    return f"{with_article(rng.choice(scene.objects).phrase())} {rng.choice(UNDEPICTED)}"


def _h_undepicted_between(scene: Scene, rng: random.Random) -> str | None:
    """Neutral: an unobservable comparison of two objects that are there."""
    a, b = rng.sample(scene.objects, 2)
    if a.phrase() == b.phrase():
        return None
    return f"{with_article(a.phrase())} {rng.choice(UNDEPICTED_BETWEEN)} {with_article(b.phrase())}"


def _h_absent_undepicted(scene: Scene, rng: random.Random) -> str | None:
    """Contradiction: an unobservable property of an object that is not there."""
    return f"{with_article(' '.join(absent_kind(scene, rng)))} {rng.choice(UNDEPICTED)}"


_FACTS = (_h_count, _h_colour_count, _h_total, _h_colour, _h_exists, _h_relation, _h_bigger)
_NEUTRALS = (_h_undepicted, _h_undepicted_between)


def make_hypothesis(scene: Scene, rng: random.Random, label: str,
                    taken: set[str]) -> str | None:
    """A hypothesis about ``scene`` with gold ``label`` (one of :data:`VE_LABELS`), not in
    ``taken``; None if none was found."""
    for _ in range(TRIES):
        if label == "neutral":
            text = rng.choice(_NEUTRALS)(scene, rng)
        elif label == "contradiction" and rng.random() < _ABSENT_IN_CONTRADICTIONS:
            text = _h_absent_undepicted(scene, rng)
        else:
            text = rng.choice(_FACTS)(scene, rng, label == "entailment")
        if text is not None and _sentence(text) not in taken:
            return _sentence(text)
    return None


def ve_entries(seed: int, image_id: int, scene: Scene,
               captions: Sequence[str]) -> list[dict[str, Any]]:
    """The SNLI-VE records of one image (from its ``snli_ve`` stream)."""
    rng = image_rng(seed, image_id, "snli_ve")
    name = file_name(image_id)
    taken: set[str] = set()
    entries = []
    for k in sorted(rng.sample(range(len(captions)), PREMISES_PER_IMAGE)):
        for label in rng.sample(VE_LABELS, len(VE_LABELS)):
            hypothesis = make_hypothesis(scene, rng, label, taken)
            if hypothesis is None:
                continue
            taken.add(hypothesis)
            entries.append({"annotator_labels": [label], "captionID": f"{name}#{k}",
                            "gold_label": label, "pairID": f"{name}#{k}r1{label[0]}",
                            "sentence1": captions[k], "sentence2": hypothesis,
                            "Flikr30kID": name})
    return entries


def write_snli_ve(ann: Path, images: Sequence[TaskImage]) -> list[str]:
    """Write ``snli_ve_{train,dev,test}.jsonl``; returns their names."""
    written = []
    for split in SPLITS:
        name = f"snli_ve_{DEV[split]}.jsonl"
        write_jsonl(ann / name, [e for im in images if im.split == split
                                 for e in im.tasks.snli_ve])
        written.append(name)
    return written
