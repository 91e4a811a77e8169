"""The world's downstream task files, derived from :class:`~vlp.data.world.Scene` alone.

Every file is in its dataset's published format, so the readers of the real data read it
unchanged. Each image draws from its own random streams (``vqa``, ``snli_ve``, ``refcoco``,
``vcr``; ``nlvr2`` per set of images), so the files are byte-identical for equal seeds. The
split of an image is its Karpathy split (retrieval uses that split file directly).

**VQA v2** (``annotations/vqa_{train,val,test}_{questions,annotations}.json``): about five
questions per image, question id ``image_id * 1000 + k`` as in VQA: two yes/no ("Is there a
red circle?", "Is the red circle to the left of the blue square?", "Is the star bigger than
the cross?"; the answer is drawn first, so yes and no are balanced; a "no" relation or size
question reverses one that holds, never a pair too close to call), one number ("How many
circles are there?"), two other ("What color is the small circle?", "What shape is above the
star?", "What size is the red square?"; asked only where the phrase, or the relation with
:meth:`Scene.sole_related`, picks out one object). ``question_type`` is the longest
:data:`QUESTION_TYPES` entry the question starts with (VQA's prefixes plus "what shape is" and
"what size is the"). Ten annotators answer: most give the true answer, a fifth of them in
another surface form that VQA's answer normalisation maps back ("Yes.", "two", "a circle",
"Red"); on :data:`DISAGREEMENT` of the questions 1–4 of them give a near miss instead (the
opposite yes/no, a count off by one, a neighbouring colour, shape or size), more often with
confidence "maybe" or "no". ``multiple_choice_answer`` is the most common normalised answer,
always the true one (at least six annotators give it).

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

**NLVR2** (``annotations/nlvr2_{train,dev,test}.json``, JSON lines): the images of a split are
taken in id order in sets of eight (a last set of fewer than four joins the one before);
images ``2p`` and ``2p + 1`` of a set are its pair ``p`` (left, right). Each set gets three
sentences about a pair of scenes, each judged on every pair of the set, as NLVR2 does: the
identifier is ``{split}-{set_id}-{pair_id}-{sentence_id}``, and the examples that share
``{split}-{set_id}-{sentence_id}`` are one sentence over different pairs (NLVR2's consistency
groups). Sentences are chosen true on half of a set's pairs, which balances the labels. The
world does not copy its images to NLVR2's ``{identifier less sentence}-img{0,1}.png`` names:
``left_url``/``right_url`` and ``left_image``/``right_image`` all hold the world file names.

**RefCOCO** (``annotations/refs(world).p``, beside ``instances.json`` as REFER expects): one
ref per object that :meth:`Scene.referring_expressions` can pick out, with 1–3 of those
expressions; ``ann_id`` is the object's id in ``instances.json``. Splits follow the Karpathy
split, test images divided as RefCOCO divides people from other objects by image: testA holds
the test images where some shape occurs twice or more (so an expression must tell same-shape
objects apart), testB the rest.

**VCR** (``annotations/vcr_{train,val,test}.jsonl`` and ``vcr_metadata/{image}.json``): about
one question per two images, "Which shape is to the left of [j]?" where exactly one object
holds that relation (:meth:`Scene.sole_related`). Answers "[i] is." — one right, three wrong
(other objects first, then "No shape is.", "Every shape is.", "[i] and [k] are."); rationales
"[x] is red and its box is to the left of [y]'s box." — one true, three false (wrong colour,
wrong object, reversed). Object references are lists of indices into ``objects`` (every object
of the scene, in drawing order). ``img_fn`` is relative to ``images/``, ``metadata_fn`` to
``vcr_metadata/``; the metadata holds VCR's ``boxes`` (``[x1, y1, x2, y2, score]``), ``segms``
(each object's outline polygon), ``names``, ``width`` and ``height``. Provenance fields
(``answer_sources``, ``match_fold``, …) are plausible constants.
"""

from __future__ import annotations

import bisect
import functools
import json
import math
import pickle
import random
import re
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vlp.data.world import (
    _LICENSES,
    COLOURS,
    NUMBER_WORDS,
    OPPOSITE,
    PLURALS,
    RELATION_PHRASES,
    RELATIONS,
    SHAPES,
    SIZES,
    SPLITS,
    Scene,
    WorldObject,
    _a,
    _info,
    _rng,
    _star_points,
    _write_json,
    category_id,
    file_name,
    number_word,
)


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


