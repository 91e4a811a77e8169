"""The world's VQA v2 files.

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
"""

from __future__ import annotations

import bisect
import functools
import random
import re
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vlp.world.files import LICENSES, SPLITS, coco_info, write_json
from vlp.world.generate import image_rng
from vlp.world.scene import Scene
from vlp.world.tasks.common import TRIES, TaskImage, absent_kind, named_bigger, named_pairs
from vlp.world.vocab import (
    COLOURS,
    OPPOSITE,
    PLURALS,
    RELATION_PHRASES,
    RELATIONS,
    SHAPES,
    SIZES,
    number_word,
    with_article,
)

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
        phrase = " ".join(absent_kind(scene, rng))
    else:
        missing = [s for s in SHAPES if scene.count(s) == 0]
        if not missing:
            return None
        phrase = rng.choice(missing)
    return _yes_no(f"Is there {with_article(phrase)}?", yes)


def _q_relation(scene: Scene, rng: random.Random, yes: bool) -> Question | None:
    pairs = named_pairs(scene)
    if not pairs:
        return None
    a, rel, b = rng.choice(pairs)
    said = rel if yes else OPPOSITE[rel]  # the reverse of a relation that holds is false
    return _yes_no(f"Is {a} {RELATION_PHRASES[said]} {b}?", yes)


def _q_bigger(scene: Scene, rng: random.Random, yes: bool) -> Question | None:
    pairs = named_bigger(scene)
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
    for _ in range(TRIES):
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
        forms.append(with_article(answer))
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


def vqa_entries(seed: int, image_id: int,
                scene: Scene) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """The ``(question, annotation)`` records of one image (from its ``vqa`` stream)."""
    rng = image_rng(seed, image_id, "vqa")
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


def write_vqa(ann: Path, images: Sequence[TaskImage], seed: int) -> list[str]:
    """Write the questions and annotations files of each split; returns their names."""
    licence = {"url": LICENSES[0]["url"], "name": LICENSES[0]["name"]}
    written = []
    for split in SPLITS:
        entries = [e for im in images if im.split == split for e in im.tasks.vqa]
        head = {"info": coco_info(seed), "task_type": "Open-Ended", "data_type": "world",
                "license": licence, "data_subtype": split}
        write_json(ann / f"vqa_{split}_questions.json",
                   {**head, "questions": [q for q, _ in entries]})
        write_json(ann / f"vqa_{split}_annotations.json",
                   {"info": coco_info(seed), "license": licence, "data_type": "world",
                    "data_subtype": split, "annotations": [a for _, a in entries]})
        written += [f"vqa_{split}_questions.json", f"vqa_{split}_annotations.json"]
    return written