def image_tasks(seed: int, image_id: int, scene: Scene, captions: Sequence[str]) -> ImageTasks:
    """The task content of image ``image_id`` (from its own random streams).

    Args:
        seed: the world's seed.
        image_id: the image's id.
        scene: its scene.
        captions: its captions, in ``captions.json`` order (SNLI-VE's premises).
    """
    return ImageTasks(_vqa_entries(seed, image_id, scene),
                      _ve_entries(seed, image_id, scene, captions),
                      _ref_expressions(seed, image_id, scene), _vcr_item(seed, image_id, scene))


@dataclass(frozen=True)
class TaskImage:
    """One image of a world, as the task files need it.

    Attributes:
        image_id: the image's id.
        scene: its scene.
        tasks: its task content (:func:`image_tasks`).
        split: its Karpathy split (train / val / test).
        first_ann_id: the ``instances.json`` id of ``scene.objects[0]``; the others follow.
    """

    image_id: int
    scene: Scene
    tasks: ImageTasks
    split: str
    first_ann_id: int


DEV = {"train": "train", "val": "dev", "test": "test"}  # SNLI-VE's and NLVR2's split names
_TRIES = 8  # random draws of a template before a slot is given up


def _sentence(text: str) -> str:
    return text[0].upper() + text[1:] + "."


def _index(scene: Scene, obj: WorldObject) -> int:
    return next(k for k, o in enumerate(scene.objects) if o is obj)


def _named_pairs(scene: Scene) -> list[tuple[str, str, str]]:
    """``(phrase_a, relation, phrase_b)`` for each relation between uniquely named objects."""
    pairs = [(scene.attribute_description(a), rel, scene.attribute_description(b))
             for a, rel, b in scene.related_pairs()]
    return [(a, rel, b) for a, rel, b in pairs if a is not None and b is not None]


def _named_bigger(scene: Scene) -> list[tuple[str, str]]:
    """``(phrase_a, phrase_b)`` for uniquely named objects where ``a`` is bigger."""
    pairs = [(scene.attribute_description(a), scene.attribute_description(b))
             for a in scene.objects for b in scene.objects if scene.bigger(a, b)]
    return [(a, b) for a, b in pairs if a is not None and b is not None]


def _absent(scene: Scene, rng: random.Random) -> tuple[str, str]:
    """A ``(colour, shape)`` the scene has no object of."""
    missing = [(c, s) for c in COLOURS for s in SHAPES if scene.count(s, c) == 0]
    return rng.choice(missing)


# --- VQA v2 ---------------------------------------------------------------------------------------

QUESTION_TYPES = ("is there a", "is there", "is the", "how many", "what color is the",
                  "what shape is", "what size is the", "what", "is")
DISAGREEMENT = 0.15  # share of questions on which some annotators give another answer
ANNOTATORS = 10
_VARIANT = 0.2  # share of agreeing answers written in another surface form
_CONFIDENCES = ("yes", "maybe", "no")
_AGREEING_CONFIDENCE = (0.88, 0.98)  # cumulative: yes 88 %, maybe 10 %, no 2 %
_DISAGREEING_CONFIDENCE = (0.3, 0.75)  # yes 30 %, maybe 45 %, no 25 %
_NEAR_COLOURS = {"red": ("orange", "pink"), "green": ("yellow", "blue"),
                 "blue": ("purple", "green"), "yellow": ("orange", "white"),
                 "purple": ("blue", "pink"), "orange": ("red", "yellow"),
                 "pink": ("red", "purple"), "white": ("yellow", "pink")}
_NEAR_SHAPES = {"circle": ("diamond", "square"), "square": ("diamond", "circle"),
                "triangle": ("diamond", "star"), "diamond": ("square", "triangle"),
                "star": ("cross", "triangle"), "cross": ("star", "square")}
_NEAR_SIZES = {"small": ("medium",), "medium": ("small", "large"), "large": ("medium",)}


@dataclass(frozen=True)
class Question:
    """A VQA question with its true answer and VQA answer type."""

    text: str
    answer: str
    answer_type: str  # "yes/no" | "number" | "other"


def _yes_no(text: str, yes: bool) -> Question:
    return Question(text, "yes" if yes else "no", "yes/no")


def _q_exists(scene: Scene, rng: random.Random, yes: bool) -> Question | None:
    with_colour = rng.random() < 0.7
    if yes:
        obj = rng.choice(scene.objects)
        phrase = obj.phrase(colour=with_colour)
    elif with_colour:
        phrase = " ".join(_absent(scene, rng))
    else:
        missing = [s for s in SHAPES if scene.count(s) == 0]
        if not missing:
            return None
        phrase = rng.choice(missing)
    return _yes_no(f"Is there {_a(phrase)}?", yes)


def _q_relation(scene: Scene, rng: random.Random, yes: bool) -> Question | None:
    pairs = _named_pairs(scene)
    if not pairs:
        return None
    a, rel, b = rng.choice(pairs)
    said = rel if yes else OPPOSITE[rel]  # the reverse of a relation that holds is false
    return _yes_no(f"Is {a} {RELATION_PHRASES[said]} {b}?", yes)


def _q_bigger(scene: Scene, rng: random.Random, yes: bool) -> Question | None:
    pairs = _named_bigger(scene)
    if not pairs:
        return None
    a, b = rng.choice(pairs)
    return _yes_no(f"Is {a} bigger than {b}?" if yes else f"Is {b} bigger than {a}?", yes)


def _q_count(scene: Scene, rng: random.Random, yes: bool) -> Question | None:
    kind = rng.choice(("shape", "shape", "colour", "size", "total"))
    if kind == "total":
        return Question("How many shapes are there?", str(len(scene.objects)), "number")
    present = rng.random() < 0.75  # mostly ask about what is there; sometimes the answer is 0
    if kind == "shape":
        shape = rng.choice([o.shape for o in scene.objects] if present else SHAPES)
        return Question(f"How many {PLURALS[shape]} are there?", str(scene.count(shape)),
                        "number")
    if kind == "colour":
        colour = rng.choice([o.colour for o in scene.objects] if present else list(COLOURS))
        return Question(f"How many {colour} shapes are there?",
                        str(scene.count(colour=colour)), "number")
    size = rng.choice([o.size for o in scene.objects] if present else SIZES)
    return Question(f"How many {size} shapes are there?", str(scene.count(size=size)), "number")


def _q_colour(scene: Scene, rng: random.Random, yes: bool) -> Question | None:
    named = [(o, scene.attribute_description(o, omit="colour")) for o in scene.objects]
    options = [(o, name) for o, name in named if name is not None]
    if not options:
        return None
    obj, name = rng.choice(options)
    return Question(f"What color is {name}?", obj.colour, "other")


def _q_size(scene: Scene, rng: random.Random, yes: bool) -> Question | None:
    named = [(o, scene.attribute_description(o, omit="size")) for o in scene.objects]
    options = [(o, name) for o, name in named if name is not None]
    if not options:
        return None
    obj, name = rng.choice(options)
    return Question(f"What size is {name}?", obj.size, "other")


def _q_shape_related(scene: Scene, rng: random.Random, yes: bool) -> Question | None:
    options = []
    for landmark in scene.objects:
        name = scene.attribute_description(landmark)
        for rel in RELATIONS:
            sole = scene.sole_related(landmark, rel) if name is not None else None
            if sole is not None:
                options.append((sole, rel, name))
    if not options:
        return None
    obj, rel, name = rng.choice(options)
    return Question(f"What shape is {RELATION_PHRASES[rel]} {name}?", obj.shape, "other")


QuestionTemplate = Callable[[Scene, random.Random, bool], Question | None]
_QUESTION_TEMPLATES: dict[str, tuple[QuestionTemplate, ...]] = {
    "yes/no": (_q_exists, _q_exists, _q_relation, _q_bigger),
    "number": (_q_count,),
    "other": (_q_colour, _q_size, _q_shape_related),
}
_QUESTION_SLOTS = ("yes/no", "yes/no", "number", "other", "other")


def _ask(scene: Scene, rng: random.Random, answer_type: str,
         taken: set[str]) -> Question | None:
    yes = rng.random() < 0.5  # yes/no: the answer is drawn first, so both are equally common
    for _ in range(_TRIES):
        question = rng.choice(_QUESTION_TEMPLATES[answer_type])(scene, rng, yes)
        if question is not None and question.text not in taken:
            return question
    return None


def make_questions(scene: Scene, rng: random.Random) -> list[Question]:
    """About five distinct questions about ``scene``: two yes/no, one number, two other (a
    number question stands in for an "other" one the scene cannot answer)."""
    chosen: list[Question] = []
    for slot in _QUESTION_SLOTS:
        taken = {q.text for q in chosen}
        question = _ask(scene, rng, slot, taken)
        if question is None and slot == "other":
            question = _ask(scene, rng, "number", taken)
        if question is not None:
            chosen.append(question)
    return chosen


def question_type(question: str) -> str:
    """VQA's ``question_type``: the longest of :data:`QUESTION_TYPES` the question begins with
    (whole words)."""
    words = question.lower().rstrip("?").split()
    matches = [t for t in QUESTION_TYPES if words[:len(t.split())] == t.split()]
    return max(matches, key=len) if matches else "none of the above"


_PUNCT = (";", "/", "[", "]", '"', "{", "}", "(", ")", "=", "+", "\\", "_", "-", ">", "<",
          "@", "`", ",", "?", "!")
_DIGITS = {"none": "0", "zero": "0", "one": "1", "two": "2", "three": "3", "four": "4",
           "five": "5", "six": "6", "seven": "7", "eight": "8", "nine": "9", "ten": "10"}
_PERIOD = re.compile(r"(?!<=\d)(\.)(?!\d)")  # sic: the official pattern, quirk and all
_COMMA = re.compile(r"(\d)(,)(\d)")


@functools.lru_cache(maxsize=4096)  # annotators write few distinct strings
def normalize_answer(answer: str) -> str:
    """An answer as the official VQA evaluation compares it (``processPunctuation`` then
    ``processDigitArticle``, less the contraction table, which no world answer needs)."""
    text = answer.replace("\n", " ").replace("\t", " ").strip()
    out = text
    for p in _PUNCT:
        if p + " " in text or " " + p in text or _COMMA.search(text) is not None:
            out = out.replace(p, "")
        else:
            out = out.replace(p, " ")
    out = _PERIOD.sub("", out)
    words = [_DIGITS.get(w, w) for w in out.lower().split()]
    return " ".join(w for w in words if w not in ("a", "an", "the"))


def _surface(answer: str, answer_type: str, rng: random.Random) -> str:
    """``answer`` as an annotator might type it; normalises back to ``answer``."""
    if rng.random() >= _VARIANT:
        return answer
    if answer_type == "number":
        return rng.choice([number_word(int(answer)), answer + " ", answer + "."])
    forms = [answer.capitalize(), answer + ".", answer.capitalize() + ".", answer + " "]
    if answer in SHAPES:
        forms.append(_a(answer))
    return rng.choice(forms)


def _near_miss(question: Question, rng: random.Random) -> str:
    """A genuinely different answer an annotator might give."""
    answer = question.answer
    if question.answer_type == "yes/no":
        return "no" if answer == "yes" else "yes"
    if question.answer_type == "number":
        n = int(answer)
        return str(n + 1 if n == 0 else rng.choice((n - 1, n + 1)))
    for near in (_NEAR_COLOURS, _NEAR_SHAPES, _NEAR_SIZES):
        if answer in near:
            return rng.choice(near[answer])
    raise ValueError(f"no near miss for answer {answer!r}")


def annotate(question: Question, rng: random.Random) -> list[dict[str, Any]]:
    """The :data:`ANNOTATORS` VQA answers to ``question``, with realistic disagreement."""
    wrong: set[int] = set()
    if rng.random() < DISAGREEMENT:
        wrong = set(rng.sample(range(ANNOTATORS), rng.randint(1, 4)))
    answers = []
    for k in range(ANNOTATORS):
        answer = _near_miss(question, rng) if k in wrong else question.answer
        text = _surface(answer, question.answer_type, rng)
        cumulative = _DISAGREEING_CONFIDENCE if k in wrong else _AGREEING_CONFIDENCE
        confidence = _CONFIDENCES[bisect.bisect(cumulative, rng.random())]
        answers.append({"answer": text, "answer_confidence": confidence, "answer_id": k + 1})
    return answers


def _vqa_entries(seed: int, image_id: int,
                 scene: Scene) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    rng = _rng(seed, image_id, "vqa")
    entries = []
    for k, question in enumerate(make_questions(scene, rng)):
        qid = image_id * 1000 + k
        answers = annotate(question, rng)
        counts = Counter(normalize_answer(a["answer"]) for a in answers)
        entries.append((
            {"image_id": image_id, "question": question.text, "question_id": qid},
            {"question_type": question_type(question.text),
             "multiple_choice_answer": counts.most_common(1)[0][0], "answers": answers,
             "image_id": image_id, "answer_type": question.answer_type,
             "question_id": qid}))
    return entries


def _write_vqa(ann: Path, images: Sequence[TaskImage], seed: int) -> list[str]:
    licence = {"url": _LICENSES[0]["url"], "name": _LICENSES[0]["name"]}
    written = []
    for split in SPLITS:
        entries = [e for im in images if im.split == split for e in im.tasks.vqa]
        head = {"info": _info(seed), "task_type": "Open-Ended", "data_type": "world",
                "license": licence, "data_subtype": split}
        _write_json(ann / f"vqa_{split}_questions.json",
                    {**head, "questions": [q for q, _ in entries]})
        _write_json(ann / f"vqa_{split}_annotations.json",
                    {"info": _info(seed), "license": licence, "data_type": "world",
                     "data_subtype": split, "annotations": [a for _, a in entries]})
        written += [f"vqa_{split}_questions.json", f"vqa_{split}_annotations.json"]
    return written


# --- SNLI-VE --------------------------------------------------------------------------------------

VE_LABELS = ("entailment", "neutral", "contradiction")
PREMISES_PER_IMAGE = 2
UNDEPICTED = ("is made of wood", "is made of paper", "is made of metal", "is made of glass",
              "is hollow", "is heavy", "is warm to the touch", "is spinning", "is magnetic",
              "belongs to a child", "was cut out of cardboard", "is about to fall over")
UNDEPICTED_BETWEEN = ("is heavier than", "is older than", "is more expensive than",
                      "is warmer than")
_ABSENT_IN_CONTRADICTIONS = 0.2


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
    phrase = rng.choice(scene.objects).phrase() if true else " ".join(_absent(scene, rng))
    return f"there is {_a(phrase)}"


def _h_relation(scene: Scene, rng: random.Random, true: bool) -> str | None:
    if true:  # existential: some such pair holds
        pairs = scene.related_pairs()
        if not pairs:
            return None
        a, rel, b = rng.choice(pairs)
        return f"{_a(a.phrase())} is {RELATION_PHRASES[rel]} {_a(b.phrase())}"
    named = _named_pairs(scene)  # definite, so the reverse of what holds is false
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
        return f"{_a(a.phrase())} is bigger than {_a(b.phrase())}"
    named = _named_bigger(scene)
    if not named:
        return None
    na, nb = rng.choice(named)
    return f"{nb} is bigger than {na}"


def _h_undepicted(scene: Scene, rng: random.Random) -> str | None:
    """Neutral: an unobservable property of an object that is there."""
    return f"{_a(rng.choice(scene.objects).phrase())} {rng.choice(UNDEPICTED)}"


def _h_undepicted_between(scene: Scene, rng: random.Random) -> str | None:
    """Neutral: an unobservable comparison of two objects that are there."""
    a, b = rng.sample(scene.objects, 2)
    if a.phrase() == b.phrase():
        return None
    return f"{_a(a.phrase())} {rng.choice(UNDEPICTED_BETWEEN)} {_a(b.phrase())}"


def _h_absent_undepicted(scene: Scene, rng: random.Random) -> str | None:
    """Contradiction: an unobservable property of an object that is not there."""
    return f"{_a(' '.join(_absent(scene, rng)))} {rng.choice(UNDEPICTED)}"


_FACTS = (_h_count, _h_colour_count, _h_total, _h_colour, _h_exists, _h_relation, _h_bigger)
_NEUTRALS = (_h_undepicted, _h_undepicted_between)


def make_hypothesis(scene: Scene, rng: random.Random, label: str,
                    taken: set[str]) -> str | None:
    """A hypothesis about ``scene`` with gold ``label`` (one of :data:`VE_LABELS`), not in
    ``taken``; None if none was found."""
    for _ in range(_TRIES):
        if label == "neutral":
            text = rng.choice(_NEUTRALS)(scene, rng)
        elif label == "contradiction" and rng.random() < _ABSENT_IN_CONTRADICTIONS:
            text = _h_absent_undepicted(scene, rng)
        else:
            text = rng.choice(_FACTS)(scene, rng, label == "entailment")
        if text is not None and _sentence(text) not in taken:
            return _sentence(text)
    return None


def _ve_entries(seed: int, image_id: int, scene: Scene,
                captions: Sequence[str]) -> list[dict[str, Any]]:
    rng = _rng(seed, image_id, "snli_ve")
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


def _write_jsonl(path: Path, records: list[dict[str, Any]]) -> None:
    lines = [json.dumps(r, separators=(",", ":"), ensure_ascii=False) for r in records]
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")


def _write_snli_ve(ann: Path, images: Sequence[TaskImage]) -> list[str]:
    written = []
    for split in SPLITS:
        name = f"snli_ve_{DEV[split]}.jsonl"
        _write_jsonl(ann / name, [e for im in images if im.split == split
                                  for e in im.tasks.snli_ve])
        written.append(name)
    return written


# --- NLVR2 ----------------------------------------------------------------------------------------

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
    return Statement(f"{quantifier} {_a(_words(colour, shape))}.",
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
    return Statement(f"In at least one image, {_a(_words(ca, sa))} is {RELATION_PHRASES[rel]} "
                     f"{_a(_words(cb, sb))}.",
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
        rng = _rng(seed, members[0].image_id, "nlvr2")
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


def _write_nlvr2(ann: Path, images: Sequence[TaskImage], seed: int) -> list[str]:
    written = []
    for split in SPLITS:
        name = f"nlvr2_{DEV[split]}.json"
        _write_jsonl(ann / name, _nlvr2_entries([im for im in images if im.split == split],
                                                seed, split))
        written.append(name)
    return written


# --- RefCOCO --------------------------------------------------------------------------------------

REFS_FILE = "refs(world).p"
MAX_SENTENCES = 3


def refcoco_split(im: TaskImage) -> str:
    """train / val, or for a test image testA (some shape occurs twice or more) or testB."""
    if im.split != "test":
        return im.split
    crowded = any(im.scene.count(o.shape) > 1 for o in im.scene.objects)
    return "testA" if crowded else "testB"


def _tokens(text: str) -> list[str]:
    return re.findall(r"[a-z0-9]+", text.lower())


def _ref_expressions(seed: int, image_id: int,
                     scene: Scene) -> list[tuple[int, list[tuple[str, list[str]]]]]:
    """``(object index, 1–3 (expression, tokens))`` for each object that can be picked out."""
    rng = _rng(seed, image_id, "refcoco")
    refs = []
    for k, obj in enumerate(scene.objects):
        expressions = scene.referring_expressions(obj)
        if expressions:
            n = rng.randint(1, min(MAX_SENTENCES, len(expressions)))
            refs.append((k, [(e, _tokens(e)) for e in rng.sample(expressions, n)]))
    return refs


def _refs(images: Sequence[TaskImage]) -> list[dict[str, Any]]:
    refs: list[dict[str, Any]] = []
    sent_id = 0
    for im in images:
        for k, picked in im.tasks.refs:
            obj = im.scene.objects[k]
            sentences = [{"tokens": tokens, "raw": e, "sent_id": sent_id + j,
                          "sent": " ".join(tokens)} for j, (e, tokens) in enumerate(picked)]
            refs.append({"sent_ids": [s["sent_id"] for s in sentences],
                         "file_name": file_name(im.image_id), "ann_id": im.first_ann_id + k,
                         "ref_id": len(refs), "image_id": im.image_id,
                         "split": refcoco_split(im), "sentences": sentences,
                         "category_id": category_id(obj.shape)})
            sent_id += len(sentences)
    return refs


def _write_refcoco(ann: Path, images: Sequence[TaskImage]) -> list[str]:
    # through JSON first: fresh, unshared objects pickle to the same bytes however the refs
    # were built (pickle memoises shared objects)
    refs = json.loads(json.dumps(_refs(images)))
    (ann / REFS_FILE).write_bytes(pickle.dumps(refs, protocol=2))
    return [REFS_FILE]


# --- VCR ------------------------------------------------------------------------------------------

VCR_METADATA = "vcr_metadata"
VCR_SHARE = 0.75  # of the images that have a question to ask (about two in three)
Tokens = list[str | list[int]]


def outline(obj: WorldObject) -> list[list[float]]:
    """The drawn shape's outline as a polygon of ``[x, y]`` points (a circle as 16)."""
    x0, y0, x1, y1 = (float(v) for v in obj.box)
    cx, cy, r = (x0 + x1) / 2, (y0 + y1) / 2, (x1 - x0) / 2
    if obj.shape == "circle":
        points = [(cx + r * math.cos(k * math.pi / 8), cy + r * math.sin(k * math.pi / 8))
                  for k in range(16)]
    elif obj.shape == "square":
        points = [(x0, y0), (x1, y0), (x1, y1), (x0, y1)]
    elif obj.shape == "triangle":
        points = [(cx, y0), (x1, y1), (x0, y1)]
    elif obj.shape == "diamond":
        points = [(cx, y0), (x1, cy), (cx, y1), (x0, cy)]
    elif obj.shape == "star":
        points = _star_points(obj.box)
    else:  # cross: two bars a third of the side thick
        t = r / 3
        points = [(cx - t, y0), (cx + t, y0), (cx + t, cy - t), (x1, cy - t), (x1, cy + t),
                  (cx + t, cy + t), (cx + t, y1), (cx - t, y1), (cx - t, cy + t), (x0, cy + t),
                  (x0, cy - t), (cx - t, cy - t)]
    return [[round(x, 2), round(y, 2)] for x, y in points]


def vcr_metadata(scene: Scene) -> dict[str, Any]:
    """VCR's per-image metadata: every object's box (score 1), outline and class name."""
    return {"boxes": [[*(float(v) for v in o.box), 1.0] for o in scene.objects],
            "segms": [[outline(o)] for o in scene.objects],
            "names": [o.shape for o in scene.objects],
            "width": scene.image_size, "height": scene.image_size}


def _because(x: int, colour: str, rel: str, y: int) -> Tokens:
    return [[x], "is", colour, "and", "its", "box", "is", *RELATION_PHRASES[rel].split(), [y],
            "'s", "box", "."]


def _shuffled_in(right: Tokens, wrong: list[Tokens],
                 rng: random.Random) -> tuple[list[Tokens], int]:
    """Three of ``wrong`` (in order) with ``right`` at a random place; the place."""
    label = rng.randrange(4)
    choices = wrong[:3]
    choices.insert(label, right)
    return choices, label


def _vcr_choices(scene: Scene, rng: random.Random, i: int, rel: str, j: int
                 ) -> tuple[list[Tokens], int, list[Tokens], int]:
    """Answers and rationales for "Which shape is ``rel`` [j]?" whose answer is [i]."""
    n = len(scene.objects)
    others = [k for k in rng.sample(range(n), n) if k not in (i, j)]
    # every one false: only [i] is ``rel`` of [j], and [j] is not ``rel`` of itself
    fillers: list[Tokens] = [[[j], "is", "."], ["No", "shape", "is", "."],
                             ["Every", "shape", "is", "."]]
    fillers += [[[i], "and", [k], "are", "."] for k in [*others, j]]
    wrong: list[Tokens] = [[[k], "is", "."] for k in others]
    answers, answer_label = _shuffled_in([[i], "is", "."],
                                         wrong + rng.sample(fillers, len(fillers)), rng)
    obj, landmark = scene.objects[i], scene.objects[j]
    colour = rng.choice([c for c in COLOURS if c != obj.colour])
    false_reasons = [_because(i, colour, rel, j), _because(j, landmark.colour, rel, i),
                     _because(i, obj.colour, OPPOSITE[rel], j)]
    false_reasons += [_because(k, scene.objects[k].colour, rel, j) for k in others]
    rationales, rationale_label = _shuffled_in(
        _because(i, obj.colour, rel, j), rng.sample(false_reasons, len(false_reasons)),
        rng)
    return answers, answer_label, rationales, rationale_label


def _orig(tokens: Tokens) -> str:
    text = " ".join(str(t[0]) if isinstance(t, list) else t for t in tokens)
    return re.sub(r" (?=[?.]|'s)", "", text)


def _vcr_item(seed: int, image_id: int, scene: Scene) -> dict[str, Any] | None:
    """The VCR fields of the image's question that depend on its scene; None if none."""
    rng = _rng(seed, image_id, "vcr")
    if rng.random() >= VCR_SHARE:
        return None
    options = [(_index(scene, sole), rel, j) for j, landmark in enumerate(scene.objects)
               for rel in RELATIONS if (sole := scene.sole_related(landmark, rel)) is not None]
    if not options:
        return None
    i, rel, j = rng.choice(options)
    question: Tokens = ["Which", "shape", "is", *RELATION_PHRASES[rel].split(), [j], "?"]
    answers, answer_label, rationales, rationale_label = _vcr_choices(scene, rng, i, rel, j)
    return {"objects": [o.shape for o in scene.objects], "question": question,
            "answer_choices": answers, "answer_label": answer_label,
            "rationale_choices": rationales, "rationale_label": rationale_label,
            "question_orig": _orig(question), "answer_orig": _orig(answers[answer_label]),
            "rationale_orig": _orig(rationales[rationale_label])}


def _vcr_record(im: TaskImage, item: dict[str, Any], split: str, n: int) -> dict[str, Any]:
    stem = file_name(im.image_id).rsplit(".", 1)[0]
    return {"movie": "world", "objects": item["objects"], "interesting_scores": [],
            "answer_likelihood": "likely", "img_fn": file_name(im.image_id),
            "metadata_fn": f"{stem}.json", "answer_orig": item["answer_orig"],
            "question_orig": item["question_orig"], "rationale_orig": item["rationale_orig"],
            "question": item["question"], "answer_match_iter": [0, 0, 0],
            "answer_sources": [n if k == item["answer_label"] else 0 for k in range(4)],
            "answer_choices": item["answer_choices"], "answer_label": item["answer_label"],
            "rationale_choices": item["rationale_choices"],
            "rationale_sources": [n if k == item["rationale_label"] else 0 for k in range(4)],
            "rationale_match_iter": [0, 0, 0], "rationale_label": item["rationale_label"],
            "img_id": f"{split}-{im.image_id}", "question_number": 0,
            "annot_id": f"{split}-{n}", "match_fold": f"{split}-0", "match_index": n}


def _write_vcr(root: Path, images: Sequence[TaskImage]) -> list[str]:
    (root / VCR_METADATA).mkdir(exist_ok=True)
    written = []
    for split in SPLITS:
        records: list[dict[str, Any]] = []
        for im in images:
            item = im.tasks.vcr if im.split == split else None
            if item is None:
                continue
            record = _vcr_record(im, item, split, len(records))
            _write_json(root / VCR_METADATA / record["metadata_fn"], vcr_metadata(im.scene))
            records.append(record)
        name = f"vcr_{split}.jsonl"
        _write_jsonl(root / "annotations" / name, records)
        written.append(name)
    return written


# --- all ------------------------------------------------------------------------------------------

def write_task_files(root: Path, images: Sequence[TaskImage], seed: int) -> list[str]:
    """Write every task file of a world.

    Args:
        root: the world directory (``annotations/`` must exist).
        images: every image of the world, in id order.
        seed: the world's seed.

    Returns:
        The task files' paths relative to ``root`` (VCR's metadata folder not itemised).
    """
    ann = root / "annotations"
    names = [*_write_vqa(ann, images, seed), *_write_snli_ve(ann, images),
             *_write_nlvr2(ann, images, seed), *_write_refcoco(ann, images),
             *_write_vcr(root, images)]
    return [f"annotations/{n}" for n in names]
